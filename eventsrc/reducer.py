"""``reduce(state, event) -> state``: the one function every mode folds the trace with.

Pure, total and deterministic: it reads no clock, randomness, network or environment, and on a
well-formed event of any kind it never raises. An observation that is malformed (an order with
no id, a missing or negative amount, an unknown symbol, None where a number belongs, filled
beyond the amount, a non-finite number or one beyond any real amount (``IMPLAUSIBLE``), a
negative balance, a ticker with no price, a report that gives an order another side or
another order's client order id, a sum that would round) is recorded in ``state.anomalies``
under its seq and changes nothing else. Folding the same observation twice
changes nothing the second time: orders move only forward (``Order.best``), trades and reported
levels are sets, balances are kept only when newer, anomalies and watcher counters are keyed by
seq.

One path for live and replay: each handler declares, beside itself, the fields it reads
(``@handles(Kind, "field", ...)``). Handlers are given a *view* of the event holding only those
fields (eventsrc.codec.view_type): replay decodes views straight from the trace's bytes, and
``reduce`` turns a live event into the same view first. A handler reading a field it did not
declare fails at once, live and in replay alike.

Cash (spot markets only; contract markets never move cash, whatever the strategy's flag): a
currency's cash is the venue's latest balance report of it plus the effect of every spot fill
that report cannot include, which are the fills dated after it (the venue's times, where both
have one), else the fills folded after it. See eventsrc.state.Account.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, TypeVar

from immutables import Map

from eventsrc.codec import view_maker, view_type
from eventsrc.events import (
    BalanceObserved,
    CancelObserved,
    Event,
    Fee,
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
    contract_symbols,
)
from eventsrc.fills import lay_out
from eventsrc.state import (
    ACKNOWLEDGED,
    CANCELED,
    CLOSED,
    EXACT,
    FAILED,
    OPEN,
    PARTIALLY_FILLED,
    REJECTED,
    REQUESTED,
    TERMINAL,
    ZERO,
    Account,
    Anomaly,
    Book,
    Cash,
    Config,
    Fees,
    Fill,
    Health,
    Level,
    Order,
    Pending,
    Position,
    Report,
    Reported,
    State,
    WatcherHealth,
    When,
    fees_of,
    furthest,
    is_contract,
    replace,
    split_symbol,
)

__all__ = ["READS", "REDUCER_VERSION", "Malformed", "advance", "handles", "reduce"]

REDUCER_VERSION = 3
"""Bump whenever a change to the reducer would fold some trace into a different state: it makes
stored snapshots (folded by the old reducer) ignored instead of trusted."""

_add = EXACT.add
_sub = EXACT.subtract
_mul = EXACT.multiply
_neg = EXACT.minus
_VENUE_STATUSES = frozenset({"open", "closed", "canceled", "expired", "rejected"})
DUPLICATE_ORDER = "DuplicateOrderId"
"""The error (ccxt's class name) of a create refused because the client order id is taken:
the order exists."""

Handler = Callable[[State, Any, int], State]
H = TypeVar("H", bound=Handler)

_HANDLERS: dict[type, tuple[Handler, Callable[[Event, int], Any] | None]] = {}
READS: dict[type[Event], tuple[str, ...]] = {}
"""Every handled kind and the fields its handler reads (besides ``seq``)."""


class Malformed(Exception):
    """Raised inside a handler for an observation that cannot be folded; becomes an anomaly."""


def handles(cls: type[Event], *reads: str) -> Callable[[H], H]:
    """Register the decorated function as the handler of ``cls``, reading only ``reads``."""

    def register(handler: H) -> H:
        if cls in READS:
            raise ValueError(f"{cls.__qualname__} already has a handler")
        READS[cls] = reads
        _HANDLERS[cls] = (handler, view_maker(cls, reads))
        _HANDLERS[view_type(cls, reads)] = (handler, None)
        return handler

    return register


def reduce(state: State, event: Event) -> State:
    """The state after folding ``event`` (its ``seq``, or ``state.seq + 1`` if unstamped).
    ``event`` is an event, or its view as decoded by replay."""
    seq = event.seq if event.seq is not None else state.seq + 1
    entry = _HANDLERS.get(type(event))
    if entry is None:
        return advance(state, seq)
    handler, to_view = entry
    view = event if to_view is None else to_view(event, seq)
    try:
        return handler(state, view, seq)
    except Malformed as exc:
        return _anomaly(state, view, seq, str(exc))
    except decimal.DecimalException as exc:  # NaN compared, a sum that would round, ...
        return _anomaly(state, view, seq, f"a number cannot be used ({type(exc).__name__})")


# ---------------------------------------------------------------------------------------------
# State construction: direct, every field given


def _state(
    s: State,
    seq: int,
    *,
    config: Config | None = None,
    cash: Map[str, Cash] | None = None,
    positions: Map[tuple[str, str], Position] | None = None,
    reported: Map[str, Reported] | None = None,
    pending: Map[str, Map[str, Pending]] | None = None,
    orders: Map[str, Order] | None = None,
    requests: Map[str, Order] | None = None,
    client_orders: Map[str, str] | None = None,
    last_price: Map[str, Decimal] | None = None,
    watchers: Map[str, WatcherHealth] | None = None,
    anomalies: Map[int, Anomaly] | None = None,
) -> State:
    account, book, health = s.account, s.book, s.health
    if cash is not None or positions is not None or reported is not None or pending is not None:
        account = Account(
            account.cash if cash is None else cash,
            account.positions if positions is None else positions,
            account.reported if reported is None else reported,
            account.pending if pending is None else pending,
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


def _anomaly(s: State, event: Any, seq: int, reason: str) -> State:
    return _state(s, seq, anomalies=s.anomalies.set(seq, Anomaly(seq, event.kind, reason)))


# ---------------------------------------------------------------------------------------------
# Checks: each raises Malformed with a reason a person can act on


IMPLAUSIBLE = Decimal("1e20")
"""No real amount, price, cost, fee or balance reaches this: the largest token supplies
listed on venues are below 10^18 units and the largest prices (bitcoin in rupiah or dong)
near 10^10, while a venue's overflow or sentinel (1e308, 10^40) is far beyond. A number this
large is malformed, even when exact."""


def _number(value: Decimal | None, name: str, *, positive: bool = False) -> Decimal:
    if value is None:
        raise Malformed(f"{name} is missing")
    _finite(value, name)
    if value < 0 or (positive and value == 0):
        raise Malformed(f"{name} is {value}, must be {'> 0' if positive else '>= 0'}")
    return value


def _finite(value: Decimal, name: str) -> Decimal:
    """``value``, a finite number below ``IMPLAUSIBLE`` either way."""
    if not value.is_finite():
        raise Malformed(f"{name} is {value}")
    if abs(value) >= IMPLAUSIBLE:
        raise Malformed(f"{name} is {value}: beyond any real amount")
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


def _side_or_none(side: str | None) -> str | None:
    """A report's side, if it says one (ccxt writes "buy" and "sell", lower case)."""
    return None if side is None else _side(side)


def _id(value: str | None, name: str) -> str:
    """An id a report must carry (an empty one is none)."""
    if not value:
        raise Malformed(f"no {name}")
    return value


def _cid(value: str | None) -> str | None:
    """A client order id, if any (an empty one is none)."""
    return value or None


def _fees(fees: Iterable[Fee]) -> Fees:
    """Reported fees per currency (a fee in no named currency under ``""``)."""
    return fees_of((f.currency or "", _finite(f.cost, f"fee in {f.currency}")) for f in fees)


# ---------------------------------------------------------------------------------------------
# Cash: the latest balance report per currency, plus the fills it cannot include


def _included(fill: Fill, report: Reported | None) -> bool:
    """Whether the balance ``report`` already includes ``fill``: surely if the fill happened
    at or before the report's time, surely not if after it; where the venue's times cannot
    tell, if the fill was shown (folded) before the report."""
    if report is None:
        return False
    if report.ms is not None:
        if fill.until_ms is not None and fill.until_ms <= report.ms:
            return True
        if fill.after_ms is not None and fill.after_ms >= report.ms:
            return False
    return fill.seq < report.seq


def _effects(order: Order, reported: Map[str, Reported]) -> dict[str, Pending]:
    """Per currency, what the order's spot fills that the currency's latest report cannot
    include add to it (an entry for every currency such a fill touches, even if it nets 0)."""
    if order.side not in ("buy", "sell") or is_contract(order.symbol) or not order.fills:
        return {}
    base, quote, _ = split_symbol(order.symbol)
    if base is None or quote is None:
        return {}
    buy = order.side == "buy"
    on_base, on_quote = reported.get(base), reported.get(quote)
    found: dict[str, list[Any]] = {}  # currency -> [effect, earliest after_ms, all dated]

    def add(currency: str, delta: Decimal, fill: Fill) -> None:
        entry = found.get(currency)
        if entry is None:
            entry = found[currency] = [ZERO, fill.after_ms, True]
        entry[0] = _add(entry[0], delta)
        if fill.after_ms is None:
            entry[2] = False
        elif entry[1] is None or fill.after_ms < entry[1]:
            entry[1] = fill.after_ms

    for f in order.fills:
        if f.amount and not _included(f, on_base):
            add(base, f.amount if buy else _neg(f.amount), f)
        if f.cost and not _included(f, on_quote):
            add(quote, _neg(f.cost) if buy else f.cost, f)
        for currency, fee in f.fees:
            if currency and not _included(f, reported.get(currency)):
                add(currency, _neg(fee), f)
    return {c: Pending(e, after if dated else None) for c, (e, after, dated) in found.items()}


def _move(cash: Map[str, Cash], currency: str, delta: Decimal) -> Map[str, Cash]:
    old = cash.get(currency) or Cash()
    return cash.set(currency, Cash(_add(old.total, delta), _add(old.free, delta), old.used))


def _settle(s: State, order: Order) -> tuple[Map[str, Cash], Map[str, Map[str, Pending]]] | None:
    """Cash and pending effects after ``order`` changed; None if neither changes."""
    order_id = order.order_id
    assert order_id is not None
    now = _effects(order, s.account.reported)
    cash, pending = s.cash, s.account.pending
    changed = False
    for currency in {*now, *(c for c, by_order in pending.items() if order_id in by_order)}:
        by_order = pending.get(currency) or Map()
        old, new = by_order.get(order_id), now.get(currency)
        if old == new:
            continue
        changed = True
        delta = _sub(new.effect if new else ZERO, old.effect if old else ZERO)
        if delta:
            cash = _move(cash, currency, delta)
        by_order = by_order.delete(order_id) if new is None else by_order.set(order_id, new)
        pending = pending.set(currency, by_order) if by_order else pending.delete(currency)
    return (cash, pending) if changed else None


def _newer(new: Reported, old: Reported) -> bool:
    """Whether the balance report ``new`` of a currency supersedes ``old``."""
    same = (new.total, new.free, new.used) == (old.total, old.free, old.used)
    if new.ms is not None and old.ms is not None and new.ms != old.ms:
        return new.ms > old.ms
    # Undated, or dated the same millisecond (a venue that moves twice in one ms): what
    # arrived later says more; a repeat of the last report is stale.
    return not same and new.seq > old.seq


@handles(BalanceObserved, "balances", "exchange_ts")
def _balance_observed(s: State, e: BalanceObserved, seq: int) -> State:
    """Every currency reported is kept (a fee in BNB, say, outside the universe), so no cash is
    shown that a report could not correct; unchanged ones cost one comparison. A currency's new
    report drops the pending fills it includes; an order whose pending fills all happened
    after the report's time is not looked at again."""
    reported = s.account.reported
    fresh: dict[str, Reported] = {}
    listed: dict[str, tuple[Decimal, Decimal, Decimal]] = {}
    for balance in e.balances:
        currency = balance.currency
        total, free, used = balance.total, balance.free, balance.used
        if total is None and free is not None and used is not None:
            total = _add(free, used)
        if total is None:
            raise Malformed(f"{currency}: no total")
        _finite(total, f"{currency} total")
        if free is None:
            free = total if used is None else _sub(total, _finite(used, f"{currency} used"))
        if used is None:
            used = _sub(total, _finite(free, f"{currency} free"))
        for name, value in (("total", total), ("free", free), ("used", used)):
            # (what an account owes is ccxt's ``debt``, never a negative balance)
            _number(value, f"{currency} {name}")
        if listed.setdefault(currency, (total, free, used)) != (total, free, used):
            raise Malformed(f"{currency} is reported twice, differently")
        report = Reported(total, free, used, e.exchange_ts, seq)
        old = reported.get(currency)
        if old is None or _newer(report, old):
            fresh[currency] = report
    if not fresh:
        return advance(s, seq)
    with reported.mutate() as building:
        for currency, report in fresh.items():
            building[currency] = report
        reported = building.finish()
    pending = s.account.pending
    effects: dict[str, dict[str, Pending]] = {}
    before = s.account.reported
    with s.cash.mutate() as cash, pending.mutate() as still:
        for currency, report in fresh.items():
            # What the pending fills add: as before (the cash shown less the old report),
            # moved by the entries the new report changes.
            shown = cash.get(currency)
            old = before.get(currency)
            added = ZERO if shown is None else shown.total
            if old is not None:
                added = _sub(added, old.total)
            by_order = pending.get(currency)
            if by_order is not None:
                changed: dict[str, Pending | None] = {}
                for order_id, was in by_order.items():
                    if (
                        report.ms is not None
                        and was.after_ms is not None
                        and was.after_ms >= report.ms
                    ):
                        continue  # all its pending fills happened after the report
                    found = effects.get(order_id)
                    if found is None:
                        found = effects[order_id] = _effects(s.orders[order_id], reported)
                    now = found.get(currency)
                    if now != was:
                        changed[order_id] = now
                        added = _sub(added, was.effect)
                        if now is not None:
                            added = _add(added, now.effect)
                if changed:
                    with by_order.mutate() as entries:
                        for order_id, now in changed.items():
                            if now is None:
                                del entries[order_id]
                            else:
                                entries[order_id] = now
                        by_order = entries.finish()
                    if by_order:
                        still[currency] = by_order
                    else:
                        del still[currency]
            cash[currency] = Cash(_add(report.total, added), _add(report.free, added), report.used)
        shown_cash, pending = cash.finish(), still.finish()
    return _state(s, seq, cash=shown_cash, reported=reported, pending=pending)


# ---------------------------------------------------------------------------------------------
# Orders


def _shown(status: str, filled: Decimal, amount: Decimal | None) -> str:
    """The status shown: ``partially_filled`` while open (or acknowledged) with some fill."""
    if status in (OPEN, PARTIALLY_FILLED, ACKNOWLEDGED) and filled > 0:
        done = amount is not None and filled >= amount
        return OPEN if done else PARTIALLY_FILLED
    return OPEN if status == PARTIALLY_FILLED else status


def _unaccountable(order: Order) -> str | None:
    """Why the order's spot fills cannot move cash, if they cannot."""
    if not order.fills or is_contract(order.symbol):
        return None
    if split_symbol(order.symbol)[0] is None:
        return f"{order.symbol!r} is not a ccxt symbol (BASE/QUOTE): its fills move no cash"
    if order.side is None:
        return "no report has said its side yet: its fills move no cash"
    return None


def _store(s: State, seq: int, order: Order, requests: Map[str, Order] | None = None) -> State:
    """The state with ``order`` (named by the venue) as given: its fills laid out, totals and
    shown status from them, cash settled, its client id linked. Something wrong with its fills
    (reports and trades that disagree, fills that cannot move cash) is shown on the order; a
    disagreement this change brings is recorded as an anomaly too."""
    order_id = order.order_id
    assert order_id is not None
    layout = lay_out(order_id, order.symbol, order.side, order.levels, order.real, order.amount)
    settled = replace(
        order,
        status=_shown(order.status, layout.filled, order.amount),
        filled=layout.filled,
        cost=layout.cost,
        fees=layout.fees,
        fills=layout.fills,
        last_seq=seq,
    )
    problem = layout.disagreement or _unaccountable(settled)
    if problem != order.disagreement:
        settled = replace(settled, disagreement=problem)
    client_orders = s.client_orders
    cid = settled.client_order_id
    if cid and client_orders.get(cid) != order_id:
        client_orders = client_orders.set(cid, order_id)
    stored = _state(
        s,
        seq,
        orders=s.orders.set(order_id, settled),
        requests=requests,
        client_orders=client_orders,
    )
    money = _settle(stored, settled)
    if money is not None:
        stored = _state(stored, seq, cash=money[0], pending=money[1])
    if layout.disagreement is not None and layout.disagreement != order.disagreement:
        # (a side still unknown is shown on the order, not recorded: a later report may say)
        reason = f"order {order_id}: {layout.disagreement}"
        stored = _state(
            stored, seq, anomalies=stored.anomalies.set(seq, Anomaly(seq, "fills", reason))
        )
    return stored


def _named(
    s: State, order_id: str, client_order_id: str | None, symbol: str
) -> tuple[Order, Map[str, Order] | None]:
    """The order to update for a venue report: known by id, or the local request it answers
    (taken out of ``requests``), or a new one. A request's local outcome (refused, no answer)
    says nothing of the order the venue now reports: its status comes from the venue.

    A report that ties a client order id to another order than the one it names is
    malformed (duplicate ids): the id of a live order (a venue gives one to one open order at
    a time; a closed order's may be used again), or a request's id for an order the venue
    already named under another one."""
    order = s.orders.get(order_id)
    if client_order_id:
        holder = s.client_orders.get(client_order_id)
        held = s.orders.get(holder) if holder is not None and holder != order_id else None
        if held is not None and held.status not in TERMINAL:
            raise Malformed(
                f"client order id {client_order_id!r} is order {holder}'s (live), "
                f"and a report gives it to order {order_id}"
            )
    request = s.requests.get(client_order_id) if client_order_id else None
    if order is not None:
        if not client_order_id or order.client_order_id == client_order_id:
            return order, None
        if request is None:
            return replace(order, client_order_id=client_order_id), None
        if order.client_order_id is not None:
            raise Malformed(
                f"order {order_id} is {order.client_order_id!r}'s, and a report names it "
                f"as the order requested as {client_order_id!r}"
            )
        # Known by id first (say from a trade), and now linked to the request it answers.
        merged = replace(
            order,
            client_order_id=client_order_id,
            side=order.side or request.side,
            order_type=order.order_type or request.order_type,
            price=order.price if order.price is not None else request.price,
            amount=order.amount if order.amount is not None else request.amount,
        )
        return merged, s.requests.delete(client_order_id)
    if request is not None:
        named = replace(request, order_id=order_id, status=ACKNOWLEDGED, reason=None)
        return named, s.requests.delete(client_order_id)  # type: ignore[arg-type]
    return Order(order_id, client_order_id, symbol, status=ACKNOWLEDGED), None


@handles(OrderRequested, "client_order_id", "side", "order_type", "amount", "price", "asset")
def _order_requested(s: State, e: OrderRequested, seq: int) -> State:
    symbol = _known_symbol(s, e.asset)
    if not s.config.margin and is_contract(symbol):
        raise Malformed(f"{symbol} is a contract market and the strategy trades spot")
    side = _side(e.side)
    amount = _number(e.amount, "amount", positive=True)
    if e.price is not None:
        _number(e.price, "price", positive=True)
    cid = _id(e.client_order_id, "client order id")
    known = s.requests.get(cid)
    if known is None and cid in s.client_orders:
        known = s.orders.get(s.client_orders[cid])
    if known is not None:
        # A retry: it must be the same order (the venue may have filled in its price or
        # rounded its amount since; its market and side never change).
        if (known.symbol, known.side) != (symbol, side):
            raise Malformed(f"client order id {cid!r} is reused for a different order")
        return advance(s, seq)
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


_REQUEST_RANK = {REQUESTED: 0, REJECTED: 1, FAILED: 2, ACKNOWLEDGED: 3}
"""How far a request (not yet named by the venue) is known to have got. A refusal ranks below
an attempt that got no answer (that attempt may have placed the order, whatever was refused
before or after it), which ranks below proof that the order exists (an acknowledgement, or a
retry refused as a duplicate)."""


def _request_outcome(s: State, seq: int, cid: str | None, status: str, reason: str) -> State:
    """A local outcome of a create request for ``cid``. It never touches an order the venue
    has named (a refusal of a retry is not a refusal of the order), and a refusal before or
    after an attempt that got no answer leaves the request unknown (that attempt may have
    placed it)."""
    request = s.requests.get(cid) if cid is not None else None
    if cid is None or request is None:
        return advance(s, seq)
    now = request.status
    if _REQUEST_RANK[status] < _REQUEST_RANK[now] or (status == now and request.reason):
        return advance(s, seq)
    updated = replace(request, status=status, reason=reason or None, last_seq=seq)
    return _state(s, seq, requests=s.requests.set(cid, updated))


@handles(LocalCheckFailed, "client_order_id", "reason")
def _local_check_failed(s: State, e: LocalCheckFailed, seq: int) -> State:
    return _request_outcome(s, seq, _cid(e.client_order_id), REJECTED, e.reason)


@handles(OrderRejected, "client_order_id", "error", "message")
def _order_rejected(s: State, e: OrderRejected, seq: int) -> State:
    reason = f"{e.error} {e.message}".strip()
    status = ACKNOWLEDGED if e.error == DUPLICATE_ORDER else REJECTED
    return _request_outcome(s, seq, _cid(e.client_order_id), status, reason)


@handles(OrderRequestFailed, "client_order_id", "error", "message")
def _order_request_failed(s: State, e: OrderRequestFailed, seq: int) -> State:
    reason = f"{e.error} {e.message}".strip()
    return _request_outcome(s, seq, _cid(e.client_order_id), FAILED, reason)


def _symbol_of(s: State, symbol: str | None, order_id: str | None, cid: str | None) -> str:
    """The symbol a report is about: its own, else the known order's or request's."""
    if symbol is None:
        order = s.orders.get(order_id) if order_id else None
        if order is None and cid:
            named = s.client_orders.get(cid)
            order = s.orders.get(named) if named else s.requests.get(cid)
        symbol = order.symbol if order is not None else None
    return _known_symbol(s, symbol)


@handles(OrderAcknowledged, "client_order_id", "order_id", "asset")
def _order_acknowledged(s: State, e: OrderAcknowledged, seq: int) -> State:
    order_id, cid = _id(e.order_id, "order id"), _cid(e.client_order_id)
    symbol = _symbol_of(s, e.asset, order_id, cid)
    order, requests = _named(s, order_id, cid, symbol)
    if order.symbol != symbol:
        raise Malformed(f"order {order_id} is {order.symbol}, its acknowledgement says {symbol}")
    status = furthest(order.status, ACKNOWLEDGED)
    if requests is None and order is s.orders.get(order_id) and status == order.status:
        return advance(s, seq)  # known already: a repeat, or after the order's own report
    return _store(s, seq, replace(order, status=status), requests)


def _reached(last_trade: int | None, last_update: int | None, status: str, seq: int) -> When:
    """When a report's totals were reached: at its last trade if it dates it; at its last
    update if the order is filled (its last update is its last fill); else at or before its
    last update (a cancel or an amendment may have come after the last fill)."""
    if last_trade is not None:
        return When(last_trade, last_trade, seq)
    if last_update is not None and status == CLOSED:
        return When(last_update, last_update, seq)
    return When(None, last_update, seq)


@handles(
    OrderObserved,
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
    "fees",
    "last_trade_timestamp",
    "last_update_timestamp",
)
def _order_observed(s: State, e: OrderObserved, seq: int) -> State:
    order_id, cid = _id(e.order_id, "order id"), _cid(e.client_order_id)
    side = _side_or_none(e.side)
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
    fee_known = e.fees is not None
    fees = _fees(e.fees) if e.fees is not None else ()
    if e.price is not None:
        _number(e.price, "price")
    order, requests = _named(s, order_id, cid, symbol)
    if order.symbol != symbol:
        raise Malformed(f"order {order_id} was {order.symbol}, now reported as {symbol}")
    if side is not None and order.side is not None and side != order.side:
        raise Malformed(f"order {order_id} is a {order.side}, now reported as a {side}")
    changes: dict[str, Any] = {}
    report = Report(filled, e.status, cost, fee_known, fees, amount, e.price, side, e.order_type)
    best = order.best
    if best != report and (
        best is None
        or filled > best.filled
        or (filled == best.filled and report.rank() > best.rank())
    ):
        changes.update(
            side=side or order.side,
            order_type=e.order_type or order.order_type,
            price=e.price if e.price is not None else order.price,
            amount=amount,
            best=report,
        )
    else:  # not the best report, but it may still say what nothing else has
        if order.side is None and side is not None:
            changes["side"] = side
        if order.order_type is None and e.order_type is not None:
            changes["order_type"] = e.order_type
        if order.price is None and e.price is not None:
            changes["price"] = e.price
    status = furthest(order.status, e.status)
    if status != order.status:
        changes["status"] = status
    if filled > 0:
        level = Level(filled, cost, fee_known, fees)
        when = _reached(e.last_trade_timestamp, e.last_update_timestamp, e.status, seq)
        known = order.levels.get(level)
        narrowed = when if known is None else known.narrowed(when)
        if narrowed != known:
            changes["levels"] = order.levels.set(level, narrowed)
    if not changes and requests is None and order is s.orders.get(order_id):
        return advance(s, seq)  # a repeat of what is known (a polling watcher's view)
    return _store(s, seq, replace(order, **changes), requests)


@handles(
    TradeObserved,
    "trade_id",
    "order_id",
    "client_order_id",
    "asset",
    "side",
    "price",
    "amount",
    "cost",
    "fees",
    "exchange_ts",
)
def _trade_observed(s: State, e: TradeObserved, seq: int) -> State:
    if not e.trade_id:
        raise Malformed("no trade id (a trade without one cannot be told from a repeat)")
    trade_id, order_id = e.trade_id, _id(e.order_id, "order id")
    side = _side_or_none(e.side)
    symbol = _known_symbol(s, e.asset)
    amount = _number(e.amount, "amount", positive=True)
    if e.cost is not None:
        cost = _number(e.cost, "cost")
    elif e.price is not None:
        cost = _mul(_number(e.price, "price"), amount)
    else:
        raise Malformed("no cost and no price")
    order, requests = _named(s, order_id, _cid(e.client_order_id), symbol)
    if order.symbol != symbol:
        raise Malformed(f"order {order_id} is {order.symbol}, its trade says {symbol}")
    ms = e.exchange_ts
    fill = Fill(
        order_id=order_id,
        symbol=symbol,
        side=side,
        amount=amount,
        cost=cost,
        fees=_fees(e.fees or ()),
        trade_id=trade_id,
        emulated=False,
        exchange_ts=ms,
        after_ms=None if ms is None else ms - 1,
        until_ms=ms,
        fee_known=e.fees is not None,
        seq=seq,
    )
    known = order.real.get(trade_id)
    if known is not None:  # a repeat (a REST backfill of a streamed trade, say)
        fill = _same_trade(known, fill)
        if fill == known and requests is None:
            return advance(s, seq)
    return _store(
        s,
        seq,
        replace(
            order,
            real=order.real.set(trade_id, fill),
            side=order.side or fill.side,
            status=furthest(order.status, OPEN),
        ),
        requests,
    )


def _same_trade(a: Fill, b: Fill) -> Fill:
    """One trade reported twice: what either report says of it (a stream's message may leave
    out its side, fee currency or time, which a REST backfill has). The same whichever came
    first; reports that contradict each other are malformed."""
    if (a.amount, a.cost) != (b.amount, b.cost):
        raise Malformed(f"trade {a.trade_id} reported again with other amounts")
    if a.side is not None and b.side is not None and a.side != b.side:
        raise Malformed(f"trade {a.trade_id} reported again on the other side")
    if not b.fee_known or a.fees == b.fees:
        fees, fee_known = a.fees, a.fee_known
    elif not a.fee_known:
        fees, fee_known = b.fees, True
    else:
        fees, fee_known = _same_fees(a, b), True
    times = [t for t in (a.exchange_ts, b.exchange_ts) if t is not None]
    ms = min(times) if times else None
    return replace(
        a,
        side=a.side or b.side,
        fees=fees,
        fee_known=fee_known,
        exchange_ts=ms,
        after_ms=None if ms is None else ms - 1,
        until_ms=ms,
        seq=min(a.seq, b.seq),
    )


def _same_fees(a: Fill, b: Fill) -> Fees:
    """The fees of a trade both reports state: the same amounts, one of them perhaps without
    naming their currency."""
    mine = sorted(a.fees, key=lambda f: (f[1], f[0]))
    theirs = sorted(b.fees, key=lambda f: (f[1], f[0]))
    if len(mine) != len(theirs) or any(
        x != y or (c != d and "" not in (c, d)) for (c, x), (d, y) in zip(mine, theirs, strict=True)
    ):
        raise Malformed(f"trade {a.trade_id} reported again with other fees")
    return fees_of((c or d, x) for (c, x), (d, _) in zip(mine, theirs, strict=True))


@handles(CancelObserved, "order_id", "client_order_id", "status")
def _cancel_observed(s: State, e: CancelObserved, seq: int) -> State:
    cid = _cid(e.client_order_id)
    order_id = e.order_id or (s.client_orders.get(cid) if cid else None)
    if order_id is None or order_id not in s.orders:
        return advance(s, seq)  # the order's own report will follow
    if e.status is not None and e.status not in TERMINAL:
        return advance(s, seq)  # a cancel under way: the order's own reports will tell
    order = s.orders[order_id]
    status = furthest(order.status, e.status or CANCELED)
    if status == order.status:
        return advance(s, seq)
    return _store(s, seq, replace(order, status=status))


# ---------------------------------------------------------------------------------------------
# Positions, prices, configuration, watchers


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


@handles(
    PositionObserved,
    "asset",
    "side",
    "contracts",
    *_POSITION_NUMBERS,
    "margin_mode",
    "hedged",
)
def _position_observed(s: State, e: PositionObserved, seq: int) -> State:
    """A flat report (no side, no contracts) closes the market's positions; in one-way mode
    (not ``hedged``) a report of one side also closes the other (a flip long -> short)."""
    symbol = _known_symbol(s, e.asset)
    for name in _POSITION_NUMBERS:
        value = getattr(e, name)
        if value is not None:
            _finite(value, name)
    held = s.positions
    if not e.side:
        if e.contracts is not None and e.contracts != 0:
            raise Malformed(f"{e.contracts} contracts on no side")
        positions = held.delete((symbol, "long")) if (symbol, "long") in held else held
        if (symbol, "short") in positions:
            positions = positions.delete((symbol, "short"))
        return advance(s, seq) if positions is held else _state(s, seq, positions=positions)
    if e.side not in ("long", "short"):
        raise Malformed(f"side is {e.side!r}, must be 'long' or 'short'")
    contracts = _number(e.contracts, "contracts")
    positions = held
    other = (symbol, "short" if e.side == "long" else "long")
    if e.hedged is not True and other in positions:
        positions = positions.delete(other)
    key = (symbol, e.side)
    if contracts == 0:
        if key in positions:
            positions = positions.delete(key)
        return advance(s, seq) if positions is held else _state(s, seq, positions=positions)
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
    return _state(s, seq, positions=positions.set(key, position))


def _price(s: State, symbol: str | None, price: Decimal | None, seq: int) -> State:
    if symbol is None or price is None or not price.is_finite() or price <= 0:
        return advance(s, seq)
    return State(seq, s.config, s.last_price.set(symbol, price), s.account, s.book, s.health)


@handles(TickerObserved, "asset", "last", "bid", "ask")
def _ticker_observed(s: State, e: TickerObserved, seq: int) -> State:
    """The last price, else the middle of bid and ask; a ticker with neither, or with a
    price that is not a positive number, is malformed."""
    price = e.last
    bid, ask = e.bid, e.ask
    if price is None and bid is not None and ask is not None:
        price = EXACT.divide(EXACT.add(_finite(bid, "bid"), _finite(ask, "ask")), 2)
    if price is None:
        raise Malformed("no price (no last, nor a bid and an ask)")
    _number(price, "price", positive=True)
    return _price(s, e.asset, price, seq)


@handles(OHLCVObserved, "asset", "close")
def _ohlcv_observed(s: State, e: OHLCVObserved, seq: int) -> State:
    return _price(s, e.asset, e.close, seq)


@handles(StrategyStarted, "main_currency", "universe", "margin", "exchange", "strategy")
def _strategy_started(s: State, e: StrategyStarted, seq: int) -> State:
    universe = tuple(e.universe)
    config = Config(e.main_currency, universe, e.margin, e.exchange, e.strategy, True)
    started = _state(s, seq, config=config)
    problems = []
    contracts = contract_symbols(universe)
    if not e.margin and contracts:
        problems.append(
            f"contract markets {', '.join(contracts)} in a spot strategy (margin=False): "
            "their fills move no cash"
        )
    unknown = [symbol for symbol in universe if split_symbol(symbol)[0] is None]
    if unknown:
        problems.append(
            f"{', '.join(map(repr, unknown))} not ccxt symbols (BASE/QUOTE): fills in them "
            "move no cash"
        )
    if problems:
        reason = "; ".join(problems)
        return _state(started, seq, anomalies=s.anomalies.set(seq, Anomaly(seq, e.kind, reason)))
    return started


@handles(StrategyStopped)
def _strategy_stopped(s: State, e: StrategyStopped, seq: int) -> State:
    return _state(s, seq, config=replace(s.config, running=False))


def _watcher(s: State, seq: int, watcher: str, status: str, error: str | None = None) -> State:
    old = s.watchers.get(watcher)
    if old is not None and old.since_seq >= seq:
        return advance(s, seq)  # already folded: idempotent
    errors = old.errors if old else 0
    gaps = old.gaps if old else 0
    last_error = old.last_error if old else None
    if status == "error":
        errors += 1
        last_error = error
    elif status == "reconnected":
        gaps += 1
    health = WatcherHealth(status, seq, errors, gaps, last_error)
    return _state(s, seq, watchers=s.watchers.set(watcher, health))


@handles(WatcherStarted, "watcher")
def _watcher_started(s: State, e: WatcherStarted, seq: int) -> State:
    return _watcher(s, seq, e.watcher, "running")


@handles(WatcherStopped, "watcher")
def _watcher_stopped(s: State, e: WatcherStopped, seq: int) -> State:
    return _watcher(s, seq, e.watcher, "stopped")


@handles(WatcherError, "watcher", "error", "message")
def _watcher_error(s: State, e: WatcherError, seq: int) -> State:
    return _watcher(s, seq, e.watcher, "error", f"{e.error}: {e.message}".strip(": "))


@handles(WatcherReconnected, "watcher")
def _watcher_reconnected(s: State, e: WatcherReconnected, seq: int) -> State:
    return _watcher(s, seq, e.watcher, "reconnected")
