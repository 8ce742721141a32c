"""The reducer against a deliberately simple reference model, driven by random operations.

The model knows what the venue really did (each order's fills) and what was reported; it
keeps plain dicts and recomputes everything the obvious way. Each step reports venue activity
the way real venues do: an order update, a trade, both, or a duplicate of something already
reported; the reducer must always agree with the model.
"""

from __future__ import annotations

from decimal import Decimal

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from eventsrc import (
    Balance,
    BalanceObserved,
    CancelObserved,
    Event,
    Fee,
    OrderAcknowledged,
    OrderObserved,
    OrderRequested,
    State,
    StrategyStarted,
    TickerObserved,
    TradeObserved,
    reduce,
)
from eventsrc.state import replace

D = Decimal
SYMBOLS = ("BTC/USDT", "ETH/USDT")
quantities = st.integers(1, 500).map(lambda i: D(i).scaleb(-2))
prices = st.integers(100, 100_000).map(lambda i: D(i).scaleb(-1))


@attrs.define
class ModelOrder:
    """An order as the model sees it: what the venue did, and what has been reported."""

    order_id: str
    client_id: str
    symbol: str
    side: str
    amount: D
    fills: list[tuple[str, D, D, D, int]] = attrs.Factory(list)  # (trade id, qty, cost, fee, ms)
    canceled: bool = False
    reported_fills: int = 0  # how many fills the furthest order report seen includes
    reported_trades: set[str] = attrs.Factory(set)

    def filled(self) -> D:
        return sum((f[1] for f in self.fills), D(0))

    def totals(self) -> tuple[D, D, D]:
        """What the reducer should show: every fill some report has shown, through the order's
        cumulative totals or through its own trade (the venue dates both, so the reducer can
        tell a trade beyond the furthest report from one inside it)."""
        known = [
            f
            for i, f in enumerate(self.fills)
            if i < self.reported_fills or f[0] in self.reported_trades
        ]
        return (
            sum((f[1] for f in known), D(0)),
            sum((f[2] for f in known), D(0)),
            sum((f[3] for f in known), D(0)),
        )


class ReducerVersusModel(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.state = State()
        self.model_orders: dict[str, ModelOrder] = {}
        self.model_cash: dict[str, D] = {}
        self.accounted: dict[str, tuple[D, D, D]] = {}
        self.model_prices: dict[str, D] = {}
        self.last_reported: dict[str, D] = {}
        self.clock_ms = 1_750_000_000_000
        self.history: list[Event] = []
        self.count = 0

    def fold(self, event: Event) -> None:
        event = attrs.evolve(event, seq=len(self.history))
        self.history.append(event)
        self.state = reduce(self.state, event)

    def settle_cash(self, order: ModelOrder) -> None:
        """The model's cash: balance reports replace it, each order's totals move it."""
        filled, cost, fee = order.totals()
        before = self.accounted.get(order.order_id, (D(0), D(0), D(0)))
        base, quote = order.symbol.split("/")
        sign = 1 if order.side == "buy" else -1
        for currency, delta in (
            (base, sign * (filled - before[0])),
            (quote, -sign * (cost - before[1]) - (fee - before[2])),
        ):
            if delta:
                self.model_cash[currency] = self.model_cash.get(currency, D(0)) + delta
        self.accounted[order.order_id] = (filled, cost, fee)

    @initialize()
    def start(self) -> None:
        self.fold(StrategyStarted("USDT", SYMBOLS))

    @rule(
        target=orders,
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(["buy", "sell"]),
        amount=quantities,
        acknowledged=st.booleans(),
    )
    def place(self, symbol: str, side: str, amount: D, acknowledged: bool) -> str:
        self.count += 1
        order = ModelOrder(f"o{self.count}", f"c{self.count}", symbol, side, amount)
        self.model_orders[order.order_id] = order
        self.fold(OrderRequested(order.client_id, side, "limit", amount, D(100), asset=symbol))
        if acknowledged:
            self.fold(
                OrderAcknowledged(
                    client_order_id=order.client_id, order_id=order.order_id, asset=symbol
                )
            )
        return order.order_id

    @rule(
        order_id=orders,
        share=st.integers(1, 100),
        price=prices,
        report=st.sampled_from(["order", "trade", "both", "none"]),
    )
    def fill(self, order_id: str, share: int, price: D, report: str) -> None:
        order = self.model_orders[order_id]
        left = order.amount - order.filled()
        if order.canceled or left <= 0:
            return
        quantity = min(left, (order.amount * share / 100).quantize(D("0.01")) or D("0.01"))
        cost = quantity * price
        fee = (cost / 1000).quantize(D("0.00000001"))
        trade_id = f"{order_id}-t{len(order.fills) + 1}"
        self.clock_ms += 1
        order.fills.append((trade_id, quantity, cost, fee, self.clock_ms))
        if report in ("trade", "both"):
            self.report_trade(order, trade_id)
        if report in ("order", "both"):
            self.report_order(order)

    def report_trade(self, order: ModelOrder, trade_id: str) -> None:
        _, quantity, cost, fee, ms = next(f for f in order.fills if f[0] == trade_id)
        order.reported_trades.add(trade_id)
        self.fold(
            TradeObserved(
                trade_id=trade_id,
                order_id=order.order_id,
                asset=order.symbol,
                side=order.side,
                price=cost / quantity,
                amount=quantity,
                cost=cost,
                fees=(Fee("USDT", fee),),
                exchange_ts=ms,
            )
        )
        self.settle_cash(order)

    def report_order(self, order: ModelOrder) -> None:
        filled = order.filled()
        cost = sum((f[2] for f in order.fills), D(0))
        fee = sum((f[3] for f in order.fills), D(0))
        order.reported_fills = max(order.reported_fills, len(order.fills))
        status = "canceled" if order.canceled else ("closed" if filled == order.amount else "open")
        self.fold(
            OrderObserved(
                order_id=order.order_id,
                client_order_id=order.client_id,
                asset=order.symbol,
                side=order.side,
                order_type="limit",
                status=status,
                amount=order.amount,
                filled=filled,
                cost=cost,
                fees=(Fee("USDT", fee),),
                last_trade_timestamp=order.fills[-1][4] if order.fills else None,
            )
        )
        self.settle_cash(order)

    @rule(order_id=orders)
    def catch_up(self, order_id: str) -> None:
        """A late report: the order's current totals, and every trade not yet reported."""
        order = self.model_orders[order_id]
        for trade_id, *_ in order.fills:
            if trade_id not in order.reported_trades:
                self.report_trade(order, trade_id)
        self.report_order(order)

    @rule(order_id=consumes(orders))
    def cancel(self, order_id: str) -> None:
        order = self.model_orders[order_id]
        if order.filled() == order.amount:
            return
        order.canceled = True
        self.report_order(order)
        self.fold(CancelObserved(order_id=order_id, status="canceled"))

    @rule(data=st.data())
    def repeat_something(self, data: st.DataObject) -> None:
        """Venues repeat themselves: folding an old observation again changes nothing."""
        observations = [e for e in self.history if isinstance(e, OrderObserved | TradeObserved)]
        if observations:
            again = data.draw(st.sampled_from(observations))
            before = self.state
            self.state = reduce(self.state, again)
            assert replace(self.state, seq=before.seq) == before

    @rule(currency=st.sampled_from(["USDT", "BTC", "ETH"]), amount=quantities)
    def balance(self, currency: str, amount: D) -> None:
        """An undated report replaces the currency's cash, unless it repeats the last one: a
        poll answered from before the fills since (a venue that dates its reports needs no
        such rule)."""
        self.fold(BalanceObserved(balances=(Balance(currency, amount, amount, D(0)),)))
        if self.last_reported.get(currency) != amount:
            self.model_cash[currency] = amount
            self.last_reported[currency] = amount

    @rule(symbol=st.sampled_from(SYMBOLS), price=prices)
    def ticker(self, symbol: str, price: D) -> None:
        self.fold(TickerObserved(asset=symbol, bid=price, ask=price + 1, last=price))
        self.model_prices[symbol] = price

    @invariant()
    def orders_agree(self) -> None:
        for order in self.model_orders.values():
            # Until an acknowledgement or an order report links them, the venue's order
            # (known from its trades) and the local request are two entries.
            found = self.state.orders.get(order.order_id) or self.state.order(order.client_id)
            assert found is not None
            expected = order.totals()
            assert (found.filled, found.cost, found.fee("USDT")) == expected
            assert sum((f.amount for f in found.trades), D(0)) == expected[0]
            if order.canceled:
                assert found.status == "canceled"
            elif sum((f[1] for f in order.fills[: order.reported_fills]), D(0)) == order.amount:
                assert found.status == "closed"

    @invariant()
    def cash_agrees(self) -> None:
        state_cash = {c: v.total for c, v in self.state.cash.items() if v.total}
        assert state_cash == {c: v for c, v in self.model_cash.items() if v}

    @invariant()
    def prices_agree(self) -> None:
        assert dict(self.state.last_price) == self.model_prices

    @invariant()
    def requests_are_only_unlinked_orders(self) -> None:
        for client_id, request in self.state.requests.items():
            order_id = "o" + client_id[1:]
            linked = self.state.orders.get(order_id)
            assert linked is None or linked.client_order_id != client_id
            assert request.order_id is None

    @invariant()
    def nothing_is_anomalous(self) -> None:
        assert not self.state.anomalies


TestReducerVersusModel = ReducerVersusModel.TestCase
TestReducerVersusModel.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
