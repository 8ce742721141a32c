"""Per-watcher health and the anomalies of a trace, with their reasons.

A watcher's updates are the events whose ``source`` is the watcher's name (besides its own
watcher_* events); they are counted from the envelope columns alone, no payload decoded. Its
starts, stops, errors and reconnects come from its watcher_* events (the only payloads read):
a reconnect is a gap marker, and the gap lasts from its ``gap_start_ts`` (the last time the
stream was known good) to the reconnect. A stall is a silence between two consecutive updates
(or from a start to the first update) longer than ``stall_ns``.

Anomalies are the reducer's own (recorded in state, never raised): folded from the whole trace,
each with the event that caused it and why.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from eventsrc import (
    State,
    Trace,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    WatcherStopped,
    replay_from_trace,
)
from projections.frames import Schema, Table, table_of
from projections.selection import Selection, select

__all__ = [
    "ANOMALIES",
    "STALL_NS",
    "WATCHERS",
    "AnomalyRow",
    "WatcherRow",
    "anomalies",
    "anomalies_table",
    "watcher_health",
    "watchers_table",
]

STALL_NS = 30_000_000_000
"""A silence longer than this (30 s) between a watcher's updates is a stall."""
WATCHER_KINDS = frozenset(
    {"watcher_started", "watcher_stopped", "watcher_error", "watcher_reconnected"}
)


@attrs.frozen
class WatcherRow:
    watcher: str
    updates: int
    starts: int
    stops: int
    errors: int
    reconnects: int
    """Gaps: every reconnect marks updates the stream may have missed."""
    gap_ns: int
    """The gaps' total length where their start is known (ns)."""
    stalls: int
    longest_silence_ns: int | None
    first_ts: int | None
    last_ts: int | None
    last_error: str | None
    status: str
    """"running", "stopped", "error" or "reconnected": its last watcher event."""


WATCHERS: Schema = {
    "watcher": "str",
    "updates": "int",
    "starts": "int",
    "stops": "int",
    "errors": "int",
    "reconnects": "int",
    "gap_ns": "int",
    "stalls": "int",
    "longest_silence_ns": "int?",
    "first_ts": "ns",
    "last_ts": "ns",
    "last_error": "str",
    "status": "str",
}


@attrs.define
class _Watcher:
    starts: int = 0
    stops: int = 0
    errors: int = 0
    reconnects: int = 0
    gap_ns: int = 0
    last_error: str | None = None
    status: str = "running"
    start_ts: list[int] = attrs.field(factory=list)


def watcher_health(trace: Trace, stall_ns: int = STALL_NS) -> list[WatcherRow]:
    """One row per watcher (by name) that has watcher events in ``trace``."""
    found: dict[str, _Watcher] = {}
    for event in select(trace, Selection.of_kinds(WATCHER_KINDS)):
        assert isinstance(event, (WatcherStarted, WatcherStopped, WatcherError, WatcherReconnected))
        w = found.setdefault(event.watcher, _Watcher())
        ts = event.ts or 0
        if isinstance(event, WatcherStarted):
            w.starts += 1
            w.status = "running"
            w.start_ts.append(ts)
        elif isinstance(event, WatcherStopped):
            w.stops += 1
            w.status = "stopped"
        elif isinstance(event, WatcherError):
            w.errors += 1
            w.status = "error"
            w.last_error = f"{event.error}: {event.message}".strip(": ")
        else:
            w.reconnects += 1
            w.status = "reconnected"
            if event.gap_start_ts is not None:
                w.gap_ns += max(0, ts - event.gap_start_ts)
    if not found:
        return []
    sources: list[Any] = trace.code_table("source")
    kinds = trace.code_table("kind")
    own = np.asarray([c for c, (name, _) in enumerate(kinds) if name in WATCHER_KINDS], np.int64)
    source_column = trace.column("source")
    updates_mask = ~np.isin(trace.column("kind"), own)
    ts_column = trace.column("ts")
    rows = []
    for name, w in sorted(found.items()):
        code = sources.index(name) if name in sources else -1
        times = ts_column[(source_column == code) & updates_mask]
        # silences: between updates, and from each start to the first update after it
        marks = np.sort(np.concatenate([times, np.asarray(w.start_ts, np.int64)]))
        silences = np.diff(marks) if len(marks) > 1 else np.zeros(0, np.int64)
        rows.append(
            WatcherRow(
                watcher=name,
                updates=len(times),
                starts=w.starts,
                stops=w.stops,
                errors=w.errors,
                reconnects=w.reconnects,
                gap_ns=w.gap_ns,
                stalls=int((silences > stall_ns).sum()),
                longest_silence_ns=int(silences.max()) if len(silences) else None,
                first_ts=int(times[0]) if len(times) else None,
                last_ts=int(times[-1]) if len(times) else None,
                last_error=w.last_error,
                status=w.status,
            )
        )
    return rows


@attrs.frozen
class AnomalyRow:
    seq: int
    ts: int
    event_kind: str
    asset: str | None
    source: str
    anomaly: str
    reason: str


ANOMALIES: Schema = {
    "seq": "int",
    "ts": "ns",
    "event_kind": "str",
    "asset": "str",
    "source": "str",
    "anomaly": "str",
    "reason": "str",
}


def anomalies(trace: Trace, state: State | None = None) -> list[AnomalyRow]:
    """Every anomaly the fold of ``trace`` recorded, oldest first, with the event it came
    from (``state``: the trace's final state, if already folded)."""
    if state is None:
        state = replay_from_trace(trace)
    if not state.anomalies:
        return []
    columns = {name: trace.column(name) for name in ("ts", "kind", "asset", "source")}
    kinds, assets = trace.code_table("kind"), trace.code_table("asset")
    sources = trace.code_table("source")
    rows = []
    for seq, anomaly in sorted(state.anomalies.items()):
        inside = 0 <= seq < len(trace)
        rows.append(
            AnomalyRow(
                seq=seq,
                ts=int(columns["ts"][seq]) if inside else 0,
                event_kind=kinds[int(columns["kind"][seq])][0] if inside else "",
                asset=assets[int(columns["asset"][seq])] if inside else None,
                source=sources[int(columns["source"][seq])] if inside else "",
                anomaly=anomaly.kind,
                reason=anomaly.reason,
            )
        )
    return rows


def watchers_table(rows: list[WatcherRow]) -> Table:
    return table_of(rows, WATCHERS)


def anomalies_table(rows: list[AnomalyRow]) -> Table:
    return table_of(rows, ANOMALIES)
