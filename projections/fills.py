"""The fills table: every execution of the strategy's orders, real (the venue's trades) or
emulated from an order's reported totals, one row each, with when the trace first showed it.

Folded with the same ``reduce`` replay uses, but only over the events that can change an
order (chosen from the envelope's kind column; tickers and balances, most of a trace, are
never decoded), so the fills are exactly a full replay's (a test holds it to that).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import numpy as np

from eventsrc import State, Trace, reduce
from projections.frames import Schema, Table, table_of
from projections.selection import Selection, select
from projections.summary import all_fills

__all__ = ["FILLS", "ORDER_KINDS", "FillRow", "fill_rows", "fills_table", "order_state"]

ORDER_KINDS = frozenset(
    {
        "strategy_started",
        "order_requested",
        "local_check_failed",
        "order_acknowledged",
        "order_rejected",
        "order_request_failed",
        "order_observed",
        "trade_observed",
        "cancel_requested",
        "cancel_observed",
        "cancel_failed",
    }
)
"""The kinds whose events can change an order (what the fills and lifecycles fold)."""


@attrs.frozen
class FillRow:
    seq: int
    """The event that first showed the fill."""
    ts: int
    """That event's ``ts`` (ns): when the trace first showed the fill."""
    exchange_ts: int | None
    """When the venue made it (ms); for an emulated fill, the latest time it can have
    happened; None if the venue never said."""
    asset: str
    side: str | None
    amount: Decimal
    price: Decimal | None
    cost: Decimal
    fee: Decimal | None
    """The fee in ``fee_currency``; None (both) when the fill paid fees in several
    currencies (all of them are in ``fees``) or none was known."""
    fee_currency: str | None
    fees: tuple[tuple[str, Decimal], ...]
    emulated: bool
    order_id: str
    trade_id: str | None


FILLS: Schema = {
    "seq": "int",
    "ts": "ns",
    "exchange_ts": "ms",
    "asset": "str",
    "side": "str",
    "amount": "money",
    "price": "money",
    "cost": "money",
    "fee": "money",
    "fee_currency": "str",
    "emulated": "bool",
    "order_id": "str",
    "trade_id": "str",
}


def order_state(trace: Trace) -> State:
    """The state of ``trace``'s orders: the fold of its order events only (ORDER_KINDS)."""
    state = State()
    for event in select(trace, Selection.of_kinds(ORDER_KINDS)):
        state = reduce(state, event)
    return state


def fill_rows(trace: Trace, state: State | None = None) -> list[FillRow]:
    """Every fill with an amount, oldest first (by the event that showed it). ``state``: the
    trace's state if already folded (else only the order events are folded)."""
    if state is None:
        state = order_state(trace)
    fills = all_fills(state)
    times: np.ndarray[Any, Any] = trace.column("ts") if fills else np.zeros(0, np.int64)
    rows = []
    for f in fills:
        fee: Decimal | None = None
        currency: str | None = None
        if len(f.fees) == 1:
            currency, fee = f.fees[0]
        elif not f.fees and f.fee_known:
            fee = Decimal(0)
        rows.append(
            FillRow(
                seq=f.seq,
                ts=int(times[f.seq]),
                exchange_ts=f.exchange_ts if f.exchange_ts is not None else f.until_ms,
                asset=f.symbol,
                side=f.side,
                amount=f.amount,
                price=f.price,
                cost=f.cost,
                fee=fee,
                fee_currency=currency or None,
                fees=f.fees,
                emulated=f.emulated,
                order_id=f.order_id,
                trade_id=f.trade_id,
            )
        )
    return rows


def fills_table(trace: Trace, state: State | None = None) -> Table:
    """The fills as a Table (export it with ``projections.frames``)."""
    return table_of(fill_rows(trace, state), FILLS)
