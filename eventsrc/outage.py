"""An outage of the trace: while the file system refuses the engine's writes (full, read-only,
failing), what the engine holds back, and how it takes the trace back afterwards.

A trace takes no more events after a failed write (a frame written after a failed one would
read as damage), so the engine closes it at once and reopens it (``Trace.reopen``: recovery
sets aside what a write cut short) every few seconds of its clock until the file system takes
writes again. Meanwhile:

- what producers hand in is held in memory, in order: a command's events always (their caller
  waits until they are recorded); watchers' observations (their watcher goes on at once) while
  fewer than ``limit`` events are held. Past that they are dropped and counted per watcher;
  once the trace records again a gap marker (``WatcherReconnected``) per such watcher, and a
  sync with the venue, repair the loss;
- what the failed trace took that may not be durable (its events from ``durable`` on) is read
  back before it is closed (``read_unsure``), so that once it is reopened ``reconcile`` can tell
  the events the engine folded that the disk lost (appended again) from those the engine never
  folded that the disk kept anyway (folded, never appended twice).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import attrs

from eventsrc.errors import TraceError
from eventsrc.events import Event
from eventsrc.trace import Trace

__all__ = [
    "Diverged",
    "Outage",
    "Pending",
    "Reconciled",
    "Unsure",
    "describe",
    "read_unsure",
    "reconcile",
]


class Diverged(TraceError):
    """The reopened trace is not what the failed one left: it must not be written on."""


class Pending(NamedTuple):
    """An event handed to the engine, not recorded yet; ``done`` gets it as recorded."""

    event: Event
    done: asyncio.Future[Event]
    watcher: str | None = None
    """The watcher whose observation it is (handed in by ``Feed.put``): during an outage its
    producer goes on once it is held, and it is dropped (a gap) if too much is held."""
    moved_from: int | None = None
    """An event the engine folded under this seq that the disk lost, to append again."""


@attrs.frozen
class Unsure:
    """What a failed trace took that may not be on disk: its events ``start..length-1``
    (``events`` None if they could not be read back)."""

    start: int
    length: int
    events: tuple[Event, ...] | None


def read_unsure(trace: Trace) -> Unsure:
    """The events of a failed writer that may not be durable (see ``Unsure``)."""
    start, length = trace.durable, len(trace)
    try:
        events: tuple[Event, ...] | None = tuple(trace.iter(start, length))
    except Exception:  # its memory holds them; if even that fails, reconcile says so
        events = None
    return Unsure(start, length, events)


@attrs.frozen
class Reconciled:
    """How a reopened trace stands to the failed one (see ``reconcile``)."""

    landed: tuple[Event, ...]
    """Events the engine handed to the failed trace but never folded (their append failed)
    that the disk kept: the first ones held, recorded now."""
    lost: tuple[Event, ...]
    """Events the engine folded (with their old seqs) that the disk lost: to append again."""
    recovered: tuple[Event, ...]
    """What reopening recorded (TraceRecovered events), after the events the disk kept."""


def reconcile(trace: Trace, unsure: Unsure, folded: int, waiting: Sequence[Event]) -> Reconciled:
    """Compare the reopened ``trace`` with what the failed one took (``unsure``), the engine
    having folded events up to seq ``folded`` and holding ``waiting`` (the first of what it
    holds, in order). The reopened trace must hold the failed one's durable events, then some
    of its unsure ones, then only what reopening recorded (TraceRecovered); Diverged otherwise
    (another writer wrote meanwhile, or an event the disk acknowledged is missing): the engine
    must not write on. Reads only."""
    kept = len(trace) - len(trace.recovery.recorded)
    where = f"trace {trace.path}"
    if kept < unsure.start:
        raise Diverged(
            f"{where} holds {kept} events after reopening, but {unsure.start} were durable "
            "before the write failed"
        )
    if kept > unsure.length:
        raise Diverged(
            f"{where} holds {kept} events after reopening, more than the {unsure.length} "
            "this engine wrote: another writer has written to it meanwhile"
        )
    lost_from = max(kept, unsure.start)
    needed = kept > unsure.start or lost_from <= folded
    if needed and unsure.events is None:
        raise Diverged(
            f"{where}: the events {unsure.start}..{unsure.length - 1} the failed trace took "
            "could not be read back, so what the disk kept of them is unknown"
        )
    events = unsure.events or ()
    for seq in range(unsure.start, kept):
        if trace[seq] != events[seq - unsure.start]:
            raise Diverged(
                f"{where}: event {seq} is not the one this engine wrote: another writer has "
                "written to it meanwhile"
            )
    landed = tuple(trace.iter(folded + 1, kept)) if kept > folded + 1 else ()
    if len(landed) > len(waiting) or any(
        type(a) is not type(b) for a, b in zip(landed, waiting, strict=False)
    ):
        raise Diverged(
            f"{where}: events {folded + 1}..{kept - 1} are not the ones this engine was "
            "writing when the write failed"
        )
    lost = tuple(events[seq - unsure.start] for seq in range(lost_from, folded + 1))
    return Reconciled(landed, lost, tuple(trace.iter(kept)))


@attrs.define(eq=False)
class Outage:
    """The trace is not taking events (see the module docstring)."""

    error: BaseException
    """What the trace raised."""
    path: str
    """The trace's."""
    what: str
    """What the file system said (the errno's text, ``describe``)."""
    code: str
    """The errno's name (``ENOSPC``, ``EROFS``, ...), or the error's class name."""
    since_ns: int
    unsure: Unsure
    held: deque[Pending] = attrs.field(factory=deque)
    dropped: dict[str, tuple[int, int]] = attrs.field(factory=dict)
    """By watcher: when the first of its observations was dropped (clock ns), and how many."""
    repair: bool = False
    """Observations were dropped: a sync with the venue must follow the recovery."""
    refused: int = 0
    """Orders and cancels refused meanwhile."""
    lost: int = 0
    """Events the engine folded that the disk lost, appended again."""
    stuck: str | None = None
    """Why the trace cannot be taken back (reconcile failed): never retried."""
    note: Pending | None = None
    """The EngineError telling of the outage, held since the last attempt to resume."""

    @property
    def reason(self) -> str:
        """Why, for people: the trace's path and what the file system said."""
        return f"the trace {self.path} cannot be written: {self.what}"

    def hold(self, item: Pending, limit: int, now_ns: int) -> bool:
        """Hold ``item`` until the trace records again; False if it is a watcher's observation
        and ``limit`` events are held already (it is dropped, and counted)."""
        if item.watcher is not None and len(self.held) >= limit:
            first, count = self.dropped.get(item.watcher, (now_ns, 0))
            self.dropped[item.watcher] = (first, count + 1)
            self.repair = True
            return False
        self.held.append(item)
        return True

    def dropped_total(self) -> int:
        return sum(count for _, count in self.dropped.values())

    def summary(self, now_ns: int) -> str:
        seconds = max(now_ns - self.since_ns, 0) / 1e9
        held = sum(1 for item in self.held if item is not self.note and item.moved_from is None)
        parts = [
            f"the trace {self.path} could not be written for {seconds:.3g} s ({self.what}, "
            f"{self.code})",
            f"{held} events were held",
        ]
        if self.lost:
            parts.append(f"{self.lost} events the disk lost were appended again (new seqs)")
        if self.dropped:
            parts.append(f"{self.dropped_total()} observations dropped (a sync repairs them)")
        if self.refused:
            parts.append(f"{self.refused} orders and cancels refused")
        return "; ".join(parts)


def describe(exc: BaseException) -> tuple[str, str]:
    """``(code, what)`` of a failed write: the errno's name and text (no payload, no secret:
    the operating system's words), or, with no errno, the error's class name and message."""
    found = next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno), None)
    if found is not None and found.errno is not None:
        return errno.errorcode.get(found.errno, str(found.errno)), os.strerror(found.errno)
    text = " ".join(str(exc).split()) or type(exc).__name__
    for number, name in errno.errorcode.items():  # e.g. the committer's, as text
        if f"[Errno {number}]" in text:
            return name, os.strerror(number)
    return type(exc).__name__, text


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
