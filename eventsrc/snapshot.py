"""Snapshots: a folded state stored inside its trace, so replay can start there.

A snapshot is a file ``snapshots/<seq, 20 digits>.snap`` in the trace directory: the state
folded up to ``seq`` as MessagePack, with its sha256, the reducer version that folded it, and a
fingerprint of the event at ``seq`` (crc32c of its ``ts``, kind and payload). Snapshots
are a cache, trusted only while they provably describe this trace:

- ``save_snapshot`` makes every event the state covers durable first (``trace.flush()`` on a
  writer), so a crash can never leave a snapshot of events that are gone; a snapshot that
  cannot be written (a full disk) raises the file system's OSError and leaves no part of it;
- ``load_snapshot`` ignores a snapshot written by another reducer version, failing its hash,
  or whose fingerprint does not match the trace's event at its seq (the trace lost those events
  in a crash, say, and has since recorded other events under the same seqs), or past the end.

A reader (mode "r") may save snapshots too: it cannot know what the writer has made durable,
and the fingerprint check is what keeps such a snapshot from outliving the events it covers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import google_crc32c

from eventsrc.codec import (
    SnapshotFile,
    decode_snapshot,
    decode_state,
    encode_snapshot,
    encode_state,
)
from eventsrc.errors import TraceReadOnly
from eventsrc.reducer import REDUCER_VERSION
from eventsrc.state import State
from eventsrc.trace import Trace
from eventsrc.trace.segment import fsync_dir

__all__ = ["load_snapshot", "save_snapshot", "snapshot_seqs"]

log = logging.getLogger("eventsrc.snapshot")
SNAPSHOT_FORMAT = 4


def _directory(trace: Trace) -> Path:
    if trace.sealed_body is not None:
        raise TraceReadOnly(
            f"trace {trace.path} was opened with open_store: its snapshots are not stored"
        )
    return trace.path / "snapshots"


def _fingerprint(trace: Trace, seq: int) -> int:
    for _, ts, kind, payload in trace.records(seq, seq + 1):
        stamped = google_crc32c.value(
            ts.to_bytes(8, "little", signed=True) + kind.to_bytes(2, "little")
        )
        return int(google_crc32c.extend(stamped, payload))
    raise ValueError(f"trace {trace.path} has no event {seq}")


def save_snapshot(trace: Trace, state: State) -> Path:
    """Store ``state`` (folded from ``trace`` up to ``state.seq``) in the trace, atomically,
    after making every event it covers durable; returns the snapshot's path."""
    if not 0 <= state.seq < len(trace):
        raise ValueError(
            f"a snapshot at seq {state.seq} does not fit a trace of {len(trace)} events"
        )
    if trace.mode != "r":
        trace.flush()
    directory = _directory(trace)
    directory.mkdir(exist_ok=True)
    body = encode_state(state)
    doc = SnapshotFile(
        SNAPSHOT_FORMAT,
        REDUCER_VERSION,
        state.seq,
        _fingerprint(trace, state.seq),
        hashlib.sha256(body).hexdigest(),
        body,
    )
    path = directory / f"{state.seq:020d}.snap"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(encode_snapshot(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # (a full disk: what it took of the file, back)
        raise
    fsync_dir(directory)
    return path


def snapshot_seqs(trace: Trace) -> list[int]:
    """The seqs of the snapshots stored in ``trace``, ascending (none in a sealed body opened
    with ``Trace.open_store``: snapshots are not exported)."""
    if trace.sealed_body is not None:
        return []
    try:
        names = os.listdir(_directory(trace))
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".snap") and n[:-5].isdigit())


def load_snapshot(trace: Trace, seq: int) -> State | None:
    """The snapshot at ``seq``, or None if it is missing or not to be trusted (see the module
    docstring): replay then folds the events instead."""
    path = _directory(trace) / f"{seq:020d}.snap"
    try:
        doc = decode_snapshot(path.read_bytes())
    except (OSError, ValueError):
        log.warning("snapshot %s is unreadable; replaying from the events instead", path)
        return None
    if doc.format != SNAPSHOT_FORMAT or doc.reducer != REDUCER_VERSION:
        return None  # another format, or folded by another reducer: not to be trusted
    if doc.seq != seq or hashlib.sha256(doc.state).hexdigest() != doc.sha256:
        log.warning("snapshot %s fails its checksum; replaying from the events instead", path)
        return None
    if seq >= len(trace) or _fingerprint(trace, seq) != doc.event:
        log.warning("snapshot %s describes events this trace no longer holds; ignored", path.name)
        return None
    try:
        state = decode_state(doc.state)
    except ValueError:
        log.warning("snapshot %s is unreadable; replaying from the events instead", path)
        return None
    return state if state.seq == seq else None
