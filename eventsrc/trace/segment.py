"""The write-ahead segment: the hot tail of a trace, as checksummed frames of records.

Every event is first written here; the Zarr body receives it later, a whole unit at a time.
One segment file per body unit (``wal/<first seq, 20 digits>.wal``) holds the records of the
events ``[start, start + unit)``; once the body has committed a unit its segment is deleted.

File layout (little-endian)::

    header   magic b"ESWAL\\x00\\x00\\x02", int64 start seq                       16 bytes
    frame    uint32 body length, uint32 crc32c(body), body = records             repeated

Each record is preceded by its length (see record.py for what a record holds).

A frame is what one write put down (one append with durability "sync", one group commit with
"group"), so the checksum costs one call per write rather than per event. A crash can tear
only the last frame, and events are acknowledged as durable only once their frame is fsynced,
so dropping a torn last frame never drops an acknowledged event.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import attrs
import google_crc32c

from eventsrc.errors import TraceCorrupted
from eventsrc.trace.files import fsync_dir as fsync_dir  # (snapshot.py takes it from here)
from eventsrc.trace.record import HEAD, LENGTH_SIZE, parse_records
from eventsrc.trace.tables import Definition

FRAME = struct.Struct("<II")
MAGIC = b"ESWAL\x00\x00\x02"
SEGMENT_HEADER = struct.Struct("<8sq")
MAX_FRAME = 1 << 30
_SEQ = struct.Struct("<q")

crc32 = google_crc32c.value
"""Frames are checksummed with CRC-32C (hardware-accelerated: ~25 GB/s here vs ~3 for zlib's)."""


def segment_name(start: int) -> str:
    return f"{start:020d}.wal"


def segment_start(path: Path) -> int | None:
    stem = path.name.removesuffix(".wal")
    return int(stem) if path.suffix == ".wal" and stem.isdigit() else None


def list_segments(wal_dir: Path) -> list[tuple[int, Path]]:
    """The segment files in a WAL directory, by start seq."""
    try:
        names = os.listdir(wal_dir)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = wal_dir / name
        start = segment_start(path)
        if start is not None:
            found.append((start, path))
    found.sort()
    return found


@attrs.define
class SegmentScan:
    """What one segment file holds: event records (length + envelope + payload) in file order,
    definitions, and where it ends."""

    path: Path
    start: int
    records: list[bytes] = attrs.field(factory=list)
    first: int = attrs.field(default=attrs.Factory(lambda self: self.start, takes_self=True))
    """The seq of ``records[0]``: ``start``, unless frames were skipped (``skip_below``)."""
    definitions: list[Definition] = attrs.field(factory=list)
    end: int = SEGMENT_HEADER.size
    """Offset just past the last good frame (0: not even the header is whole)."""
    size: int = 0
    problem: str | None = None
    """Why reading stopped before the end of the file, if it did."""
    torn: bool = True
    """With a problem: True if the file ends inside the failing frame (or its header, or the
    rest is zeros): a write cut short, never acknowledged. False if the frame is all there but
    fails its checksum (or its length is nonsense): it may hold acknowledged events."""

    @property
    def empty(self) -> bool:
        """Nothing but (at most) its header: a segment just created."""
        return self.size <= SEGMENT_HEADER.size and self.problem is None


def _frame_at(data: bytes, off: int, n: int) -> int | None:
    """The end offset of a well-formed frame at ``off``, or None."""
    if off + FRAME.size > n:
        return None
    length, crc = FRAME.unpack_from(data, off)
    end = off + FRAME.size + length
    if length < HEAD.size or length > MAX_FRAME or end > n:
        return None
    checksum: int = crc32(data[off + FRAME.size : end])
    return end if checksum == crc else None


def scan_segment(path: Path, skip_below: int | None = None) -> SegmentScan:
    """Read every well-formed frame of a segment file, stopping at the first that is not.

    ``skip_below``: frames holding only events older than this seq (those the body holds
    already) are checked (crc32c) but not split into records, and ``first`` says where the
    records kept begin. A frame is skipped when the next good frame begins below
    ``skip_below``, so a definition record is only ever skipped with the events that need it.

    Raises TraceCorrupted if the file is not a segment, or if a failing frame is followed by a
    good one (damage in the middle: dropping the rest would lose recorded events).
    """
    data = path.read_bytes()
    n = len(data)
    if n < SEGMENT_HEADER.size:
        # A crash between creating the file and writing its header leaves it short.
        start = segment_start(path)
        return SegmentScan(
            path,
            -1 if start is None else start,
            end=0,
            size=n,
            problem=f"torn segment header ({n} bytes)" if n else None,
        )
    magic, start = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != MAGIC or start != segment_start(path):
        raise TraceCorrupted(f"{path} is not an eventsrc write-ahead segment (bad header)")
    scan = SegmentScan(path, start, size=n)
    off = SEGMENT_HEADER.size
    end = _frame_at(data, off, n)
    skipping = skip_below is not None
    while off < n:
        if end is None:
            scan.problem, scan.torn = _classify(data, off, n, path)
            break
        following = _frame_at(data, end, n) if end < n else None
        if skipping:
            at = end + FRAME.size + LENGTH_SIZE  # the next frame's first record's seq
            if following is not None and _SEQ.unpack_from(data, at)[0] < skip_below:
                off, end = end, following
                continue
            skipping = False
            scan.first = _SEQ.unpack_from(data, off + FRAME.size + LENGTH_SIZE)[0]
        overrun = parse_records(data, off + FRAME.size, end, scan.records, scan.definitions)
        if overrun is not None:
            raise TraceCorrupted(
                f"{path}: a frame at byte {off} passes its checksum but {overrun} "
                "(written by a faulty writer?)"
            )
        off, end = end, following
    scan.end = off
    return scan


def _classify(data: bytes, off: int, n: int, path: Path) -> tuple[str, bool]:
    """A failing frame at ``off``, the last thing in the file: what is wrong, and whether it
    is torn (see SegmentScan.torn). Raises TraceCorrupted if a good frame follows it."""
    for probe in range(off + 1, n - FRAME.size - HEAD.size + 1):
        if _frame_at(data, probe, n) is not None:
            raise TraceCorrupted(
                f"write-ahead segment {path} is damaged at byte {off}: a frame there fails "
                f"its checksum but a good frame follows at byte {probe}"
            )
    size = n - off
    if off + FRAME.size > n:
        return f"torn frame header at byte {off} ({size} bytes)", True
    if not data[off:].strip(b"\x00"):
        # A file system can leave allocated, never-written blocks as zeros after a crash.
        return f"zero-filled tail at byte {off} ({size} bytes)", True
    length, _ = FRAME.unpack_from(data, off)
    if length < HEAD.size or length > MAX_FRAME:
        return f"damaged frame at byte {off}: impossible length {length} ({size} bytes)", False
    if off + FRAME.size + length > n:
        return f"torn frame at byte {off} ({size} of {FRAME.size + length} bytes)", True
    return f"damaged frame at byte {off}: it fails its checksum ({size} bytes)", False


def create_segment(wal_dir: Path, start: int, sync: bool) -> int:
    """Open the segment file starting at ``start`` for appending, creating it (with its header)
    if it does not exist or is empty; returns its fd. ``sync``: make a new file and its
    directory entry durable before returning."""
    path = wal_dir / segment_name(start)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        created = False
    except FileNotFoundError:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        created = True
    try:
        if os.fstat(fd).st_size == 0:  # new, or left empty by a crash right after creating it
            os.write(fd, SEGMENT_HEADER.pack(MAGIC, start))
            if sync:
                os.fdatasync(fd)
                if created:
                    fsync_dir(wal_dir)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_segment(wal_dir: Path, start: int, records: list[bytes]) -> None:
    """Create the segment starting at ``start`` holding ``records`` (written records, their
    length first) as one frame, durably: for a body copied elsewhere whose last unit is
    partial, so a writer can go on appending to it. The segment must not exist yet."""
    path = wal_dir / segment_name(start)
    if path.exists():
        raise FileExistsError(f"{path} exists")
    fd = create_segment(wal_dir, start, sync=True)
    try:
        body = b"".join(records)
        view = memoryview(FRAME.pack(len(body), crc32(body)) + body)
        while view:
            view = view[os.write(fd, view) :]
        os.fdatasync(fd)
    finally:
        os.close(fd)


class SegmentWriter:
    """Appends frames to the current segment file, starting a new file at each unit boundary.

    Producers append records (bytes) to ``pending`` and call ``rotate_after(n, start)`` ("after
    the next n pieces, records start a segment at this seq"); ``drain`` writes everything
    pending as frames. With a background flusher, callers hold ``lock`` around all of these.
    """

    def __init__(
        self,
        wal_dir: Path,
        start: int,
        *,
        sync_rotation: bool,
        retire_rotated: bool,
        on_complete: Callable[[int], None],
    ) -> None:
        """``sync_rotation``: fsync a segment when it is complete, and each new file and its
        directory entry when created (else the directory is fsynced by ``sync``).
        ``retire_rotated``: keep complete segments' fds open for ``take_retired`` (a flusher
        fsyncs and closes them) instead of closing them at once. ``on_complete(start)`` is
        called once the segment that ends at ``start`` is all written."""
        self.wal_dir = wal_dir
        self.pending: list[bytes] = []
        self.lock = threading.Lock()
        self._rotations: list[tuple[int, int]] = []  # (index in pending, segment start)
        self._sync_rotation = sync_rotation
        self._retire_rotated = retire_rotated
        self._retired: list[int] = []
        self._dir_unsynced = False
        self._on_complete = on_complete
        self.fd = self._create(start)
        self.start = start

    def _create(self, start: int) -> int:
        fd = create_segment(self.wal_dir, start, self._sync_rotation)
        self._dir_unsynced = self._dir_unsynced or not self._sync_rotation
        return fd

    def rotate_after(self, pieces: int, start: int) -> None:
        """The segment starting at ``start`` begins after the next ``pieces`` pieces queued."""
        self._rotations.append((len(self.pending) + pieces, start))

    def drain(self) -> None:
        """Write everything pending, one frame per segment, rotating where marked."""
        batch = self.pending
        if not batch and not self._rotations:
            return
        self.pending = []
        rotations, self._rotations = self._rotations, []
        done = 0
        for index, start in rotations:
            # The next segment exists before the frame that completes this one is written, so
            # a complete segment is never the last file: if the newest segments are lost, what
            # remains shows it (recovery.py), instead of reading as a shorter trace.
            successor = self._create(start)
            try:
                self._write(batch[done:index])
            except BaseException:
                os.close(successor)
                raise
            done = index
            self._rotate(successor, start)
        self._write(batch[done:] if done else batch)

    def _write(self, batch: list[bytes]) -> None:
        if not batch:
            return
        body = b"".join(batch)
        header = FRAME.pack(len(body), crc32(body))
        written = os.writev(self.fd, (header, body))
        if written < len(header) + len(body):  # only on a full disk or a signal
            rest = memoryview(header + body)[written:]
            while rest:
                rest = rest[os.write(self.fd, rest) :]

    def _rotate(self, successor: int, start: int) -> None:
        # A complete segment is made durable before the committer is told about it.
        if self._sync_rotation:
            os.fdatasync(self.fd)
        if self._retire_rotated:
            self._retired.append(self.fd)  # a flusher may be fsyncing it: it closes it
        else:
            os.close(self.fd)
        self.fd = successor
        self.start = start
        self._on_complete(start)

    def take_retired(self) -> list[int]:
        """The fds of completed segments not yet fsynced and closed; the caller does both."""
        retired, self._retired = self._retired, []
        return retired

    def sync(self) -> None:
        """fsync the current segment and any completed ones still open."""
        for fd in self.take_retired():
            os.fdatasync(fd)
            os.close(fd)
        os.fdatasync(self.fd)
        if self._dir_unsynced:
            fsync_dir(self.wal_dir)
            self._dir_unsynced = False

    def close(self) -> None:
        for fd in self.take_retired():
            os.close(fd)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
