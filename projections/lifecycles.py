"""Order lifecycles: for every order, when it was requested, acknowledged, first filled and
finished (closed, canceled, expired, rejected or failed), and how long each step took.

Each step's time is the ``ts`` (local clock, ns) of the first event that showed it: the
request itself; the venue's acknowledgement; the first trade or report with a filled amount;
the first report of a final status (or the rejection, or the failure of the request). The
venue's own time of the acknowledgement (``exchange_ts``, ms) is kept beside it. A step's
latency is the time from the step before it that the order reached (a fill's from the
acknowledgement, or from the request when no acknowledgement was recorded), in ns; None where
a step was not reached.

Events are linked by client order id (the request's, which the venue echoes) and by the
venue's order id once an event names both. Only the order events are decoded (chosen from the
kind column). An order seen only through the venue (no request in the trace, e.g. placed
before the run) still gets a lifecycle, from its first report.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from decimal import Decimal

import attrs

from eventsrc import (
    CancelObserved,
    Event,
    OrderAcknowledged,
    OrderObserved,
    OrderRejected,
    OrderRequested,
    OrderRequestFailed,
    Trace,
    TradeObserved,
)
from eventsrc.state import STATUS_RANK, TERMINAL
from projections.fills import ORDER_KINDS
from projections.frames import Schema, Table, table_of
from projections.selection import Selection, select

__all__ = [
    "LIFECYCLES",
    "STEPS",
    "LatencyStats",
    "Lifecycle",
    "latency_stats",
    "lifecycles",
    "lifecycles_table",
]

STEPS = ("acknowledge", "first_fill", "finish", "total")
"""The latencies a lifecycle has (``<step>_ns``)."""


@attrs.frozen
class Lifecycle:
    client_order_id: str | None
    order_id: str | None
    asset: str | None
    side: str | None
    status: str
    """The furthest status the order reached ("requested" if nothing answered)."""
    requested_seq: int | None
    requested_ts: int | None
    acknowledged_ts: int | None
    acknowledged_exchange_ts: int | None
    first_fill_ts: int | None
    finished_ts: int | None
    reason: str | None
    """Why a request was rejected or failed, as the venue or the engine said."""

    def _since(self, end: int | None, *starts: int | None) -> int | None:
        if end is None:
            return None
        start = next((s for s in starts if s is not None), None)
        return None if start is None else end - start

    @property
    def acknowledge_ns(self) -> int | None:
        return self._since(self.acknowledged_ts, self.requested_ts)

    @property
    def first_fill_ns(self) -> int | None:
        return self._since(self.first_fill_ts, self.acknowledged_ts, self.requested_ts)

    @property
    def finish_ns(self) -> int | None:
        return self._since(
            self.finished_ts, self.first_fill_ts, self.acknowledged_ts, self.requested_ts
        )

    @property
    def total_ns(self) -> int | None:
        return self._since(self.finished_ts, self.requested_ts)


LIFECYCLES: Schema = {
    "client_order_id": "str",
    "order_id": "str",
    "asset": "str",
    "side": "str",
    "status": "str",
    "requested_ts": "ns",
    "acknowledged_ts": "ns",
    "acknowledged_exchange_ts": "ms",
    "first_fill_ts": "ns",
    "finished_ts": "ns",
    "acknowledge_ns": "int?",
    "first_fill_ns": "int?",
    "finish_ns": "int?",
    "total_ns": "int?",
    "reason": "str",
}


@attrs.define
class _Open:
    client_order_id: str | None = None
    order_id: str | None = None
    asset: str | None = None
    side: str | None = None
    status: str = "requested"
    requested_seq: int | None = None
    requested_ts: int | None = None
    acknowledged_ts: int | None = None
    acknowledged_exchange_ts: int | None = None
    first_fill_ts: int | None = None
    finished_ts: int | None = None
    reason: str | None = None

    def reach(self, status: str | None, ts: int | None) -> None:
        if status is None or status not in STATUS_RANK:
            return
        if STATUS_RANK[status] > STATUS_RANK[self.status]:
            self.status = status
        if status in TERMINAL and self.finished_ts is None:
            self.finished_ts = ts

    def filled(self, amount: Decimal | None, ts: int | None) -> None:
        if amount and self.first_fill_ts is None:
            self.first_fill_ts = ts


def _fold(events: Iterable[Event]) -> list[_Open]:
    found: list[_Open] = []
    by_client: dict[str, _Open] = {}
    by_order: dict[str, _Open] = {}

    def of(client_order_id: str | None, order_id: str | None, event: Event) -> _Open:
        life = by_client.get(client_order_id) if client_order_id else None
        if life is None and order_id:
            life = by_order.get(order_id)
        if life is None:
            life = _Open(client_order_id=client_order_id, asset=event.asset)
            found.append(life)
        if client_order_id and life.client_order_id is None:
            life.client_order_id = client_order_id
        if client_order_id:
            by_client.setdefault(client_order_id, life)
        if order_id:
            life.order_id = life.order_id or order_id
            by_order.setdefault(order_id, life)
        return life

    for event in events:
        ts = event.ts
        if isinstance(event, OrderRequested):
            life = of(event.client_order_id, None, event)
            life.requested_seq, life.requested_ts = event.seq, ts
            life.side = event.side
        elif isinstance(event, OrderAcknowledged):
            life = of(event.client_order_id, event.order_id, event)
            if life.acknowledged_ts is None:
                life.acknowledged_ts, life.acknowledged_exchange_ts = ts, event.exchange_ts
            life.reach("acknowledged", ts)
        elif isinstance(event, OrderObserved):
            life = of(event.client_order_id, event.order_id, event)
            life.side = life.side or event.side
            life.filled(event.filled, ts)
            life.reach(event.status, ts)
        elif isinstance(event, TradeObserved):
            life = of(event.client_order_id, event.order_id, event)
            life.side = life.side or event.side
            life.filled(event.amount, ts)
        elif isinstance(event, CancelObserved):
            life = of(event.client_order_id, event.order_id, event)
            life.reach(event.status or "canceled", ts)
        elif isinstance(event, (OrderRejected, OrderRequestFailed)):
            life = of(event.client_order_id, None, event)
            life.reason = f"{event.error}: {event.message}".strip(": ")
            life.reach("rejected" if isinstance(event, OrderRejected) else "failed", ts)
    return found


def lifecycles(trace: Trace) -> list[Lifecycle]:
    """Every order's lifecycle, in the order the trace first showed each."""
    events = select(trace, Selection.of_kinds(ORDER_KINDS))
    return [Lifecycle(**attrs.asdict(life)) for life in _fold(events)]


def lifecycles_table(found: Iterable[Lifecycle]) -> Table:
    """Lifecycles (with their latencies) as a Table."""
    return table_of(found, LIFECYCLES)


@attrs.frozen
class LatencyStats:
    """One step's latencies over the orders that reached it (ns)."""

    step: str
    count: int
    min: int | None
    median: float | None
    p90: float | None
    p99: float | None
    max: int | None


def _quantile(values: list[int], q: float) -> float:
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def latency_stats(found: Iterable[Lifecycle]) -> list[LatencyStats]:
    """Count, min, median, 90th and 99th percentile and max of each step (STEPS)."""
    lives = list(found)
    out = []
    for step in STEPS:
        values = sorted(v for life in lives if (v := getattr(life, f"{step}_ns")) is not None)
        if not values:
            out.append(LatencyStats(step, 0, None, None, None, None, None))
            continue
        out.append(
            LatencyStats(
                step,
                len(values),
                values[0],
                float(statistics.median(values)),
                _quantile(values, 0.9),
                _quantile(values, 0.99),
                values[-1],
            )
        )
    return out
