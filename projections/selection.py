"""Which events of a trace a reader asked for: by kind, asset and source, and from/to a seq or
a time. Chosen from the envelope columns alone (no payload is decoded to choose), and, for a
reader following a live trace, checked on each new event as it arrives.

A time is compared with an event's ``ts`` (the local wall clock when it was recorded, in ns),
the same clock ``replay_from_trace(until=datetime)`` reads; a seq with its seq. Both bounds are
inclusive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from typing import Any

import attrs
import numpy as np

from eventsrc import Event, Trace, UnknownEvent
from eventsrc.clock import datetime_ns

__all__ = ["Bound", "Selection", "events_at", "kind_name", "select"]

Bound = int | dt.datetime
"""A seq (inclusive), or an aware datetime compared with the events' ``ts``."""


def kind_name(event: Event) -> str:
    """The kind a trace records ``event`` under (an unknown kind's own name)."""
    return event.kind_name if isinstance(event, UnknownEvent) else event.kind


@attrs.frozen
class Selection:
    """A filter over a trace's events; ``None`` (the default) lets everything through.

    ``assets`` may hold ``None``: the events of no asset."""

    kinds: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(frozenset)
    )
    assets: frozenset[str | None] | None = attrs.field(
        default=None, converter=attrs.converters.optional(frozenset)
    )
    sources: frozenset[str] | None = attrs.field(
        default=None, converter=attrs.converters.optional(frozenset)
    )
    since: Bound | None = None
    until: Bound | None = None

    @classmethod
    def of_kinds(cls, kinds: Collection[str]) -> Selection:
        """The events of ``kinds`` only."""
        # mypy cannot type attrs' optional(frozenset) converter's argument
        return cls(kinds=frozenset(kinds))  # type: ignore[arg-type]

    @property
    def everything(self) -> bool:
        return (
            self.kinds is None
            and self.assets is None
            and self.sources is None
            and self.since is None
            and self.until is None
        )

    def seqs(self, trace: Trace) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The seqs of the events of ``trace`` this selection lets through, in order. Bounds
        narrow the range first (seq bounds at once, time bounds from the ``ts`` column), and
        the other columns are read over that range only."""
        lo, hi = 0, len(trace)
        for bound, after in ((self.since, True), (self.until, False)):
            if bound is not None and not isinstance(bound, dt.datetime):
                lo, hi = (max(lo, bound), hi) if after else (lo, min(hi, bound + 1))
        mask = np.ones(max(0, hi - lo), dtype=bool)
        times = [(b, a) for b, a in ((self.since, True), (self.until, False)) if b is not None]
        if len(mask) and any(isinstance(b, dt.datetime) for b, _ in times):
            ts = trace.column("ts", lo, hi)
            for bound, after in times:
                if isinstance(bound, dt.datetime):
                    ns = datetime_ns(bound, "since" if after else "until")
                    mask &= ts >= ns if after else ts <= ns
            inside = np.flatnonzero(mask)
            if not len(inside):
                return np.empty(0, dtype=np.int64)
            lo, hi = lo + int(inside[0]), lo + int(inside[-1]) + 1
            mask = mask[inside[0] : inside[-1] + 1]
        for name, names, kinds in (
            ("kind", self.kinds, True),
            ("asset", self.assets, False),
            ("source", self.sources, False),
        ):
            if names is not None and len(mask):
                table = trace.code_table(name)  # type: ignore[arg-type]
                mask &= _in(trace.column(name, lo, hi), _codes(table, names, kinds))
        return (np.flatnonzero(mask) + lo).astype(np.int64)

    def __call__(self, event: Event) -> bool:
        """Whether this selection lets ``event`` (read from a trace) through."""
        if self.kinds is not None and kind_name(event) not in self.kinds:
            return False
        if self.assets is not None and event.asset not in self.assets:
            return False
        if self.sources is not None and event.source not in self.sources:
            return False
        for bound, after in ((self.since, True), (self.until, False)):
            if bound is None:
                continue
            if isinstance(bound, dt.datetime):
                value, limit = event.ts, datetime_ns(bound, "since" if after else "until")
            else:
                value, limit = event.seq, bound
            if value is None or (value < limit if after else value > limit):
                return False
        return True


def _codes(table: list[Any], names: Collection[Any], kinds: bool = False) -> list[int]:
    """The codes of ``names`` in a code table (a kind's every schema version)."""
    if kinds:
        return [code for code, (name, _version) in enumerate(table) if name in names]
    return [code for code, name in enumerate(table) if name in names]


def _in(column: np.ndarray[Any, Any], codes: list[int]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.isin(column, np.asarray(codes, dtype=np.int64))


def events_at(trace: Trace, seqs: np.ndarray[Any, Any]) -> Iterator[Event]:
    """The events at ``seqs`` (ascending), only these payloads decoded, and only the record
    chunks that hold them read (``Trace.records_at``)."""
    decode = trace.decode
    for record in trace.records_at(seqs):
        yield decode(record)


def select(trace: Trace, selection: Selection) -> Iterator[Event]:
    """The events of ``trace`` that ``selection`` lets through, oldest first: chosen from the
    envelope columns (``Selection.seqs``), and only their payloads decoded. The same events,
    in the same order, as ``filter(selection, trace)``, at the cost of the ones returned."""
    if selection.everything:
        return trace.iter()
    return events_at(trace, selection.seqs(trace))
