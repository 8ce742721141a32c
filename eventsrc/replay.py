"""Replay: fold a trace into its state, from the nearest snapshot; tail; verify checkpoints.

- ``replay_from_trace(trace, until=None, state=None)`` streams the trace through ``reduce``
  in bounded memory. ``until`` is a seq (inclusive) or a ``datetime`` (events stamped at or
  before it). Without ``state`` it starts from the nearest usable snapshot at or before
  ``until``; with one it continues from ``state.seq + 1``.
- Snapshots (``trace.snapshot(state)``) are files in the trace's ``snapshots/`` directory:
  the state at a seq, unstructured by the converter, with its hash and the reducer version.
  They are a cache: one written by another reducer version, or failing its hash, is ignored.
- ``verify(trace)`` replays from the start and returns the ``state_seq`` of the first
  checkpoint whose recorded hash differs from the replayed state's, or None.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_origin

import cattrs
import msgspec
import numpy as np
from immutables import Map

from eventsrc.events import Checkpoint, Event
from eventsrc.reduce import REDUCER_VERSION, reduce
from eventsrc.state import State, state_hash
from eventsrc.trace.segment import fsync_dir

if TYPE_CHECKING:
    from eventsrc.trace import Trace

__all__ = [
    "checkpoint",
    "fold",
    "load_snapshot",
    "replay_from_trace",
    "snapshot_seqs",
    "trace_tail",
    "verify",
    "write_snapshot",
]

log = logging.getLogger("eventsrc.replay")
SNAPSHOT_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Snapshots: the state (un)structured by one converter


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(Decimal, str)
    converter.register_structure_hook(Decimal, lambda v, _: Decimal(v))

    def is_map(t: Any) -> bool:
        return t is Map or get_origin(t) is Map

    def unstructure_map(value: Map[Any, Any]) -> list[list[Any]]:
        pairs = [[converter.unstructure(k), converter.unstructure(v)] for k, v in value.items()]
        pairs.sort(key=lambda kv: msgspec.msgpack.encode(kv[0]))
        return pairs

    def structure_map(value: Any, t: Any) -> Map[Any, Any]:
        key_type, value_type = get_args(t) or (Any, Any)
        return Map(
            (converter.structure(k, key_type), converter.structure(v, value_type)) for k, v in value
        )

    converter.register_unstructure_hook_func(is_map, unstructure_map)
    converter.register_structure_hook_func(is_map, structure_map)
    return converter


_converter = _make_converter()


def _snapshot_dir(trace: Trace) -> Path:
    return trace.path / "snapshots"


def write_snapshot(trace: Trace, state: State) -> Path:
    """Store ``state`` (folded from ``trace`` up to ``state.seq``) in the trace; atomic."""
    if not 0 <= state.seq < len(trace):
        raise ValueError(
            f"a snapshot at seq {state.seq} does not fit a trace of {len(trace)} events"
        )
    directory = _snapshot_dir(trace)
    directory.mkdir(exist_ok=True)
    doc = {
        "format": SNAPSHOT_FORMAT,
        "reducer": REDUCER_VERSION,
        "seq": state.seq,
        "hash": state_hash(state),
        "state": _converter.unstructure(state),
    }
    path = directory / f"{state.seq:020d}.snap"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(msgspec.msgpack.encode(doc))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
    return path


def snapshot_seqs(trace: Trace) -> list[int]:
    """The seqs of the snapshots stored in ``trace``, ascending."""
    try:
        names = os.listdir(_snapshot_dir(trace))
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".snap") and n[:-5].isdigit())


def load_snapshot(trace: Trace, seq: int) -> State | None:
    """The snapshot at ``seq``, or None if it is missing, of another reducer version, or
    fails its hash (a snapshot is a cache: replay falls back to the events)."""
    path = _snapshot_dir(trace) / f"{seq:020d}.snap"
    try:
        doc = msgspec.msgpack.decode(path.read_bytes())
        if doc.get("format") != SNAPSHOT_FORMAT or doc.get("reducer") != REDUCER_VERSION:
            return None
        state = _converter.structure(doc["state"], State)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        msgspec.DecodeError,
        cattrs.BaseValidationError,
    ):
        log.warning("snapshot %s is unreadable; replaying from the events instead", path)
        return None
    if state.seq != seq or state_hash(state) != doc.get("hash"):
        log.warning("snapshot %s fails its hash; replaying from the events instead", path)
        return None
    return state


# ---------------------------------------------------------------------------------------------
# Replay


def _until_seq(trace: Trace, until: int | dt.datetime | None) -> int:
    """The last seq to fold (-1: none)."""
    last = len(trace) - 1
    if until is None:
        return last
    if isinstance(until, dt.datetime):
        if until.tzinfo is None:
            raise ValueError("until must be an aware datetime (with a timezone)")
        ns = int(until.timestamp() * 1_000_000_000)
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
    for event in trace.iter(state.seq + 1, stop + 1):
        state = reduce(state, event)
    return state


def fold(events: Iterable[Event], state: State | None = None) -> State:
    """Fold events (e.g. a list in a test) from ``state`` (empty by default)."""
    state = State() if state is None else state
    for event in events:
        state = reduce(state, event)
    return state


def checkpoint(state: State, source: str = "") -> Checkpoint:
    """The checkpoint event recording ``state``'s hash (append it right after ``state.seq``)."""
    return Checkpoint(state.seq, state_hash(state), source=source)


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
        if since.tzinfo is None:
            raise ValueError("since must be an aware datetime (with a timezone)")
        ns = int(since.timestamp() * 1_000_000_000)
        return [e for e in events if e.ts is not None and e.ts >= ns]
    return [e for e in events if e.seq is not None and e.seq >= since]


def verify(trace: Trace) -> int | None:
    """Replay ``trace`` from its first event; the ``state_seq`` of the first checkpoint whose
    hash differs from the replayed state's (or that points at no earlier state), or None."""
    kinds = trace.code_table("kind")
    codes = [i for i, (name, _) in enumerate(kinds) if name == Checkpoint.kind]
    if not codes:
        return None
    at = np.flatnonzero(np.isin(trace.column("kind"), codes))
    expected: dict[int, list[tuple[int, str]]] = {}
    for seq in at.tolist():
        event = trace[seq]
        assert isinstance(event, Checkpoint)
        if not 0 <= event.state_seq < seq:
            return event.state_seq
        expected.setdefault(event.state_seq, []).append((seq, event.state_hash))
    state = State()
    first_bad: int | None = None
    for event in trace.iter(0, max(expected) + 1):
        state = reduce(state, event)
        if state.seq in expected:
            actual = state_hash(state)
            if any(h != actual for _, h in expected[state.seq]):
                first_bad = state.seq
                break
    return first_bad
