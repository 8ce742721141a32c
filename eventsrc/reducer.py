"""``reduce(state, event) -> state``: the one function every mode folds the trace with.

Pure, total and deterministic: it reads no clock, randomness, network or environment, and on a
well-formed event of any kind it never raises. An observation that is malformed (an order with
no id, a missing or negative amount, an unknown symbol, None where a number belongs, filled
beyond the amount, a non-finite number) is recorded in ``state.anomalies`` under its seq and
changes nothing else. Folding the same observation twice changes nothing the second time:
orders move only forward (``Order.best``), trades and reported levels are sets, balances and
positions are replaced, anomalies and watcher counters are keyed by seq.

Cash (spot): a balance report from the venue replaces the balances of the universe's
currencies (margin: only the main currency); fills folded since then move cash by the change
in each order's totals (base +/- filled, quote -/+ cost, fee currency - fee), so cash is right
between reports and is corrected by the next one.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
from immutables import Map

from eventsrc.events import (
    BalanceObserved,
    CancelObserved,
    Event,
    LocalCheckFailed,
    OHLCVObserved,
    OrderAcknowledged,
    OrderObserved,
    OrderRejected,
    OrderRequested,
    OrderRequestFailed,
    PositionObserved,
    StrategyStarted,
    StrategyStopped,
    TickerObserved,
    TradeObserved,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    WatcherStopped,
)
from eventsrc.fills import totals
from eventsrc.state import (
    ACKNOWLEDGED,
    CANCELED,
    EXACT,
    FAILED,
    OPEN,
    PARTIALLY_FILLED,
    REJECTED,
    TERMINAL,
    ZERO,
    Account,
    Anomaly,
    Book,
    Cash,
    Config,
    Fill,
    Health,
    Level,
    Order,
    Position,
    Report,
    State,
    WatcherHealth,
    furthest,
    split_symbol,
)

__all__ = [
    "FIELDS_READ",
    "REDUCER_VERSION",
    "Malformed",
    "advance",
    "handles",
    "read_as",
    "reduce",
]

REDUCER_VERSION = 1
"""Bump whenever a change to the reducer would fold some trace into a different state: it makes
stored snapshots (folded by the old reducer) ignored instead of trusted."""

_add = EXACT.add
_sub = EXACT.subtract
_mul = EXACT.multiply
_VENUE_STATUSES = frozenset({"open", "closed", "canceled", "expired", "rejected"})


class Malformed(Exception):
    """Raised inside a handler for an observation that cannot be folded; becomes an anomaly."""


def reduce(state: State, event: Event) -> State:
    """The state after folding ``event`` (its ``seq``, or ``state.seq + 1`` if unstamped)."""
    seq = event.seq if event.seq is not None else state.seq + 1
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return _advance(state, seq)
    try:
        return handler(state, event, seq)
    except Malformed as exc:
        return _anomaly(state, event, seq, str(exc))
    except decimal.DecimalException as exc:  # e.g. NaN compared, an overflow
        return _anomaly(state, event, seq, f"a number cannot be used ({type(exc).__name__})")


# ---------------------------------------------------------------------------------------------
# State construction: direct (attrs.evolve costs ~3x), every field given


def _state(
    s: State,
    seq: int,
    *,
    config: Config | None = None,
    cash: Map[str, Cash] | None = None,
    positions: Map[tuple[str, str], Position] | None = None,
    orders: Map[str, Order] | None = None,
    requests: Map[str, Order] | None = None,
    client_orders: Map[str, str] | None = None,
    last_price: Map[str, Decimal] | None = None,
    watchers: Map[str, WatcherHealth] | None = None,
    anomalies: Map[int, Anomaly] | None = None,
) -> State:
    account, book, health = s.account, s.book, s.health
    if cash is not None or positions is not None:
        account = Account(
            account.cash if cash is None else cash,
            account.positions if positions is None else positions,
        )
    if orders is not None or requests is not None or client_orders is not None:
        book = Book(
            book.orders if orders is None else orders,
            book.requests if requests is None else requests,
            book.client_orders if client_orders is None else client_orders,
        )
    if watchers is not None or anomalies is not None:
        health = Health(
            health.watchers if watchers is None else watchers,
            health.anomalies if anomalies is None else anomalies,
        )
    return State(
        seq,
        s.config if config is None else config,
        s.last_price if last_price is None else last_price,
        account,
        book,
        health,
    )


def advance(s: State, seq: int) -> State:
    """``s`` at ``seq``, nothing else changed: what every kind without a handler does."""
    return State(seq, s.config, s.last_price, s.account, s.book, s.health)


_advance = advance


def _anomaly(s: State, event: Event, seq: int, reason: str) -> State:
    return _state(s, seq, anomalies=s.anomalies.set(seq, Anomaly(seq, event.kind, reason)))


# ---------------------------------------------------------------------------------------------
# Checks: each raises Malformed with a reason a person can act on


def _number(value: Decimal | None, name: str, *, positive: bool = False) -> Decimal:
    if value is None:
        raise Malformed(f"{name} is missing")
    if not value.is_finite():
        raise Malformed(f"{name} is {value}")
    if value < 0 or (positive and value == 0):
        raise Malformed(f"{name} is {value}, must be {'> 0' if positive else '>= 0'}")
    return value


def _known_symbol(s: State, symbol: str | None) -> str:
    if symbol is None:
        raise Malformed("no symbol")
    if symbol not in s.config.symbols():
        raise Malformed(f"unknown symbol {symbol!r} (not in the strategy's universe)")
    return symbol


def _side(side: str | None) -> str:
    if side not in ("buy", "sell"):
        raise Malformed(f"side is {side!r}, must be 'buy' or 'sell'")
    return side


# ---------------------------------------------------------------------------------------------
# Orders


_SAME: Any = object()


def _shown(status: str, filled: Decimal, amount: Decimal | None) -> str:
    """The status shown: ``partially_filled`` while open (or acknowledged) with some fill."""
    if status in (OPEN, PARTIALLY_FILLED, ACKNOWLEDGED) and filled > 0:
        done = amount is not None and filled >= amount
        return OPEN if done else PARTIALLY_FILLED
    return OPEN if status == PARTIALLY_FILLED else status


def _account(
    s: State,
    symbol: str,
    side: str | None,
    fee_currency: str | None,
    before: Level,
    totals_now: Level,
) -> tuple[Level, Map[str, Cash]]:
    """Spot: move cash by the change in an order's totals since last accounted; returns the
    totals now accounted and the cash."""
    cash = s.cash
    if totals_now == before or s.config.margin or side is None:
        return before, cash
    base, quote, _ = split_symbol(symbol)
    if base is None or quote is None:
        return before, cash
    d_filled = _sub(totals_now.filled, before.filled)
    d_cost = _sub(totals_now.cost, before.cost)
    d_fee = _sub(totals_now.fee, before.fee)
    buy = side == "buy"
    moves = [(base, d_filled if buy else -d_filled), (quote, -d_cost if buy else d_cost)]
    if fee_currency:
        moves.append((fee_currency, -d_fee))
    else:  # a fee in no known currency waits until its currency is known
        totals_now = Level(totals_now.filled, totals_now.cost, before.fee)
    for currency, delta in moves:
        if delta:
            old = cash.get(currency) or Cash()
            cash = cash.set(currency, Cash(_add(old.total, delta), _add(old.free, delta), old.used))
    return totals_now, cash


def _store(
    s: State,
    seq: int,
    order: Order,
    *,
    requests: Map[str, Order] | None = None,
    client_order_id: Any = _SAME,
    side: Any = _SAME,
    order_type: Any = _SAME,
    price: Any = _SAME,
    amount: Any = _SAME,
    status: Any = _SAME,
    fee_currency: Any = _SAME,
    levels: Any = _SAME,
    top: Any = _SAME,
    fee_level: Any = _SAME,
    real: Any = _SAME,
    real_total: Any = _SAME,
    best: Any = _SAME,
    reason: Any = _SAME,
) -> State:
    """The state with ``order`` (named by the venue) changed as given: its totals, shown
    status and cash settled, and its client id linked. One Order built, one State."""
    order_id = order.order_id
    assert order_id is not None
    side = order.side if side is _SAME else side
    amount = order.amount if amount is _SAME else amount
    fee_currency = order.fee_currency if fee_currency is _SAME else fee_currency
    top = order.top if top is _SAME else top
    fee_level = order.fee_level if fee_level is _SAME else fee_level
    real_total = order.real_total if real_total is _SAME else real_total
    client_order_id = order.client_order_id if client_order_id is _SAME else client_order_id
    now = totals(top, real_total, fee_level)
    accounted, cash = _account(s, order.symbol, side, fee_currency, order.accounted, now)
    settled = Order(
        order_id,
        client_order_id,
        order.symbol,
        side,
        order.order_type if order_type is _SAME else order_type,
        order.price if price is _SAME else price,
        amount,
        _shown(order.status if status is _SAME else status, now.filled, amount),
        now.filled,
        now.cost,
        now.fee,
        fee_currency,
        order.levels if levels is _SAME else levels,
        top,
        fee_level,
        order.real if real is _SAME else real,
        real_total,
        order.best if best is _SAME else best,
        accounted,
        order.reason if reason is _SAME else reason,
        seq,
    )
    client_orders = s.client_orders
    if client_order_id and client_orders.get(client_order_id) != order_id:
        client_orders = client_orders.set(client_order_id, order_id)
    return _state(
        s,
        seq,
        cash=cash,
        orders=s.orders.set(order_id, settled),
        requests=requests,
        client_orders=client_orders,
    )


def _forward(s: State, seq: int, order: Order, status: str, **changes: Any) -> State:
    """Store ``order`` at ``status`` if that is further along; never backwards."""
    return _store(s, seq, order, status=furthest(order.status, status), **changes)


def _named(
    s: State, order_id: str, client_order_id: str | None, symbol: str
) -> tuple[Order, Map[str, Order] | None]:
    """The order to update for a venue report: known by id, or the local request it answers
    (taken out of ``requests``), or a new one."""
    order = s.orders.get(order_id)
    if order is not None:
        if not client_order_id or order.client_order_id == client_order_id:
            return order, None
        request = s.requests.get(client_order_id)
        if request is None:
            return attrs.evolve(order, client_order_id=client_order_id), None
        # Known by id first (say from a trade), and now linked to the request it answers.
        merged = attrs.evolve(
            order,
            client_order_id=client_order_id,
            side=order.side or request.side,
            order_type=order.order_type or request.order_type,
            price=order.price if order.price is not None else request.price,
            amount=order.amount if order.amount is not None else request.amount,
            status=furthest(order.status, request.status),
        )
        return merged, s.requests.delete(client_order_id)
    if client_order_id and client_order_id in s.requests:
        request = s.requests[client_order_id]
        return attrs.evolve(request, order_id=order_id), s.requests.delete(client_order_id)
    return Order(order_id=order_id, client_order_id=client_order_id, symbol=symbol), None


def _order_requested(s: State, e: OrderRequested, seq: int) -> State:
    symbol = _known_symbol(s, e.asset)
    side = _side(e.side)
    amount = _number(e.amount, "amount", positive=True)
    if e.price is not None:
        _number(e.price, "price", positive=True)
    cid = e.client_order_id
    known = s.requests.get(cid)
    if known is None and cid in s.client_orders:
        known = s.orders.get(s.client_orders[cid])
    if known is not None:
        # A retry: it must be the same order (the venue may have filled in its price or
        # rounded its amount since; its market and side never change).
        if (known.symbol, known.side) != (symbol, side):
            raise Malformed(f"client order id {cid!r} is reused for a different order")
        return _advance(s, seq)
    request = Order(
        order_id=None,
        client_order_id=cid,
        symbol=symbol,
        side=side,
        order_type=e.order_type,
        price=e.price,
        amount=amount,
        last_seq=seq,
    )
    return _state(s, seq, requests=s.requests.set(cid, request))


def _local_outcome(status: str) -> Callable[[State, Any, int], State]:
    def handle(s: State, e: Any, seq: int) -> State:
        cid = e.client_order_id
        reason = (
            getattr(e, "reason", None) or f"{getattr(e, 'error', '')} {getattr(e, 'message', '')}"
        )
        if cid is not None and cid in s.requests:
            request = s.requests[cid]
            if furthest(request.status, status) == request.status:
                return _advance(s, seq)
            updated = attrs.evolve(request, status=status, reason=reason.strip(), last_seq=seq)
            return _state(s, seq, requests=s.requests.set(cid, updated))
        order_id = s.client_orders.get(cid) if cid is not None else None
        if order_id is not None and status == REJECTED:
            return _forward(s, seq, s.orders[order_id], status, reason=reason.strip())
        return _advance(s, seq)

    return handle


def _order_acknowledged(s: State, e: OrderAcknowledged, seq: int) -> State:
    cid = e.client_order_id
    symbol = e.asset
    if symbol is None and cid and cid in s.requests:
        symbol = s.requests[cid].symbol
    order, requests = _named(s, e.order_id, cid, _known_symbol(s, symbol))
    return _forward(s, seq, order, ACKNOWLEDGED, requests=requests)


def _order_observed(s: State, e: OrderObserved, seq: int) -> State:
    if e.order_id is None:
        raise Malformed("no order id")
    symbol = _known_symbol(s, e.asset)
    if e.status is None or e.status not in _VENUE_STATUSES:
        raise Malformed(f"status is {e.status!r}")
    amount = _number(e.amount, "amount")
    filled = _number(e.filled, "filled")
    if filled > amount:
        raise Malformed(f"filled {filled} is more than the amount {amount}")
    if e.cost is not None:
        cost = _number(e.cost, "cost")
    elif filled == 0:
        cost = ZERO
    elif e.average is not None:
        cost = _mul(_number(e.average, "average"), filled)
    else:
        raise Malformed("filled without a cost or an average price")
    fee_known = e.fee_cost is not None
    fee = _finite(e.fee_cost, "fee") if e.fee_cost is not None else ZERO  # rebates: < 0
    status = e.status
    order, requests = _named(s, e.order_id, e.client_order_id, symbol)
    if e.price is not None:
        _finite(e.price, "price")
    if order.symbol != symbol:
        raise Malformed(f"order {e.order_id} was {order.symbol}, now reported as {symbol}")
    changes: dict[str, Any] = {}
    report = Report(
        filled, status, cost, e.fee_cost, amount, e.price, e.side, e.order_type, e.fee_currency
    )
    best = order.best
    if best != report and (
        best is None
        or filled > best.filled
        or (filled == best.filled and report.rank() > best.rank())
    ):
        changes.update(
            side=e.side or order.side,
            order_type=e.order_type or order.order_type,
            price=e.price if e.price is not None else order.price,
            amount=amount,
            fee_currency=e.fee_currency or order.fee_currency,
            best=report,
        )
    else:  # not the best report, but it may still say what nothing else has
        for name in ("side", "order_type", "fee_currency"):
            if getattr(order, name) is None and getattr(e, name) is not None:
                changes[name] = getattr(e, name)
        if order.price is None and e.price is not None:
            changes["price"] = e.price
    level = Level(filled, cost, fee, fee_known)
    status = furthest(order.status, status)
    if (
        not changes
        and requests is None
        and status == order.status
        and (filled == 0 or level in order.levels)
        and (not e.client_order_id or e.client_order_id == order.client_order_id)
        and order.order_id in s.orders
    ):
        return advance(s, seq)  # a repeat of what is known (a polling watcher's view)
    if filled > 0 and level not in order.levels:
        changes["levels"] = order.levels.set(level, True)
        if level > order.top:
            changes["top"] = level
        if fee_known and level > order.fee_level:
            changes["fee_level"] = level
    return _store(s, seq, order, requests=requests, status=status, **changes)


def _trade_observed(s: State, e: TradeObserved, seq: int) -> State:
    if e.trade_id is None:
        raise Malformed("no trade id (a trade without one cannot be told from a repeat)")
    if e.order_id is None:
        raise Malformed("no order id")
    symbol = _known_symbol(s, e.asset)
    amount = _number(e.amount, "amount", positive=True)
    if e.cost is not None:
        cost = _number(e.cost, "cost")
    elif e.price is not None:
        cost = _mul(_number(e.price, "price"), amount)
    else:
        raise Malformed("no cost and no price")
    fee = ZERO if e.fee_cost is None else _finite(e.fee_cost, "fee")  # rebates: < 0
    order, requests = _named(s, e.order_id, e.client_order_id, symbol)
    if order.symbol != symbol:
        raise Malformed(f"order {e.order_id} is {order.symbol}, its trade says {symbol}")
    known = order.real.get(e.trade_id)
    if known is not None:  # a repeat (a REST backfill of a streamed trade, say)
        if (known.amount, known.cost, known.fee_cost) != (amount, cost, fee):
            raise Malformed(f"trade {e.trade_id} reported again with other amounts")
        return _advance(s, seq)
    fill = Fill(
        order_id=e.order_id,
        symbol=symbol,
        side=e.side,
        amount=amount,
        cost=cost,
        fee_cost=fee,
        fee_currency=e.fee_currency,
        trade_id=e.trade_id,
        emulated=False,
        seq=seq,
        exchange_ts=e.exchange_ts,
    )
    real_total = order.real_total
    return _store(
        s,
        seq,
        order,
        requests=requests,
        real=order.real.set(e.trade_id, fill),
        real_total=Level(
            _add(real_total.filled, amount), _add(real_total.cost, cost), _add(real_total.fee, fee)
        ),
        side=order.side or fill.side,
        fee_currency=order.fee_currency or fill.fee_currency,
        status=furthest(order.status, OPEN),
    )


def _cancel_observed(s: State, e: CancelObserved, seq: int) -> State:
    order_id = e.order_id or (s.client_orders.get(e.client_order_id) if e.client_order_id else None)
    if order_id is None or order_id not in s.orders:
        return _advance(s, seq)  # the order's own report will follow
    if e.status is not None and e.status not in TERMINAL:
        return _advance(s, seq)  # a cancel under way: the order's own reports will tell
    return _forward(s, seq, s.orders[order_id], e.status or CANCELED)


# ---------------------------------------------------------------------------------------------
# Balances, positions, prices, configuration, watchers


def _balance_observed(s: State, e: BalanceObserved, seq: int) -> State:
    wanted = s.config.currencies()
    if s.config.margin:
        wanted = frozenset({s.config.main_currency}) if s.config.main_currency else frozenset()
    with s.cash.mutate() as cash:  # one new map for the whole report
        for balance in e.balances:
            currency = balance.currency
            if currency not in wanted:
                continue
            total, free, used = balance.total, balance.free, balance.used
            if total is None and free is not None and used is not None:
                total = _add(free, used)
            if total is None:
                raise Malformed(f"{currency}: no total")
            if not (total.is_finite() and (free is None or free.is_finite())):
                raise Malformed(f"{currency}: total {total}, free {free}")
            if free is None:
                free = total
            if used is None:
                used = _sub(total, free)
            elif not used.is_finite():
                raise Malformed(f"{currency}: used {used}")
            old = cash.get(currency)
            if old is None or (old.total, old.free, old.used) != (total, free, used):
                cash[currency] = Cash(total, free, used)
        updated = cash.finish()
    return _state(s, seq, cash=updated)


def _finite(value: Decimal, name: str) -> Decimal:
    if not value.is_finite():
        raise Malformed(f"{name} is {value}")
    return value


_POSITION_NUMBERS = (
    "contract_size",
    "entry_price",
    "mark_price",
    "leverage",
    "liquidation_price",
    "collateral",
    "initial_margin",
    "unrealized_pnl",
)


def _position_observed(s: State, e: PositionObserved, seq: int) -> State:
    symbol = _known_symbol(s, e.asset)
    if e.side not in ("long", "short"):
        raise Malformed(f"side is {e.side!r}, must be 'long' or 'short'")
    contracts = _number(e.contracts, "contracts")
    for name in _POSITION_NUMBERS:
        value = getattr(e, name)
        if value is not None and not value.is_finite():
            raise Malformed(f"{name} is {value}")
    key = (symbol, e.side)
    if contracts == 0:
        if key not in s.positions:
            return _advance(s, seq)
        return _state(s, seq, positions=s.positions.delete(key))
    position = Position(
        symbol=symbol,
        side=e.side,
        contracts=contracts,
        contract_size=e.contract_size,
        entry_price=e.entry_price,
        mark_price=e.mark_price,
        leverage=e.leverage,
        liquidation_price=e.liquidation_price,
        collateral=e.collateral,
        initial_margin=e.initial_margin,
        unrealized_pnl=e.unrealized_pnl,
        margin_mode=e.margin_mode,
        seq=seq,
    )
    return _state(s, seq, positions=s.positions.set(key, position))


def _price(s: State, symbol: str | None, price: Decimal | None, seq: int) -> State:
    if symbol is None or price is None or not price.is_finite() or price <= 0:
        return _advance(s, seq)
    return State(seq, s.config, s.last_price.set(symbol, price), s.account, s.book, s.health)


def _ticker_observed(s: State, e: TickerObserved, seq: int) -> State:
    price = e.last
    bid, ask = e.bid, e.ask
    if (
        price is None
        and bid is not None
        and ask is not None
        and bid.is_finite()
        and ask.is_finite()
    ):
        price = EXACT.divide(EXACT.add(bid, ask), 2)
    return _price(s, e.asset, price, seq)


def _ohlcv_observed(s: State, e: OHLCVObserved, seq: int) -> State:
    return _price(s, e.asset, e.close, seq)


def _strategy_started(s: State, e: StrategyStarted, seq: int) -> State:
    config = Config(e.main_currency, e.universe, e.margin, e.exchange, e.strategy, True)
    return _state(s, seq, config=config)


def _strategy_stopped(s: State, e: StrategyStopped, seq: int) -> State:
    return _state(s, seq, config=attrs.evolve(s.config, running=False))


def _watcher(status: str) -> Callable[[State, Any, int], State]:
    def handle(s: State, e: Any, seq: int) -> State:
        old = s.watchers.get(e.watcher)
        counted = old is not None and old.since_seq >= seq  # already folded: idempotent
        if counted:
            return _advance(s, seq)
        errors = old.errors if old else 0
        gaps = old.gaps if old else 0
        last_error = old.last_error if old else None
        if status == "error":
            errors += 1
            last_error = f"{e.error}: {e.message}".strip(": ")
        elif status == "reconnected":
            gaps += 1
        health = WatcherHealth(status, seq, errors, gaps, last_error)
        return _state(s, seq, watchers=s.watchers.set(e.watcher, health))

    return handle


_HANDLERS: dict[type, Callable[[State, Any, int], State]] = {
    StrategyStarted: _strategy_started,
    StrategyStopped: _strategy_stopped,
    OrderRequested: _order_requested,
    LocalCheckFailed: _local_outcome(FAILED),
    OrderAcknowledged: _order_acknowledged,
    OrderRejected: _local_outcome(REJECTED),
    OrderRequestFailed: _local_outcome(FAILED),
    OrderObserved: _order_observed,
    TradeObserved: _trade_observed,
    CancelObserved: _cancel_observed,
    BalanceObserved: _balance_observed,
    PositionObserved: _position_observed,
    TickerObserved: _ticker_observed,
    OHLCVObserved: _ohlcv_observed,
    WatcherStarted: _watcher("running"),
    WatcherStopped: _watcher("stopped"),
    WatcherError: _watcher("error"),
    WatcherReconnected: _watcher("reconnected"),
}

FIELDS_READ: dict[type, tuple[str, ...]] = {
    StrategyStarted: ("main_currency", "universe", "margin", "exchange", "strategy"),
    StrategyStopped: (),
    OrderRequested: ("client_order_id", "side", "order_type", "amount", "price", "asset"),
    LocalCheckFailed: ("client_order_id", "reason"),
    OrderAcknowledged: ("client_order_id", "order_id", "asset"),
    OrderRejected: ("client_order_id", "error", "message"),
    OrderRequestFailed: ("client_order_id", "error", "message"),
    OrderObserved: (
        "order_id",
        "client_order_id",
        "asset",
        "status",
        "side",
        "order_type",
        "price",
        "amount",
        "filled",
        "cost",
        "average",
        "fee_cost",
        "fee_currency",
        "exchange_ts",
    ),
    TradeObserved: (
        "trade_id",
        "order_id",
        "client_order_id",
        "asset",
        "side",
        "price",
        "amount",
        "cost",
        "fee_cost",
        "fee_currency",
        "exchange_ts",
    ),
    CancelObserved: ("order_id", "client_order_id", "status"),
    BalanceObserved: ("balances",),
    PositionObserved: ("asset", "side", "contracts", *_POSITION_NUMBERS, "margin_mode"),
    TickerObserved: ("asset", "last", "bid", "ask"),
    OHLCVObserved: ("asset", "close"),
    WatcherStarted: ("watcher",),
    WatcherStopped: ("watcher",),
    WatcherError: ("watcher", "error", "message"),
    WatcherReconnected: ("watcher",),
}
"""The fields each handled kind's handler reads (besides ``seq`` and the class's ``kind``).
Replay decodes only these (eventsrc.replay); the replay-equals-live law test holds it to it."""
assert FIELDS_READ.keys() == _HANDLERS.keys()


def handles(cls: type[Event]) -> bool:
    """Whether folding events of ``cls`` can change more than the seq."""
    return cls in _HANDLERS


def read_as(view: type, cls: type[Event]) -> None:
    """Fold objects of ``view`` (carrying ``FIELDS_READ[cls]``, ``seq`` and ``kind``) exactly
    as events of ``cls``: same handler, same function."""
    _HANDLERS[view] = _HANDLERS[cls]
