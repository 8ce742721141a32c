"""Replay: fold a trace into its state, from the nearest snapshot; tail; verify checkpoints.

- ``replay_from_trace(trace, until=None, state=None)`` streams the trace through ``reduce``
  in bounded memory. ``until`` is a seq (inclusive) or a ``datetime`` (events stamped at or
  before it). Without ``state`` it starts from the nearest usable snapshot at or before
  ``until``; with one it continues from ``state.seq + 1``.
- Snapshots (``save_snapshot(trace, state)``, eventsrc.snapshot) are a cache replay starts
  from when one can be trusted.
- ``verify(trace)`` checks the stored data (every chunk, the density of seqs, recoveries), then
  replays from the start and compares every checkpoint; it says how much it checked, what is
  wrong, and the first checkpoint a replay disagrees with and in which parts of the state.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from eventsrc.clock import datetime_ns
from eventsrc.codec import DECODE_ERRORS, Codec, stamp, state_hash, state_parts
from eventsrc.errors import TraceCorrupted, TraceError
from eventsrc.events import Checkpoint, Event, TraceRecovered
from eventsrc.reducer import READS, advance, reduce
from eventsrc.snapshot import load_snapshot, snapshot_seqs
from eventsrc.state import State

if TYPE_CHECKING:
    from eventsrc.trace import Trace

__all__ = [
    "Verification",
    "checkpoint",
    "fold",
    "replay_from_trace",
    "trace_tail",
    "verify",
]

log = logging.getLogger("eventsrc.replay")


# ---------------------------------------------------------------------------------------------
# Replay


def _until_seq(trace: Trace, until: int | dt.datetime | None) -> int:
    """The last seq to fold (-1: none)."""
    last = len(trace) - 1
    if until is None:
        return last
    if isinstance(until, dt.datetime):
        ns = datetime_ns(until, "until")
        later = np.flatnonzero(trace.column("ts") > ns)
        return int(later[0]) - 1 if len(later) else last
    if isinstance(until, bool) or not isinstance(until, int):
        raise TypeError(f"until is a seq (int) or a datetime, not {type(until).__name__}")
    return min(until, last)


def replay_from_trace(
    trace: Trace, until: int | dt.datetime | None = None, state: State | None = None
) -> State:
    """The state folded from ``trace`` up to ``until`` (see the module docstring)."""
    stop = _until_seq(trace, until)
    if state is None:
        state = State()
        for seq in reversed(snapshot_seqs(trace)):
            if seq <= stop:
                loaded = load_snapshot(trace, seq)
                if loaded is not None:
                    state = loaded
                    break
    elif state.seq > stop:
        raise ValueError(f"the given state is at seq {state.seq}, past until={stop}")
    return fold_trace(trace, state, state.seq + 1, stop + 1)


# ---------------------------------------------------------------------------------------------
# The fold: the same reduce, fed the views the codec decodes straight from the stored bytes


def _decoders(trace: Trace, codec: Codec) -> list[tuple[Callable[[Any], Any], bool] | None]:
    """By kind code: how to decode a payload for ``reduce`` and whether the result is a view
    (whose ``seq`` is set) or a full, frozen event (stamped: a kind written at an older schema
    version, upgraded on the way, or unknown here); None for kinds that change nothing but the
    seq."""
    found: list[tuple[Callable[[Any], Any], bool] | None] = []
    for name, version in trace.code_table("kind"):
        info = codec.registry.by_name(name)
        view = codec.view_decoder(name, version, READS)
        if view is not None:
            found.append((view, True))
        elif info is not None and info.version == version:
            found.append(None)  # a kind the reducer does not read
        else:
            found.append((codec.decoder(name, version), False))
    return found


def fold_trace(trace: Trace, state: State, start: int, stop: int) -> State:
    """Fold events ``start..stop-1`` of ``trace`` into ``state`` with ``reduce``, decoding
    straight from the stored records into views (not full events)."""
    decoders = _decoders(trace, Codec(trace.registry))
    for seq, ts, kind, payload in trace.records(start, stop):
        decoder = decoders[kind]
        if decoder is None:
            state = advance(state, seq)
            continue
        decode, is_view = decoder
        try:
            if is_view:
                view = decode(payload)
                view.seq = seq
            else:
                view = stamp(decode(payload), seq, ts)
        except DECODE_ERRORS as exc:
            raise TraceCorrupted(
                f"trace {trace.path}: event {seq} cannot be decoded ({exc})"
            ) from None
        state = reduce(state, view)
    return state


def fold(events: Iterable[Event], state: State | None = None) -> State:
    """Fold events (e.g. a list in a test) from ``state`` (empty by default)."""
    state = State() if state is None else state
    for event in events:
        state = reduce(state, event)
    return state


def checkpoint(state: State, source: str = "") -> Checkpoint:
    """The checkpoint event recording ``state``'s hash and its parts' (append it right after
    ``state.seq``)."""
    return Checkpoint(state.seq, state_hash(state), state_parts(state), source=source)


def trace_tail(
    trace: Trace,
    n: int = 10,
    kinds: Iterable[str | type[Event]] | None = None,
    asset: str | None = None,
    since: int | dt.datetime | None = None,
) -> list[Event]:
    """The last ``n`` events matching ``kinds`` and ``asset``, and at or after ``since`` (a
    seq, or an aware datetime compared with the events' ``ts``)."""
    events = trace.tail(n, kinds=kinds, asset=asset)
    if since is None:
        return events
    if isinstance(since, dt.datetime):
        ns = datetime_ns(since, "since")
        return [e for e in events if e.ts is not None and e.ts >= ns]
    return [e for e in events if e.seq is not None and e.seq >= since]


@attrs.frozen
class Verification:
    """What ``verify`` found: the stored data's integrity (every sealed chunk, the density of
    seqs, the write-ahead segments, the recoveries recorded) and every checkpoint against a
    replay of the events before it."""

    chunks_checked: int
    seqs_checked: int
    segments_scanned: int
    checkpoints_checked: int
    recoveries: int
    """Unreadable write-ahead tails a writer set aside and recorded (TraceRecovered)."""
    problems: tuple[str, ...] = ()
    """What is wrong with the stored data: damaged chunks, missing seqs, set-aside bytes that
    may have held acknowledged events, events that cannot be decoded."""
    diverged_at: int | None = None
    """The ``state_seq`` of the first checkpoint a replay disagrees with (or that points at no
    earlier event), if any; later checkpoints are not compared (they follow from it)."""
    differs: tuple[str, ...] = ()
    """The parts of the state that differ there (cash, orders, ...), where the checkpoint
    recorded its parts."""

    @property
    def ok(self) -> bool:
        """Whether the data is sound and every checkpoint agrees with a replay."""
        return not self.problems and self.diverged_at is None


def verify(trace: Trace) -> Verification:
    """Check ``trace``: read every sealed chunk and write-ahead segment (``Trace.check``),
    then replay it from its first event and compare each checkpoint's hash with the replayed
    state's. Reports what it finds (``Verification``), raising only if the trace cannot be
    read at all."""
    integrity = trace.check()
    problems = [
        *integrity.problems,
        *(
            f"event {r.seq}: {r.dropped_bytes} bytes of {r.segment} failed their checksum and "
            f"were set aside in {r.set_aside}; they may have held acknowledged events"
            for r in integrity.recoveries
            if isinstance(r, TraceRecovered) and not r.torn
        ),
    ]
    found = Verification(
        integrity.chunks_checked,
        integrity.seqs_checked,
        integrity.segments_scanned,
        0,
        len(integrity.recoveries),
        tuple(problems),
    )
    kinds = trace.code_table("kind")
    codes = [i for i, (name, _) in enumerate(kinds) if name == Checkpoint.kind]
    if not codes:
        return found
    checkpoints: dict[int, list[Checkpoint]] = {}
    try:
        for seq in np.flatnonzero(np.isin(trace.column("kind"), codes)).tolist():
            event = trace[seq]
            if not isinstance(event, Checkpoint):  # an older or unknown checkpoint schema
                continue
            if not 0 <= event.state_seq < seq:
                return attrs.evolve(found, diverged_at=event.state_seq, checkpoints_checked=1)
            checkpoints.setdefault(event.state_seq, []).append(event)
        state = State()
        checked = 0
        for state_seq in sorted(checkpoints):
            state = fold_trace(trace, state, state.seq + 1, state_seq + 1)
            actual = state_hash(state)
            for recorded in checkpoints[state_seq]:
                checked += 1
                if recorded.state_hash != actual:
                    parts = state_parts(state)
                    differs = tuple(
                        name for name, digest in recorded.parts.items() if parts.get(name) != digest
                    )
                    return attrs.evolve(
                        found,
                        checkpoints_checked=checked,
                        diverged_at=state_seq,
                        differs=differs,
                    )
    except TraceError as exc:
        return attrs.evolve(found, problems=(*found.problems, f"the replay stopped: {exc}"))
    return attrs.evolve(found, checkpoints_checked=checked)
