"""The equity curve and the price history of a trace, folded event by event with the same
``reduce`` replay uses.

Equity at an event is the state's cash valued in its main currency at the last prices seen so
far, plus the positions' unrealized profit as last reported (``projections.summary.valuation``):
a point is recorded at every event that changes cash, positions or a price. Prices are the
state's ``last_price`` per asset, a point at every change. Cash is the state's total of each
currency, a point per currency at every change of it. Times are the events' ``ts`` (when
they were recorded), so equity, prices and fills share one axis.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from eventsrc import State, Trace, reduce
from projections.summary import FillLine, all_fills, fill_line, valuation

__all__ = ["CashPoint", "EquityPoint", "History", "PricePoint", "TimedFill", "history"]


@attrs.frozen
class EquityPoint:
    seq: int
    ts: int
    equity: Decimal
    unvalued: tuple[str, ...]
    """Currencies with cash but no price yet, left out of ``equity``."""


@attrs.frozen
class CashPoint:
    seq: int
    ts: int
    currency: str
    total: Decimal
    """The currency's total after the event (exact; a currency that disappears is 0)."""


@attrs.frozen
class PricePoint:
    seq: int
    ts: int
    symbol: str
    price: Decimal


@attrs.frozen
class TimedFill:
    ts: int
    """When the trace first showed the fill (its event's ``ts``)."""
    fill: FillLine


@attrs.frozen
class History:
    main_currency: str | None
    equity: tuple[EquityPoint, ...]
    prices: tuple[PricePoint, ...]
    fills: tuple[TimedFill, ...]
    state: State
    """The state after the last event (what ``replay_from_trace`` gives)."""
    cash: tuple[CashPoint, ...] = ()


def history(trace: Trace) -> History:
    """Fold ``trace`` from its first event, recording equity and prices as they change."""
    state = State()
    equity: list[EquityPoint] = []
    prices: list[PricePoint] = []
    cash: list[CashPoint] = []
    for event in trace:
        before = state
        state = reduce(state, event)
        seq, ts = state.seq, event.ts if event.ts is not None else 0
        if state.last_price is not before.last_price:
            for symbol, price in state.last_price.items():
                if before.last_price.get(symbol) != price:
                    prices.append(PricePoint(seq, ts, symbol, price))
        if state.cash is not before.cash:
            for currency in sorted({*state.cash.keys(), *before.cash.keys()}):
                now, then = state.cash.get(currency), before.cash.get(currency)
                total = now.total if now is not None else Decimal(0)
                if then is None or then.total != total:
                    cash.append(CashPoint(seq, ts, currency, total))
        if (
            state.account is not before.account or state.last_price is not before.last_price
        ) and state.main_currency is not None:
            value = valuation(state)
            if value.equity is not None and (
                not equity
                or equity[-1].equity != value.equity
                or equity[-1].unvalued != value.unvalued
            ):
                equity.append(EquityPoint(seq, ts, value.equity, value.unvalued))
    times = trace.column("ts") if len(trace) else None
    fills = tuple(
        TimedFill(int(times[f.seq]) if times is not None else 0, fill_line(f))
        for f in all_fills(state)
        if 0 <= f.seq < len(trace)
    )
    return History(state.main_currency, tuple(equity), tuple(prices), fills, state, tuple(cash))
