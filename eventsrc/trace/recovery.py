"""Opening a trace: what its write-ahead segments hold beyond the sealed body, and, for a
writer, the repair of what a crash left behind. Start-up and crash recovery are one path.

Segments are created one unit after another and deleted only once the body holds them, so
the unsealed ones start at the committed length and follow each other by one unit; a hole
means a segment was lost, and damage anywhere but at the very end raises TraceCorrupted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import attrs

from eventsrc.errors import TraceCorrupted
from eventsrc.trace.record import written_seq
from eventsrc.trace.segment import SegmentScan, fsync_dir, list_segments, scan_segment
from eventsrc.trace.tables import CodeTables

__all__ = ["Recovery", "Unsealed", "drop_sealed_segments", "read_unsealed", "repair_tail"]

log = logging.getLogger("eventsrc.trace")


@attrs.define
class Recovery:
    """What opening the trace found and repaired."""

    dropped_frames: int = 0
    """Torn or checksum-failing frames (each one write's worth of records) dropped from the
    end of the write-ahead segment; no acknowledged event is ever in one."""
    dropped_bytes: int = 0
    resealed_units: int = 0
    """Complete units found only in the write-ahead segment and handed to the committer again."""
    messages: list[str] = attrs.field(factory=list)


@attrs.define
class Unsealed:
    """The unsealed part of a trace as its segments hold it."""

    scans: list[SegmentScan]
    records: list[bytes]
    """The records of events ``committed..``, dense, in order (length-prefixed)."""


def _scan(root: Path, committed: int, unit: int) -> list[SegmentScan]:
    scans = []
    expected = committed
    for start, path in list_segments(root / "wal"):
        if start + unit <= committed:
            continue  # every event in it is in the body
        if start != expected:
            raise TraceCorrupted(
                f"trace {root}: the write-ahead segment for events from {expected} "
                f"is missing (found {path.name})"
            )
        scans.append(scan_segment(path))
        expected = start + unit
    return scans


def read_unsealed(root: Path, committed: int, unit: int, tables: CodeTables) -> Unsealed:
    """Scan the segments not yet wholly in the body; learn their code definitions into
    ``tables``. Raises TraceCorrupted for a missing segment, damage before the end, or
    events missing."""
    scans = _scan(root, committed, unit)
    for scan in scans[:-1]:
        if scan.problem:
            raise TraceCorrupted(f"{scan.path}: {scan.problem} before a later segment")
    records: list[bytes] = []
    expected = committed
    for scan in scans:
        for definition in scan.definitions:
            tables.learn(definition, str(scan.path))
        for record in scan.records:
            seq = written_seq(record)
            if seq != expected:
                if seq < expected:
                    continue
                raise TraceCorrupted(
                    f"trace {root}: events {expected}..{seq - 1} are missing "
                    f"(next record in {scan.path.name} is seq {seq})"
                )
            records.append(record)
            expected += 1
    return Unsealed(scans, records)


def drop_sealed_segments(root: Path, committed: int, unit: int) -> None:
    """Delete segments whose every event is in the body (the committer was stopped before it
    could)."""
    for start, path in list_segments(root / "wal"):
        if start + unit <= committed:
            path.unlink()


def repair_tail(root: Path, scans: list[SegmentScan], recovery: Recovery) -> None:
    """Drop a torn or failing frame at the end of the last segment."""
    if not scans or scans[-1].problem is None:
        return
    scan = scans[-1]
    dropped = scan.size - scan.end
    if dropped:
        recovery.dropped_frames += 1
        recovery.dropped_bytes += dropped
        message = f"{scan.path}: dropped a {scan.problem}"
        recovery.messages.append(message)
        log.warning("trace %s recovered: %s", root, message)
    if scan.end == 0:
        scan.path.unlink()
    else:
        os.truncate(scan.path, scan.end)
        fsync_dir(scan.path.parent)
