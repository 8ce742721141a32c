"""The simulated venue's own books: balances, orders, fills, positions, and the matching.

Deterministic and synchronous: prices move one tick at a time along a price path; resting
orders fill against each tick; every amount is an exact ``Decimal``, truncated to the market's
amount step (as ccxt's ``amount_to_precision`` sends it), every price rounded to its tick (a
limit order's as ccxt's ``price_to_precision`` sends it); fees are charged in the currency
received (spot: the base on a buy, the quote on a sell) or in the settlement currency
(perpetuals), so no balance can go negative.

Perpetuals are linear, one-way (a net position per market), isolated: margin = notional /
leverage at the leverage the order was placed with (changing the leverage changes later orders
only), realized profit and fees in the settlement currency, liquidation where the position's
own margin is gone down to the maintenance margin, ``entry * (1 +- maintenance) -+ margin /
contracts``. A fill the account could no longer pay for (margin and fee) cancels the order
instead, and reduce-only orders never add up to more than the position: those that would are
refused when placed and canceled when the position shrinks under them.
"""

from __future__ import annotations

import decimal
import functools
import inspect
import random
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple, TypeVar

import attrs
import ccxt

from adapters.sim.markets import PricePath

T = TypeVar("T")
R = TypeVar("R")

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


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding) * step


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
    leverage: Decimal = Decimal(1)
    """The leverage its margin was locked at (perpetuals)."""
    took: bool = False
    """It crossed the book when placed: what is left of it keeps taking at the touch."""

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


def _reduces(held: Decimal, side: str) -> bool:
    """Whether an order on ``side`` reduces the signed position ``held``."""
    return (held > 0 and side == "sell") or (held < 0 and side == "buy")


class _Trade(NamedTuple):
    """A perpetual fill's effect on its position: the part that closes (the margin it frees,
    its realized profit), the part that opens (the margin it takes), at ``price``."""

    closing: Decimal
    released: Decimal
    pnl: Decimal
    opening: Decimal
    margin: Decimal
    price: Decimal


@attrs.define
class SimPosition:
    symbol: str
    contracts: Decimal = ZERO
    """Signed: > 0 long, < 0 short."""
    entry_price: Decimal = ZERO
    margin: Decimal = ZERO
    """Posted by the orders that opened it, each at its own leverage."""


def _in_own_context(cls: type[T]) -> type[T]:
    """Run every method of ``cls`` in ``_C``: ccxt sets the caller's decimal context's rounding
    to half-up (and its traps) on every ``decimal_to_precision``, so the venue's arithmetic
    must not depend on it (a spot demo before a margin one changed the margin one's balances)."""
    for name, member in list(vars(cls).items()):
        if inspect.isfunction(member) and not name.startswith("__"):
            setattr(cls, name, _contextual(member))
    return cls


def _contextual(method: Callable[..., R]) -> Callable[..., R]:
    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> R:
        with decimal.localcontext(_C):
            return method(*args, **kwargs)

    return run


@_in_own_context
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

    def _step(self, symbol: str, what: str) -> Decimal:
        return Decimal(repr(self.markets[symbol]["precision"][what]))

    def _round(self, symbol: str, price: Decimal) -> Decimal:
        """One of the venue's own prices (the path's, the spread, a liquidation) to the tick,
        to the nearest."""
        return _to_step(price, self._step(symbol, "price"), ROUND_HALF_EVEN)

    def _limit_price(self, symbol: str, price: Any) -> Decimal:
        """A limit order's price to the tick as ccxt's ``price_to_precision`` sends it: to the
        nearest, a tie away from zero; InvalidOrder when that leaves nothing."""
        asked = None if price is None else Decimal(repr(float(price)))
        if asked is None or not asked.is_finite() or asked <= 0:
            raise ccxt.InvalidOrder(f"sim: a limit order needs a price > 0, not {price}")
        tick = self._step(symbol, "price")
        limit = _to_step(asked, tick, ROUND_HALF_UP)
        if limit == 0:
            raise ccxt.InvalidOrder(
                f"sim: price {asked} of {symbol} rounds to 0 at its tick {tick}"
            )
        return limit

    def _truncate(self, symbol: str, amount: Decimal) -> Decimal:
        """An amount to the market's step, toward zero, as ccxt's ``amount_to_precision``
        (TRUNCATE) sends it: never more than was asked for, or than is held."""
        return _to_step(amount, self._step(symbol, "amount"), ROUND_DOWN)

    def _min_amount(self, symbol: str) -> Decimal:
        minimum = self.markets[symbol]["limits"]["amount"]["min"]
        return ZERO if minimum is None else Decimal(repr(float(minimum)))

    def _order_amount(self, symbol: str, amount: Any) -> Decimal:
        """What an order for ``amount`` is for: truncated to the step; InvalidOrder when that
        leaves nothing, or less than the market's minimum."""
        asked = Decimal(repr(float(amount)))
        if not asked.is_finite() or asked <= 0:
            raise ccxt.InvalidOrder(f"sim: order amount {amount} must be > 0")
        step = self._step(symbol, "amount")
        truncated = self._truncate(symbol, asked)
        if truncated == 0:
            raise ccxt.InvalidOrder(
                f"sim: amount {asked} of {symbol} truncates to 0 at its amount step {step}"
                " (ccxt's amount_to_precision)"
            )
        minimum = self._min_amount(symbol)
        if truncated < minimum:
            raise ccxt.InvalidOrder(
                f"sim: amount {asked} of {symbol} truncates to {truncated} at its amount step"
                f" {step}, below the market's minimum amount {minimum}"
            )
        return truncated

    def mid(self, symbol: str) -> Decimal:
        return self.price_at(symbol, self.tick)

    def price_at(self, symbol: str, tick: int) -> Decimal:
        """The market's price at ``tick``, to its price precision."""
        return self._round(symbol, self.prices.price(symbol, tick))

    def bid_ask(self, symbol: str) -> tuple[Decimal, Decimal]:
        mid = self.mid(symbol)
        half = self._round(symbol, mid * SPREAD / 2) or self._step(symbol, "price")
        return mid - half, mid + half

    def advance_to(self, now_ms: int) -> None:
        """Move the market to ``now_ms``: each tick in between moves prices and fills what
        rests against them."""
        target = max(0, (now_ms - self.start_ms) // self.tick_ms)
        while self.tick < target:
            self.tick += 1
            self.now = self.start_ms + self.tick * self.tick_ms
            self._liquidate()  # first: no order fills against a position already lost
            for order in [o for o in self.orders.values() if o.status == "open"]:
                self._match(order, taker=False)
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
        amount_d = self._order_amount(symbol, amount)
        limit: Decimal | None = None
        if type == "limit":
            limit = self._limit_price(symbol, price)
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
        order = SimOrder(
            id=self._next_order_id(),
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
            room = self._reducible(symbol, side)
            if amount_d > room:
                raise ccxt.InvalidOrder(
                    f"sim: reduceOnly order of {amount_d} would not reduce the position"
                    f" (at most {room} more can be reduced)"
                )
        order.took = marketable
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

    def _reducible(self, symbol: str, side: str) -> Decimal:
        """How much more a reduce-only order on ``side`` may reduce: the position, less what
        the resting reduce-only orders on that side already will."""
        held = self._held(symbol)
        if not _reduces(held, side):
            return ZERO
        resting = sum(
            (
                o.remaining
                for o in self.orders.values()
                if o.status == "open" and o.reduce_only and o.symbol == symbol and o.side == side
            ),
            ZERO,
        )
        return max(ZERO, abs(held) - resting)

    def _next_order_id(self) -> str:
        self._order_seq += 1
        return str(1_000_000 + self._order_seq)

    def _held(self, symbol: str) -> Decimal:
        position = self.positions.get(symbol)
        return position.contracts if position else ZERO

    def _trim_reduce_only(self, symbol: str) -> None:
        """Cancel the resting reduce-only orders the position no longer covers (oldest kept)."""
        held = self._held(symbol)
        room = abs(held)
        for order in list(self.orders.values()):
            if order.status != "open" or not order.reduce_only or order.symbol != symbol:
                continue
            if _reduces(held, order.side) and order.remaining <= room:
                room -= order.remaining
            else:
                self._close(order, "canceled")
                self._changed(order)

    def _lock(self, order: SimOrder, price: Decimal) -> None:
        market = self.markets[order.symbol]
        if market["contract"]:
            if order.reduce_only:
                return
            leverage = self.leverage.get(order.symbol, self.default_leverage)
            order.leverage = leverage
            # A buy fills at its limit or lower; a sell at the touch or higher, so its margin
            # is locked at the higher of its limit and the bid.
            reference = (
                price
                if order.price is None
                else (max(order.price, price) if order.side == "sell" else order.price)
            )
            # Margin for what would open a position (what closes the one held needs none); the
            # fee for all of it. The fill checks again: the position may change meanwhile.
            held = self._held(order.symbol)
            opening = (
                max(ZERO, order.amount - abs(held)) if _reduces(held, order.side) else order.amount
            )
            need = _q(_C.divide(_C.multiply(opening, reference), leverage)) + _q(
                _C.multiply(_C.multiply(order.amount, reference), Decimal(repr(market["taker"])))
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
        if order.status != "open":
            return
        bid, ask = self.bid_ask(order.symbol)
        price = ask if order.side == "buy" else bid
        taker = taker or order.took
        if order.price is not None:
            crosses = price <= order.price if order.side == "buy" else price >= order.price
            if not crosses:
                return
            if not taker:
                price = order.price  # a resting order fills at its own price
        quantity = order.remaining
        if self.partial_fills and not whole and order.type == "limit":
            share = Decimal(repr(round(self._rng.uniform(0.25, 1.0), 4)))
            quantity = self._truncate(order.symbol, order.remaining * share)
            if quantity <= 0 or order.remaining - quantity < self._min_amount(order.symbol):
                quantity = order.remaining
        if order.reduce_only:
            room = abs(self._held(order.symbol))
            if room == 0 or order.remaining > room:  # the position shrank under it
                self._close(order, "canceled")
                self._changed(order)
                return
        if not self._fill(order, quantity, price, "taker" if taker else "maker"):
            self._close(order, "canceled")  # the account can no longer pay for it
            self._changed(order)
            return
        if order.remaining == 0:
            self._close(order, "closed")
        self._changed(order)

    def _fill(
        self, order: SimOrder, quantity: Decimal, price: Decimal, role: str, *, forced: bool = False
    ) -> bool:
        """Fill ``quantity`` of ``order`` at ``price``; False (and nothing done) when it is a
        perpetual fill the account cannot pay for, unless ``forced``: a liquidation."""
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
        pnl = ZERO
        if market["contract"]:
            settle = market["settle"]
            fee_currency, fee = settle, self._round_fee(cost * rate)
            plan = self._plan(order, quantity, price)
            after = self.free.get(settle, ZERO) + unlock + plan.released + plan.pnl
            if not forced and after - plan.margin - fee < 0:
                return False
            order.locked -= unlock
            self._release(settle, unlock)
            pnl = self._trade_position(order, plan)
            self.free[settle] -= fee
        else:
            order.locked -= unlock
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
        self._fill_seq += 1
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
            liquidation=forced,
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
        if market["contract"]:
            self._trim_reduce_only(order.symbol)
        return True

    @staticmethod
    def _round_fee(fee: Decimal) -> Decimal:
        return fee.quantize(Decimal("0.00000001"), ROUND_HALF_EVEN)

    def _plan(self, order: SimOrder, quantity: Decimal, price: Decimal) -> _Trade:
        """What a perpetual fill does to the position, before it is done."""
        position = self.positions.get(order.symbol) or SimPosition(order.symbol)
        held = position.contracts
        closing = released = pnl = ZERO
        if _reduces(held, order.side):  # maybe flipping
            closing = min(quantity, abs(held))
            pnl = _C.multiply(closing, price - position.entry_price) * (1 if held > 0 else -1)
            released = (
                position.margin
                if closing == abs(held)
                else _q(_C.divide(_C.multiply(position.margin, closing), abs(held)))
            )
        opening = quantity - closing
        margin = _q(_C.divide(_C.multiply(opening, price), order.leverage)) if opening else ZERO
        return _Trade(closing, released, pnl, opening, margin, price)

    def _trade_position(self, order: SimOrder, trade: _Trade) -> Decimal:
        """Apply a perpetual fill to the position: margin from free to used when it opens or
        adds, back (with the realized profit) when it reduces. Returns the realized profit."""
        settle = self.markets[order.symbol]["settle"]
        position = self.positions.setdefault(order.symbol, SimPosition(order.symbol))
        held = position.contracts
        if trade.closing:
            position.margin -= trade.released
            self.used[settle] -= trade.released
            self.free[settle] += trade.released + trade.pnl
            held = held - trade.closing if held > 0 else held + trade.closing
            if held == 0:
                position.entry_price = ZERO
        if trade.opening:
            total = abs(held) + trade.opening
            position.entry_price = _q(
                _C.divide(
                    _C.add(
                        _C.multiply(abs(held), position.entry_price),
                        _C.multiply(trade.opening, trade.price),
                    ),
                    total,
                )
            )
            self.free[settle] -= trade.margin
            self.used[settle] += trade.margin
            position.margin += trade.margin
            held = held + trade.opening if order.side == "buy" else held - trade.opening
        position.contracts = held
        self.positions_changed.add(order.symbol)
        return trade.pnl

    def liquidation_price(self, position: SimPosition) -> Decimal | None:
        """Where the position's own margin, less the maintenance margin, is lost."""
        if position.contracts == 0:
            return None
        contracts = abs(position.contracts)
        cushion = _C.divide(position.margin, contracts)
        entry = position.entry_price
        if position.contracts > 0:
            return max(ZERO, _q(entry * (1 + MAINTENANCE) - cushion))
        return _q(entry * (1 - MAINTENANCE) + cushion)

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
            order = SimOrder(
                id=self._next_order_id(),
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
            self._fill(order, order.amount, self._round(symbol, price), "taker", forced=True)
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
