"""Opening a trace: what its write-ahead segments hold beyond the sealed body, and, for a
writer, the repair of what a crash left behind. Start-up and crash recovery are one path.

Invariants the segments keep, so that a lost segment is always detectable:

- the segment starting at the committed length exists once the trace is created (``create``
  makes segment 0; rotation creates the next segment before the frame that completes the
  previous one is written, so before that unit reaches the committer, and the committer checks
  it exists before recording the unit as sealed);
- the unsealed segments follow each other by one unit, and a complete one is never the last.

A missing segment raises TraceCorrupted naming it, for readers and writers alike: otherwise a
writer would reuse the seqs of the events it held. Damage anywhere but at the end raises too.
The end of the last segment may be unreadable: *torn* (the file ends inside a frame: a crash
mid-write, never acknowledged) or *damaged* (the frame is whole but fails its checksum: it may
hold acknowledged events). Either way nothing is destroyed: a reader reports it in
``trace.recovery`` and the log and leaves it; a writer copies the bytes to
``recovered/<segment>.<offset>.tail`` (fsynced) before cutting them off, and the trace records
a TraceRecovered event saying so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs

from eventsrc.errors import TraceCorrupted
from eventsrc.trace.files import fsync_dir
from eventsrc.trace.record import written_seq
from eventsrc.trace.segment import SegmentScan, list_segments, scan_segment, segment_name
from eventsrc.trace.tables import CodeTables

__all__ = [
    "RECOVERED",
    "Recovery",
    "Tail",
    "Unsealed",
    "drop_sealed_segments",
    "read_unsealed",
    "set_aside",
    "survey",
    "wal_state",
]

log = logging.getLogger("eventsrc.trace")

RECOVERED = "recovered"
"""The directory inside a trace where a writer keeps the bytes it cut off a segment."""


@attrs.frozen
class Tail:
    """An unreadable end of the last write-ahead segment."""

    segment: str
    """The segment's file name (in ``wal/``)."""
    offset: int
    """Where the unreadable bytes begin."""
    size: int
    """How many bytes, to the end of the file."""
    torn: bool
    """True: the file ends inside a frame (a write cut short, never acknowledged). False: the
    frame is whole but fails its checks, so it may hold acknowledged events."""
    reason: str


@attrs.define
class Recovery:
    """What opening the trace found and (writers only) repaired."""

    dropped_frames: int = 0
    """Torn or damaged frames cut off the end of the write-ahead segment (set aside first)."""
    dropped_bytes: int = 0
    resealed_units: int = 0
    """Complete units found only in the write-ahead segment and handed to the committer again."""
    messages: list[str] = attrs.field(factory=list)
    tails: list[Tail] = attrs.field(factory=list)
    """Unreadable ends of the last segment: cut off and set aside by a writer; for a reader,
    still there (a writer may be in the middle of writing them, or a crash left them)."""
    set_aside: list[str] = attrs.field(factory=list)
    """Where a writer kept the bytes it cut off, relative to the trace directory."""
    recorded: list[int] = attrs.field(factory=list)
    """The seqs of the TraceRecovered events that record the repairs."""


@attrs.define
class Unsealed:
    """The unsealed part of a trace as its segments hold it."""

    scans: list[SegmentScan]
    """The segments scanned, in order (a segment that failed to scan is left out)."""
    records: list[bytes]
    """The records of events ``committed..``, dense, in order (length-prefixed)."""
    tail: SegmentScan | None
    """The segment whose end is unreadable, if one is."""
    problems: list[str] = attrs.field(factory=list)
    """What is wrong, in the order found (empty: nothing)."""
    files: int = 0
    """How many segment files were read (including any that failed to scan)."""


def _missing(root: Path, start: int, detail: str) -> str:
    return (
        f"trace {root}: the write-ahead segment for events from {start} is missing "
        f"(wal/{segment_name(start)}: {detail}); the events it held may be lost, and appending "
        "would reuse their seqs"
    )


def survey(root: Path, committed: int, unit: int, tables: CodeTables) -> Unsealed:
    """Scan the segments not yet wholly in the body, learn their code definitions into
    ``tables``, and list every problem found (a missing segment, damage before the end,
    events missing, inconsistent codes) without stopping at the first."""
    problems: list[str] = []
    scans: list[SegmentScan] = []
    files = 0
    expected = committed
    for start, path in list_segments(root / "wal"):
        if start + unit <= committed:
            continue  # every event in it is in the body
        while expected < start:
            problems.append(_missing(root, expected, f"found {path.name} next"))
            expected += unit
        files += 1
        try:
            scans.append(scan_segment(path, skip_below=committed))  # the body has the rest
        except TraceCorrupted as exc:
            problems.append(str(exc))
        expected = start + unit
    if expected == committed:
        problems.append(
            _missing(root, committed, f"the body holds {committed} events and no segment follows")
        )
    tail: SegmentScan | None = None
    for i, scan in enumerate(scans):
        if scan.problem is not None:
            later = scans[i + 1 :]
            # Only a segment just created (by rotation, before this one was complete) may follow.
            if len(later) > 1 or (later and not later[0].empty):
                problems.append(f"{scan.path}: {scan.problem}, before a later segment")
            else:
                tail = scan
    records: list[bytes] = []
    expected = committed
    for scan in scans:
        for definition in scan.definitions:
            try:
                tables.learn(definition, str(scan.path))
            except TraceCorrupted as exc:
                problems.append(str(exc))
        for record in scan.records:
            seq = written_seq(record)
            if seq != expected:
                if seq < expected:
                    continue
                problems.append(
                    f"trace {root}: events {expected}..{seq - 1} are missing "
                    f"(next record in {scan.path.name} is seq {seq})"
                )
                expected = seq
            records.append(record)
            expected += 1
    if scans and expected == scans[-1].start + unit:
        problems.append(_missing(root, expected, f"{scans[-1].path.name} before it is complete"))
    return Unsealed(scans, records, tail, problems, files)


def read_unsealed(root: Path, committed: int, unit: int, tables: CodeTables) -> Unsealed:
    """``survey``, raising TraceCorrupted for the first problem (see the module docstring)."""
    unsealed = survey(root, committed, unit, tables)
    if unsealed.problems:
        raise TraceCorrupted(unsealed.problems[0])
    return unsealed


def wal_state(root: Path) -> list[tuple[str, int]]:
    """The segment files and their sizes: a reader that finds them inconsistent while this
    changes has met a writer mid-write, and looks again."""
    state = []
    for _, path in list_segments(root / "wal"):
        try:
            state.append((path.name, path.stat().st_size))
        except FileNotFoundError:
            state.append((path.name, -1))
    return state


def tail_of(scan: SegmentScan) -> Tail:
    assert scan.problem is not None
    return Tail(scan.path.name, scan.end, scan.size - scan.end, scan.torn, scan.problem)


def drop_sealed_segments(root: Path, committed: int, unit: int) -> None:
    """Delete segments whose every event is in the body (the committer was stopped before it
    could)."""
    for start, path in list_segments(root / "wal"):
        if start + unit <= committed:
            path.unlink()


def set_aside(root: Path, scan: SegmentScan, recovery: Recovery) -> Tail:
    """Writers: copy the unreadable end of ``scan``'s segment into ``recovered/`` (fsynced),
    then cut it off the segment, so appending can go on after the last good frame."""
    tail = tail_of(scan)
    with open(scan.path, "rb") as f:
        f.seek(tail.offset)
        dropped = f.read()
    directory = root / RECOVERED
    if not directory.exists():
        directory.mkdir()
        fsync_dir(root)
    n = 0
    while True:
        suffix = f".{n}" if n else ""
        kept = directory / f"{tail.segment}.{tail.offset}{suffix}.tail"
        try:
            fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:  # set aside before, by a writer that died before cutting
            n += 1
    try:
        view = memoryview(dropped)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        kept.unlink()  # (and the segment stays as it is)
        raise
    finally:
        os.close(fd)
    fsync_dir(directory)
    fd = os.open(scan.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, tail.offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    relative = kept.relative_to(root).as_posix()
    recovery.tails.append(tail)
    recovery.set_aside.append(relative)
    recovery.dropped_frames += 1
    recovery.dropped_bytes += tail.size
    message = f"{scan.path}: cut off a {tail.reason}; the {tail.size} bytes are kept in {relative}"
    recovery.messages.append(message)
    log.warning("trace %s recovered: %s", root, message)
    return tail
