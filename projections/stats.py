"""Trace statistics: how many events of each kind, asset and source, the time they span and the
rate, bytes on disk, how much is sealed in the Zarr body and how much still pending in the
write-ahead tail, the recoveries recorded and the integrity problems ``Trace.check`` finds.

Counts come from the envelope columns (no payload is decoded). A column that cannot be read
leaves its counts ``None``: what is wrong with it is among the problems, so statistics of a
damaged trace still say everything that can be said.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from eventsrc import Trace, TraceError, TraceRecovered

__all__ = ["RecoveryLine", "TraceStats", "bytes_on_disk", "trace_stats"]


@attrs.frozen
class RecoveryLine:
    """A TraceRecovered event: bytes a writer found unreadable at the end of a segment and set
    aside (``torn``: a crash mid-write, never acknowledged; else damage)."""

    seq: int
    segment: str
    offset: int
    dropped_bytes: int
    torn: bool
    set_aside: str
    reason: str


@attrs.frozen
class TraceStats:
    path: Path
    events: int
    committed: int
    """Events sealed in the Zarr body."""
    pending: int
    """Events in the write-ahead tail, not sealed yet (durable all the same)."""
    by_kind: dict[str, int] | None
    by_asset: dict[str, int] | None
    """Events per asset; those of no asset are ``without_asset``."""
    without_asset: int | None
    by_source: dict[str, int] | None
    first_ts: int | None
    last_ts: int | None
    bytes_on_disk: int
    recoveries: tuple[RecoveryLine, ...]
    pending_tail: str | None
    """An unreadable end of the last write-ahead segment no writer has set aside yet."""
    problems: tuple[str, ...]

    @property
    def span_seconds(self) -> float | None:
        """Seconds from the first event's ``ts`` to the last's."""
        if self.first_ts is None or self.last_ts is None:
            return None
        return (self.last_ts - self.first_ts) / 1e9

    @property
    def events_per_second(self) -> float | None:
        """Events over the span (None for a span of no time)."""
        span = self.span_seconds
        return self.events / span if span else None

    @property
    def ok(self) -> bool:
        return not self.problems


def bytes_on_disk(root: Path) -> int:
    """The size of every file under ``root`` (a file a live writer removes meanwhile counts
    as nothing)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


def _counts(column: np.ndarray[Any, Any], names: list[Any]) -> dict[Any, int]:
    """Events per name from a column of codes (codes of one name, e.g. a kind's versions,
    added together)."""
    found: dict[Any, int] = {}
    if not len(column):
        return found
    for code, n in enumerate(np.bincount(column.astype(np.int64)).tolist()):
        if n:
            name = names[code] if code < len(names) else f"<code {code}>"
            found[name] = found.get(name, 0) + n
    return dict(sorted(found.items(), key=lambda item: (-item[1], str(item[0]))))


def trace_stats(trace: Trace) -> TraceStats:
    """The statistics of ``trace`` as it was when opened (or last refreshed)."""
    integrity = trace.check()
    problems = list(integrity.problems)
    columns: dict[str, np.ndarray[Any, Any] | None] = {}
    for name in ("kind", "asset", "source", "ts"):
        try:
            columns[name] = trace.column(name)
        except TraceError as exc:
            columns[name] = None
            if not integrity.problems:  # else the check's problems already say why
                problems.append(str(exc))
    kinds = columns["kind"]
    by_kind = None
    if kinds is not None:
        by_kind = _counts(kinds, [name for name, _version in trace.code_table("kind")])
    assets = columns["asset"]
    by_asset = without_asset = None
    if assets is not None:
        counts = _counts(assets, trace.code_table("asset"))
        without_asset = counts.pop(None, 0)
        by_asset = counts
    sources = columns["source"]
    by_source = None if sources is None else _counts(sources, trace.code_table("source"))
    ts = columns["ts"]
    first_ts = last_ts = None
    if ts is not None and len(ts):
        first_ts, last_ts = int(ts.min()), int(ts.max())
    recoveries = tuple(
        RecoveryLine(
            r.seq if r.seq is not None else -1,
            r.segment,
            r.offset,
            r.dropped_bytes,
            r.torn,
            r.set_aside,
            r.reason,
        )
        for r in integrity.recoveries
        if isinstance(r, TraceRecovered)
    )
    tail = integrity.pending_tail
    return TraceStats(
        path=trace.path,
        events=len(trace),
        committed=trace.committed,
        pending=len(trace) - trace.committed,
        by_kind=by_kind,
        by_asset=by_asset,
        without_asset=without_asset,
        by_source=by_source,
        first_ts=first_ts,
        last_ts=last_ts,
        bytes_on_disk=bytes_on_disk(trace.path),
        recoveries=recoveries,
        pending_tail=None
        if tail is None
        else f"{tail.segment} at byte {tail.offset}: {tail.reason}",
        problems=tuple(problems),
    )
