"""The simulated venue's own books: balances, orders, fills, positions, and the matching.

Deterministic and synchronous: prices move one tick at a time along a price path; resting
orders fill against each tick; every amount is an exact ``Decimal``, rounded to the market's
precision; fees are charged in the currency received (spot: the base on a buy, the quote on a
sell) or in the settlement currency (perpetuals), so no balance can go negative.

Perpetuals are linear, one-way (a net position per market), margin = notional / leverage,
realized profit and fees in the settlement currency, liquidation at
``entry * (1 -+ 1/leverage +- maintenance)``.
"""

from __future__ import annotations

import decimal
import random
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import attrs
import ccxt

from adapters.sim.markets import PricePath

__all__ = ["SimFill", "SimOrder", "SimPosition", "Venue"]

ZERO = Decimal(0)
SPREAD = Decimal("0.0002")  # bid/ask around the path's price
MAINTENANCE = Decimal("0.005")
MARKET_BUFFER = Decimal("1.05")  # a spot market buy locks 5% over the ask
_C = decimal.Context(prec=80, traps=[decimal.InvalidOperation, decimal.DivisionByZero])
_UNIT = Decimal("1e-10")


def _q(value: Decimal) -> Decimal:
    """Locks, margins and entry prices are kept to 10 decimals, so every balance stays a short
    decimal and plain (28-digit) arithmetic on balances is exact."""
    return value.quantize(_UNIT, ROUND_HALF_EVEN, context=_C)


"""The venue's books run exactly (every product of an amount and a price fits)."""


@attrs.define
class SimOrder:
    id: str
    client_order_id: str | None
    symbol: str
    type: str
    side: str
    amount: Decimal
    price: Decimal | None
    time_in_force: str
    post_only: bool
    reduce_only: bool
    timestamp: int
    status: str = "open"
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    fee: Decimal = ZERO
    fee_currency: str | None = None
    locked: Decimal = ZERO
    """What the order still holds locked (quote or base, spot; margin, perpetuals)."""
    trades: list[SimFill] = attrs.Factory(list)
    last_trade_timestamp: int | None = None
    last_update_timestamp: int | None = None

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@attrs.frozen
class SimFill:
    id: str
    order_id: str
    symbol: str
    side: str
    price: Decimal
    amount: Decimal
    cost: Decimal
    fee: Decimal
    fee_currency: str
    taker_or_maker: str
    timestamp: int
    realized_pnl: Decimal = ZERO
    liquidation: bool = False


@attrs.define
class SimPosition:
    symbol: str
    contracts: Decimal = ZERO
    """Signed: > 0 long, < 0 short."""
    entry_price: Decimal = ZERO
    margin: Decimal = ZERO
    leverage: Decimal = Decimal(1)


class Venue:
    """The books and the matching engine. ``advance_to(ms)`` moves the market forward."""

    def __init__(
        self,
        *,
        seed: int,
        markets: dict[str, dict[str, Any]],
        balances: dict[str, Decimal],
        prices: PricePath,
        start_ms: int,
        tick_ms: int,
        partial_fills: bool,
        leverage: Decimal,
    ) -> None:
        self.markets = markets
        self.prices = prices
        self.tick_ms = tick_ms
        self.start_ms = start_ms
        self.tick = 0
        self.now = start_ms
        self.partial_fills = partial_fills
        self.default_leverage = leverage
        self._rng = random.Random(f"{seed}:liquidity")
        self.free: dict[str, Decimal] = {c: Decimal(v) for c, v in balances.items()}
        self.used: dict[str, Decimal] = {c: ZERO for c in balances}
        self.orders: dict[str, SimOrder] = {}
        self.by_client_id: dict[str, str] = {}
        self.fills: list[SimFill] = []
        self.positions: dict[str, SimPosition] = {}
        self.leverage: dict[str, Decimal] = {}
        self._order_seq = 0
        self._fill_seq = 0
        self.changed_orders: list[SimOrder] = []
        self.new_fills: list[SimFill] = []
        self.balance_changed = False
        self.positions_changed: set[str] = set()

    # -- market data ------------------------------------------------------------------------

    def _round(self, symbol: str, value: Decimal, what: str) -> Decimal:
        step = Decimal(repr(self.markets[symbol]["precision"][what]))
        return (value / step).to_integral_value(ROUND_HALF_EVEN) * step

    def mid(self, symbol: str) -> Decimal:
        return self._round(symbol, self.prices.price(symbol, self.tick), "price")

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        mid = self.mid(symbol)
        half = self._round(symbol, mid * SPREAD / 2, "price") or Decimal(
            repr(self.markets[symbol]["precision"]["price"])
        )
        return mid - half, mid + half

    def advance_to(self, now_ms: int) -> None:
        """Move the market to ``now_ms``: each tick in between moves prices and fills what
        rests against them."""
        target = max(0, (now_ms - self.start_ms) // self.tick_ms)
        while self.tick < target:
            self.tick += 1
            self.now = self.start_ms + self.tick * self.tick_ms
            for order in [o for o in self.orders.values() if o.status == "open"]:
                self._match(order, taker=False)
            self._liquidate()
        self.now = max(self.now, now_ms)

    # -- orders -----------------------------------------------------------------------------

    def market(self, symbol: str) -> dict[str, Any]:
        market = self.markets.get(symbol)
        if market is None:
            raise ccxt.BadSymbol(f"sim does not have market symbol {symbol}")
        return market

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Any,
        price: Any,
        params: dict[str, Any],
    ) -> SimOrder:
        market = self.market(symbol)
        if type not in ("limit", "market"):
            raise ccxt.InvalidOrder(f"sim order type {type!r} is not supported")
        if side not in ("buy", "sell"):
            raise ccxt.InvalidOrder(f"sim order side {side!r} must be buy or sell")
        amount_d = self._round(symbol, Decimal(repr(float(amount))), "amount")
        if amount_d < Decimal(repr(market["limits"]["amount"]["min"])):
            raise ccxt.InvalidOrder(f"sim order amount {amount} is below the market minimum")
        limit: Decimal | None = None
        if type == "limit":
            if price is None or float(price) <= 0:
                raise ccxt.InvalidOrder("sim limit order needs a price > 0")
            limit = self._round(symbol, Decimal(repr(float(price))), "price")
        client_id = params.get("clientOrderId") or params.get("newClientOrderId")
        if client_id is not None and client_id in self.by_client_id:
            raise ccxt.DuplicateOrderId(f"sim: clientOrderId {client_id} already used")
        tif = str(params.get("timeInForce", "IOC" if type == "market" else "GTC")).upper()
        if tif not in ("GTC", "IOC", "FOK", "PO"):
            raise ccxt.InvalidOrder(f"sim time in force {tif!r} is not supported")
        post_only = bool(params.get("postOnly")) or tif == "PO"
        reduce_only = bool(params.get("reduceOnly"))
        if reduce_only and not market["contract"]:
            raise ccxt.InvalidOrder("sim: reduceOnly is for contracts only")
        self._order_seq += 1
        order = SimOrder(
            id=str(1_000_000 + self._order_seq),
            client_order_id=client_id,
            symbol=symbol,
            type=type,
            side=side,
            amount=amount_d,
            price=limit,
            time_in_force="GTC" if tif == "PO" else tif,
            post_only=post_only,
            reduce_only=reduce_only,
            timestamp=self.now,
            last_update_timestamp=self.now,
        )
        bid, ask = self.bid_ask(symbol)
        marketable = type == "market" or (
            limit is not None and (limit >= ask if side == "buy" else limit <= bid)
        )
        if post_only and marketable:
            raise ccxt.OrderImmediatelyFillable(
                f"sim: post-only order at {limit} would fill now (bid {bid}, ask {ask})"
            )
        if reduce_only:
            position = self.positions.get(symbol)
            held = position.contracts if position else ZERO
            reducing = (held > 0 and side == "sell") or (held < 0 and side == "buy")
            if not reducing or amount_d > abs(held):
                raise ccxt.InvalidOrder("sim: reduceOnly order would not reduce the position")
        self._lock(order, ask if side == "buy" else bid)
        self.orders[order.id] = order
        if client_id is not None:
            self.by_client_id[client_id] = order.id
        if marketable:
            if order.time_in_force == "FOK":
                self._match(order, taker=True, whole=True)
            else:
                self._match(order, taker=True)
        if order.status == "open" and (type == "market" or order.time_in_force in ("IOC", "FOK")):
            self._close(order, "canceled" if order.filled else "expired")
        self._changed(order)
        return order

    def _lock(self, order: SimOrder, price: Decimal) -> None:
        market = self.markets[order.symbol]
        if market["contract"]:
            if order.reduce_only:
                return
            leverage = self.leverage.get(order.symbol, self.default_leverage)
            notional = _C.multiply(order.amount, order.price or price)
            need = _q(_C.divide(notional, leverage)) + _q(
                _C.multiply(notional, Decimal(repr(market["taker"])))
            )
            self._take(market["settle"], need)
        elif order.side == "buy":
            need = _q(_C.multiply(order.amount, order.price or price * MARKET_BUFFER))
            self._take(market["quote"], need)
        else:
            need = order.amount
            self._take(market["base"], need)
        order.locked = need

    def _take(self, currency: str, amount: Decimal) -> None:
        free = self.free.get(currency, ZERO)
        if amount > free:
            raise ccxt.InsufficientFunds(
                f"sim: needs {amount} {currency}, has {free} {currency} free"
            )
        self.free[currency] = free - amount
        self.used[currency] = self.used.get(currency, ZERO) + amount
        self.balance_changed = True

    def _release(self, currency: str, amount: Decimal) -> None:
        if amount:
            self.used[currency] -= amount
            self.free[currency] = self.free.get(currency, ZERO) + amount
            self.balance_changed = True

    def cancel_order(self, order_id: str) -> SimOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise ccxt.OrderNotFound(f"sim: order {order_id} does not exist")
        if order.status != "open":
            raise ccxt.OrderNotFound(f"sim: order {order_id} is {order.status}, not open")
        self._close(order, "canceled")
        self._changed(order)
        return order

    def _close(self, order: SimOrder, status: str) -> None:
        order.status = status
        order.last_update_timestamp = self.now
        market = self.markets[order.symbol]
        currency = (
            market["settle"]
            if market["contract"]
            else (market["quote"] if order.side == "buy" else market["base"])
        )
        self._release(currency, order.locked)
        order.locked = ZERO

    def _changed(self, order: SimOrder) -> None:
        self.changed_orders.append(order)

    # -- matching ---------------------------------------------------------------------------

    def _match(self, order: SimOrder, *, taker: bool, whole: bool = False) -> None:
        bid, ask = self.bid_ask(order.symbol)
        price = ask if order.side == "buy" else bid
        if order.price is not None:
            crosses = price <= order.price if order.side == "buy" else price >= order.price
            if not crosses:
                return
            if not taker:
                price = order.price  # a resting order fills at its own price
        quantity = order.remaining
        if self.partial_fills and not whole and order.type == "limit":
            share = Decimal(repr(round(self._rng.uniform(0.25, 1.0), 4)))
            quantity = self._round(order.symbol, order.remaining * share, "amount")
            if quantity <= 0 or order.remaining - quantity < Decimal(
                repr(self.markets[order.symbol]["limits"]["amount"]["min"])
            ):
                quantity = order.remaining
        self._fill(order, quantity, price, "taker" if taker else "maker")
        if order.remaining == 0:
            self._close(order, "closed")
        self._changed(order)

    def _fill(self, order: SimOrder, quantity: Decimal, price: Decimal, role: str) -> None:
        market = self.markets[order.symbol]
        rate = Decimal(repr(market[role]))
        cost = _C.multiply(quantity, price)
        # The order's lock for this part is released (all of what is left on its last fill).
        before = order.remaining
        unlock = (
            order.locked
            if quantity == before
            else _q(_C.divide(_C.multiply(order.locked, quantity), before))
        )
        order.locked -= unlock
        self._fill_seq += 1
        pnl = ZERO
        if market["contract"]:
            settle = market["settle"]
            fee_currency, fee = settle, self._round_fee(cost * rate)
            self._release(settle, unlock)
            pnl = self._trade_position(order, quantity, price)
            self.free[settle] -= fee
        else:
            base, quote = market["base"], market["quote"]
            if order.side == "buy":  # quote locked -> spent; base received, less the fee
                fee_currency, fee = base, self._round_fee(quantity * rate)
                self.used[quote] -= unlock
                self.free[quote] += unlock - cost
                self.free[base] = self.free.get(base, ZERO) + quantity - fee
                self.used.setdefault(base, ZERO)
            else:  # base locked -> sold; quote received, less the fee
                fee_currency, fee = quote, self._round_fee(cost * rate)
                self.used[base] -= unlock
                self.free[quote] = self.free.get(quote, ZERO) + cost - fee
                self.used.setdefault(quote, ZERO)
        fill = SimFill(
            id=str(5_000_000 + self._fill_seq),
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            amount=quantity,
            cost=cost,
            fee=fee,
            fee_currency=fee_currency,
            taker_or_maker=role,
            timestamp=self.now,
            realized_pnl=pnl,
        )
        order.filled += quantity
        order.cost += cost
        order.fee += fee
        order.fee_currency = fee_currency
        order.trades.append(fill)
        order.last_trade_timestamp = order.last_update_timestamp = self.now
        self.fills.append(fill)
        self.new_fills.append(fill)
        self.balance_changed = True

    @staticmethod
    def _round_fee(fee: Decimal) -> Decimal:
        return fee.quantize(Decimal("0.00000001"), ROUND_HALF_EVEN)

    def _trade_position(self, order: SimOrder, quantity: Decimal, price: Decimal) -> Decimal:
        """Apply a perpetual fill to the position: margin from free to used when it opens or
        adds, back (with the realized profit) when it reduces. Returns the realized profit."""
        settle = self.markets[order.symbol]["settle"]
        position = self.positions.setdefault(order.symbol, SimPosition(order.symbol))
        leverage = self.leverage.get(order.symbol, self.default_leverage)
        signed = quantity if order.side == "buy" else -quantity
        held = position.contracts
        pnl = ZERO
        opening = quantity
        if held and (held > 0) != (signed > 0):  # reducing, maybe flipping
            closing = min(quantity, abs(held))
            pnl = _C.multiply(closing, price - position.entry_price) * (1 if held > 0 else -1)
            released = (
                position.margin
                if closing == abs(held)
                else _q(_C.divide(_C.multiply(position.margin, closing), abs(held)))
            )
            position.margin -= released
            self.used[settle] -= released
            self.free[settle] += released + pnl
            held = held - closing if held > 0 else held + closing
            opening = quantity - closing
            if held == 0:
                position.entry_price = ZERO
        if opening:
            total = abs(held) + opening
            position.entry_price = _q(
                _C.divide(
                    _C.add(
                        _C.multiply(abs(held), position.entry_price), _C.multiply(opening, price)
                    ),
                    total,
                )
            )
            margin = _q(_C.divide(_C.multiply(opening, price), leverage))
            self.free[settle] -= margin
            self.used[settle] += margin
            position.margin += margin
            held = held + opening if signed > 0 else held - opening
        position.contracts = held
        position.leverage = leverage
        self.positions_changed.add(order.symbol)
        return pnl

    def liquidation_price(self, position: SimPosition) -> Decimal | None:
        if position.contracts == 0:
            return None
        inverse = 1 / position.leverage
        if position.contracts > 0:
            return position.entry_price * (1 - inverse + MAINTENANCE)
        return position.entry_price * (1 + inverse - MAINTENANCE)

    def _liquidate(self) -> None:
        for symbol, position in self.positions.items():
            price = self.liquidation_price(position)
            if price is None:
                continue
            mark = self.mid(symbol)
            if (position.contracts > 0 and mark > price) or (
                position.contracts < 0 and mark < price
            ):
                continue
            side = "sell" if position.contracts > 0 else "buy"
            self._order_seq += 1
            order = SimOrder(
                id=str(1_000_000 + self._order_seq),
                client_order_id=None,
                symbol=symbol,
                type="market",
                side=side,
                amount=abs(position.contracts),
                price=None,
                time_in_force="IOC",
                post_only=False,
                reduce_only=True,
                timestamp=self.now,
            )
            self.orders[order.id] = order
            self._fill(order, order.amount, self._round(symbol, price, "price"), "taker")
            order.trades[-1] = attrs.evolve(order.trades[-1], liquidation=True)
            self.fills[-1] = self.new_fills[-1] = order.trades[-1]
            self._close(order, "closed")
            self._changed(order)

    # -- truth ------------------------------------------------------------------------------

    def set_leverage(self, symbol: str, leverage: Any) -> None:
        market = self.market(symbol)
        if not market["contract"]:
            raise ccxt.BadRequest(f"sim: {symbol} has no leverage")
        value = Decimal(repr(float(leverage)))
        if not 1 <= value <= Decimal(repr(market["limits"]["leverage"]["max"])):
            raise ccxt.BadRequest(f"sim: leverage {leverage} is out of range")
        self.leverage[symbol] = value

    def total(self, currency: str) -> Decimal:
        return self.free.get(currency, ZERO) + self.used.get(currency, ZERO)

    def open_orders(self) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.status == "open"]

    def take_changes(self) -> tuple[list[SimOrder], list[SimFill], bool, set[str]]:
        changes = (
            self.changed_orders,
            self.new_fills,
            self.balance_changed,
            self.positions_changed,
        )
        self.changed_orders, self.new_fills = [], []
        self.balance_changed, self.positions_changed = False, set()
        return changes
