"""The state summary a trader reads after a run: cash per currency, positions, open orders, the
last fills, anomalies, watchers' health, equity at the last prices, and the seq and hash of the
state it describes. A read model of a folded ``State``; the numbers are the state's own
(exact decimals), nothing is recomputed but the equity and the fills' prices.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import attrs

from eventsrc import Fill, State, state_hash
from eventsrc.state import DERIVED, TERMINAL

__all__ = [
    "AnomalyLine",
    "CashLine",
    "FillLine",
    "OrderLine",
    "PositionLine",
    "Summary",
    "Valuation",
    "WatcherLine",
    "all_fills",
    "fill_line",
    "price_in",
    "summarize",
    "valuation",
]


@attrs.frozen
class CashLine:
    currency: str
    free: Decimal
    used: Decimal
    total: Decimal


@attrs.frozen
class PositionLine:
    symbol: str
    side: str
    contracts: Decimal
    entry_price: Decimal | None
    mark_price: Decimal | None
    unrealized_pnl: Decimal | None
    leverage: Decimal | None
    liquidation_price: Decimal | None


@attrs.frozen
class OrderLine:
    """An order that is not finished (open, partly filled, or sent with no answer yet)."""

    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: str | None
    order_type: str | None
    price: Decimal | None
    amount: Decimal | None
    filled: Decimal
    status: str
    last_seq: int


@attrs.frozen
class FillLine:
    """One fill. ``exchange_ts`` (ms): when the venue made it, or for a fill emulated from an
    order's totals the latest time it can have happened; None if the venue never said."""

    seq: int
    exchange_ts: int | None
    symbol: str
    side: str | None
    amount: Decimal
    price: Decimal | None
    cost: Decimal
    fees: tuple[tuple[str, Decimal], ...]
    order_id: str
    trade_id: str | None
    emulated: bool


@attrs.frozen
class AnomalyLine:
    seq: int
    kind: str
    reason: str


@attrs.frozen
class WatcherLine:
    name: str
    status: str
    since_seq: int
    errors: int
    gaps: int
    last_error: str | None


@attrs.frozen
class Valuation:
    """Cash valued in the main currency at the last prices seen, plus the positions'
    unrealized profit as the venue last reported it. ``unvalued``: currencies with cash but
    no price in the main currency (left out of ``equity``)."""

    currency: str | None
    equity: Decimal | None
    unvalued: tuple[str, ...]


@attrs.frozen
class Summary:
    seq: int
    state_hash: str
    strategy: str
    exchange: str
    main_currency: str | None
    margin: bool
    universe: tuple[str, ...]
    running: bool
    cash: tuple[CashLine, ...]
    positions: tuple[PositionLine, ...]
    open_orders: tuple[OrderLine, ...]
    orders_by_status: dict[str, int]
    fills: int
    """How many fills the state holds (``last_fills`` are the newest of them)."""
    last_fills: tuple[FillLine, ...]
    last_price: dict[str, Decimal]
    anomalies: tuple[AnomalyLine, ...]
    watchers: tuple[WatcherLine, ...]
    valuation: Valuation


def price_in(state: State, currency: str, main: str) -> Decimal | None:
    """The last price of one unit of ``currency`` in ``main`` (1 for ``main`` itself), from a
    ``currency/main`` market, or the inverse of a ``main/currency`` one."""
    if currency == main:
        return Decimal(1)
    direct = state.last_price.get(f"{currency}/{main}")
    if direct is not None:
        return direct
    inverse = state.last_price.get(f"{main}/{currency}")
    if inverse:
        return DERIVED.divide(Decimal(1), inverse)
    return None


def valuation(state: State) -> Valuation:
    """What ``state`` is worth in its main currency at its last prices (see Valuation)."""
    main = state.main_currency
    if main is None:
        return Valuation(None, None, tuple(sorted(c for c, v in state.cash.items() if v.total)))
    equity = Decimal(0)
    unvalued = []
    for currency, cash in state.cash.items():
        if not cash.total:
            continue
        price = price_in(state, currency, main)
        if price is None:
            unvalued.append(currency)
        else:
            equity = DERIVED.add(equity, DERIVED.multiply(cash.total, price))
    for position in state.positions.values():
        if position.unrealized_pnl is not None:
            equity = DERIVED.add(equity, position.unrealized_pnl)
    return Valuation(main, equity, tuple(sorted(unvalued)))


def fill_line(fill: Fill) -> FillLine:
    return FillLine(
        seq=fill.seq,
        exchange_ts=fill.exchange_ts if fill.exchange_ts is not None else fill.until_ms,
        symbol=fill.symbol,
        side=fill.side,
        amount=fill.amount,
        price=fill.price,
        cost=fill.cost,
        fees=fill.fees,
        order_id=fill.order_id,
        trade_id=fill.trade_id,
        emulated=fill.emulated,
    )


def all_fills(state: State) -> list[Fill]:
    """Every fill with an amount (real and emulated), oldest first: by when the trace first
    showed it, then by the venue's time."""
    fills = [f for order in state.orders.values() for f in order.fills if f.amount]
    fills.sort(key=lambda f: (f.seq, f.exchange_ts or 0, f.trade_id or ""))
    return fills


def summarize(state: State, fills: int = 10) -> Summary:
    """The summary of ``state``, with its newest ``fills`` fills."""
    config = state.config
    orders = [*state.orders.values(), *state.requests.values()]
    open_orders = sorted(
        (o for o in orders if o.status not in TERMINAL), key=lambda o: (o.last_seq, o.symbol)
    )
    every_fill = all_fills(state)
    return Summary(
        seq=state.seq,
        state_hash=state_hash(state),
        strategy=config.strategy,
        exchange=config.exchange,
        main_currency=config.main_currency,
        margin=config.margin,
        universe=config.universe,
        running=config.running,
        cash=tuple(CashLine(c, v.free, v.used, v.total) for c, v in sorted(state.cash.items())),
        positions=tuple(
            PositionLine(
                p.symbol,
                p.side,
                p.contracts,
                p.entry_price,
                p.mark_price,
                p.unrealized_pnl,
                p.leverage,
                p.liquidation_price,
            )
            for _, p in sorted(state.positions.items())
        ),
        open_orders=tuple(
            OrderLine(
                o.order_id,
                o.client_order_id,
                o.symbol,
                o.side,
                o.order_type,
                o.price,
                o.amount,
                o.filled,
                o.status,
                o.last_seq,
            )
            for o in open_orders
        ),
        orders_by_status=dict(sorted(Counter(o.status for o in orders).items())),
        fills=len(every_fill),
        last_fills=tuple(fill_line(f) for f in every_fill[max(0, len(every_fill) - fills) :]),
        last_price=dict(sorted(state.last_price.items())),
        anomalies=tuple(
            AnomalyLine(seq, a.kind, a.reason) for seq, a in sorted(state.anomalies.items())
        ),
        watchers=tuple(
            WatcherLine(name, w.status, w.since_seq, w.errors, w.gaps, w.last_error)
            for name, w in sorted(state.watchers.items())
        ),
        valuation=valuation(state),
    )
