"""A ladder: one resting buy a step below the price and one resting sell a step above, per
market; whichever fills, or drifts too far from the price, is replaced around the new price.
Short on purpose: copy it.

It reads only ``engine.state`` (the fold of the trace) and acts only through commands, so a
restart on the same trace picks up its open orders where it left them. Each new rung is
recorded as a ``Decision`` with the price behind it, so a replay shows why it acted.
"""

from __future__ import annotations

from decimal import Decimal

from eventsrc import Decision, Engine, Order

LIVE = frozenset({"acknowledged", "open", "partially_filled"})


class Ladder:
    def __init__(
        self, amounts: dict[str, Decimal], step: Decimal = Decimal("0.001"), every: float = 5.0
    ) -> None:
        self.amounts = amounts  # what each rung buys or sells, per market
        self.step = step  # a rung's distance from the price (0.001: 0.1%)
        self.every = every  # seconds between two looks

    async def run(self, engine: Engine) -> None:
        while True:
            for symbol in self.amounts:
                await self.tend(engine, symbol)
            await engine.clock.sleep(self.every)

    async def tend(self, engine: Engine, symbol: str) -> None:
        price = engine.state.last_price.get(symbol)
        if price is None:
            return  # no price seen yet
        for order in self.resting(engine, symbol):
            if order.order_id and order.price and abs(order.price / price - 1) > 3 * self.step:
                await engine.cancel_order(order.order_id, symbol)  # drifted: take it back
        held = {order.side for order in self.resting(engine, symbol)}
        wanted = [side for side in ("buy", "sell") if side not in held]
        if not wanted:
            return
        await engine.record(
            Decision(
                "rung",
                {"price": str(price), "sides": " ".join(wanted)},
                asset=symbol,
                source="ladder",
            )
        )
        for side in wanted:
            at = price * (1 - self.step if side == "buy" else 1 + self.step)
            await engine.create_order(symbol, side, self.amounts[symbol], at, waitfor=1.0)

    @staticmethod
    def resting(engine: Engine, symbol: str) -> list[Order]:
        # its own (the account may hold others'), by order id: a state's maps iterate in an
        # order that differs between processes
        orders = sorted(engine.state.orders.items())
        return [o for _, o in orders if o.symbol == symbol and o.status in LIVE and engine.ours(o)]
