"""``Trace``: the append-only event log, one directory holding a Zarr body and a write-ahead tail.

Layout of a trace directory::

    zarr.json        Zarr v3 group metadata; attributes["eventsrc"] is the commit marker:
                     format and version, committed length, unit sizes, and the code tables
                     (kind names and schema versions, asset symbols, sources)
    seq/ ts/ exchange_ts/ kind/ asset/ source/ cause/ record/      the body (see body.py)
    wal/<seq>.wal    write-ahead segments of the events not yet in the body (see segment.py)
    LOCK             the writer's lock (flock), holding who took it

Durability contract:

- ``append(event)`` returns the event's seq. With ``durability="sync"`` the event is on disk
  (fsync) before it returns; ``extend(events)`` makes the whole batch durable with one fsync.
- With ``"group"`` a background thread writes and fsyncs pending events at least every
  ``group_interval`` seconds (10 ms by default; measured here at 1M events, 5 ms costs ~8% of
  the append rate and 25 ms gains ~3%); ``flush()`` waits until everything appended so far is
  durable.
- With ``"none"`` nothing is promised until ``flush()`` or ``close()``.
- A process killed at any instant leaves a trace that opens, whose events are a dense prefix
  ``0..n-1`` containing every event acknowledged as durable, with no torn record: a torn frame
  at the end of the write-ahead segment (the last write, never acknowledged) is dropped on open,
  logged and counted in ``trace.recovery``; damage anywhere else raises TraceCorrupted naming
  where, and nothing is dropped.

One writer at a time: mode "a" or "w" takes an exclusive lock, and a second writer gets
TraceLocked naming the holder. Any number of readers (mode "r", in any process) may read while
it is written; a reader sees the events durable or written when it opened or last ``refresh()``-ed.

A Trace object is used from one thread (the engine's single writer); its background threads
(group commit, body committer) are its own and stop with ``close()``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import attrs
import msgspec
import numpy as np

from eventsrc.clock import Clock, WallClock
from eventsrc.codec import Codec, stamp
from eventsrc.errors import (
    EventNotSerializable,
    TraceClosed,
    TraceCorrupted,
    TraceError,
    TraceExists,
    TraceReadOnly,
    UnknownEventKind,
)
from eventsrc.events import REGISTRY, Event, EventRegistry
from eventsrc.trace.body import COLUMNS, BodyReader
from eventsrc.trace.committer import Committer
from eventsrc.trace.marker import create, read_meta, take_lock
from eventsrc.trace.segment import (
    ASSET,
    DEFINE,
    ENV,
    ENV_DTYPE,
    ENVELOPE_SIZE,
    HEAD,
    HEAD_DTYPE,
    KIND,
    NO_CAUSE,
    NO_EXCHANGE_TS,
    SOURCE,
    SegmentScan,
    SegmentWriter,
    define_record,
    fsync_dir,
    list_segments,
    scan_segment,
    segment_name,
)

__all__ = ["Durability", "Mode", "Recovery", "Trace"]

log = logging.getLogger("eventsrc.trace")

DEFAULT_UNIT = 32768
DEFAULT_RECORD_CHUNK = 4096
ITER_BLOCK = 32768
RING = 8192
"""The most recent events are kept in memory (between RING and 2 * RING of them), so tail()
rarely reads a file; older ones are read back from the write-ahead segment or the body."""
MAX_UNSEALED_UNITS = 8
"""Appending waits for the committer when more units than this are not yet sealed."""

Durability = Literal["sync", "group", "none"]
Mode = Literal["r", "a", "w"]
_SYNC, _GROUP, _NONE = 0, 1, 2
_DURABILITY = {"sync": _SYNC, "group": _GROUP, "none": _NONE}
_DRAIN_AT = 4096
"""Pending pieces (two per event) the appending thread writes out itself ("group", "none")."""
assert _DRAIN_AT // 2 < RING  # every event older than the ring is in a segment file
_EXCHANGE_TS_MIN = NO_EXCHANGE_TS + 2  # the two lowest int64 values mean "none" and "missing"

_pack_head = HEAD.pack
_HEAD_SIZE = HEAD.size


_open_writers: weakref.WeakSet[Trace] = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:
    for trace in list(_open_writers):
        with contextlib.suppress(Exception):
            trace.close()


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


# ---------------------------------------------------------------------------------------------


class Trace:
    """An append-only, Zarr-backed event log. Open one with ``Trace.open``."""

    path: Path
    mode: Mode
    durability: Durability
    recovery: Recovery

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Mode = "r",
        durability: Durability = "sync",
        *,
        clock: Clock | None = None,
        registry: EventRegistry = REGISTRY,
        unit: int = DEFAULT_UNIT,
        record_chunk: int = DEFAULT_RECORD_CHUNK,
        group_interval: float = 0.01,
    ) -> Trace:
        """Open the trace at ``path``.

        - ``mode="r"``: read an existing trace (any number of readers, while it is written).
        - ``mode="a"``: append to the trace, creating it if there is none.
        - ``mode="w"``: create a new trace; an existing one is never overwritten (TraceExists).

        ``unit`` (events per body chunk) and ``record_chunk`` (events per chunk of the record
        column) apply when a trace is created; an existing trace keeps its own. ``clock`` stamps
        ``ts`` on append (the wall clock by default).
        """
        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', not {mode!r}")
        if durability not in _DURABILITY:
            raise ValueError(f"durability must be 'sync', 'group' or 'none', not {durability!r}")
        if unit <= 0 or record_chunk <= 0 or unit % record_chunk:
            raise ValueError(
                f"unit ({unit}) must be a positive multiple of record_chunk ({record_chunk})"
            )
        if group_interval <= 0:
            raise ValueError(f"group_interval must be > 0 seconds, not {group_interval}")
        root = Path(path)
        trace = cls.__new__(cls)
        trace._init(root, mode, durability, clock or WallClock(), registry, group_interval)
        if mode == "r":
            trace._open_reader()
            return trace
        lock_fd = -1
        if mode == "w" or not root.exists() or (root.is_dir() and not any(root.iterdir())):
            try:
                lock_fd = create(root, unit, record_chunk)
            except TraceExists:
                if mode == "w":
                    raise
        if lock_fd < 0:
            read_meta(root)  # NotATrace / TraceVersionError before taking the lock
            lock_fd = take_lock(root)
        try:
            trace._open_writer(lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise
        return trace

    def _init(
        self,
        root: Path,
        mode: Mode,
        durability: Durability,
        clock: Clock,
        registry: EventRegistry,
        group_interval: float,
    ) -> None:
        self.path = root
        self.mode = mode
        self.durability = durability
        self.recovery = Recovery()
        self._closed = False
        # The wall clock's method only wraps time.time_ns; call that directly on the hot path.
        self._now = time.time_ns if type(clock) is WallClock else clock.now_ns
        self._refuse_appends = mode == "r"
        """True when append must take the slow way, to raise (read-only, closed, failed)."""
        self._codec = Codec(registry)
        self.registry = registry
        self._group_interval = group_interval
        self._dmode = _DURABILITY[durability]
        self._body = BodyReader(root)
        self._block_cache: tuple[int, int, list[bytes], int] | None = None
        self._lock_fd = -1
        self._defs: list[bytes] = []
        """Definition records made while staging, written before the event that needs them."""
        self._writer: SegmentWriter | None = None
        self._error: BaseException | None = None
        self._wal_failed = False
        self._committed_changed = threading.Condition()
        self._flusher: threading.Thread | None = None
        self._committer: Committer | None = None

    # -- loading ----------------------------------------------------------------------------

    def _load(self, meta: dict[str, Any], scans: list[SegmentScan]) -> None:
        """Set tables, committed length and the in-memory tail from the marker and segments."""
        self._unit = int(meta["unit"])
        self._record_chunk = int(meta["record_chunk"])
        # Streaming reads whole units, at least ITER_BLOCK events per read (Zarr's per-call
        # overhead is ~1 ms, so small units would otherwise dominate).
        self._iter_span = self._unit * max(1, -(-ITER_BLOCK // self._unit))
        committed = int(meta["committed"])
        kinds = [(str(n), int(v)) for n, v in meta["kinds"]]
        assets: list[str | None] = list(meta["assets"])
        sources: list[str] = list(meta["sources"])
        tables: tuple[list[Any], list[Any], list[Any]] = (kinds, assets, sources)
        records: list[bytes] = []
        expected = committed
        for scan in scans:
            for d in scan.definitions:
                table = tables[d.table]
                value: Any = (d.name, d.version) if d.table == KIND else d.name
                if d.code < len(table):
                    if table[d.code] != value:
                        raise TraceCorrupted(
                            f"{scan.path}: code {d.code} of table {d.table} is defined as "
                            f"{value!r} but the trace already has {table[d.code]!r}"
                        )
                elif d.code == len(table):
                    table.append(value)
                else:
                    raise TraceCorrupted(f"{scan.path}: code {d.code} defined out of order")
            from_bytes = int.from_bytes
            for record in scan.records:
                seq = from_bytes(record[4:12], "little", signed=True)
                if seq != expected:
                    if seq < expected:
                        continue
                    raise TraceCorrupted(
                        f"trace {self.path}: events {expected}..{seq - 1} are missing "
                        f"(next record in {scan.path.name} is seq {seq})"
                    )
                records.append(record)
                expected += 1
        self._committed = committed
        self._segments = {scan.start: scan.records for scan in scans}
        """Records of unsealed segments as last scanned (at open, or by a read since)."""
        ring = records[max(0, len(records) - RING) :]
        self._mem_start = expected - len(ring)
        self._heads = [r[:_HEAD_SIZE] for r in ring]
        self._payloads = [r[_HEAD_SIZE:] for r in ring]
        """The write-ahead records (head, payload) of events ``_mem_start..``: the most recent
        ones. Older events not yet in the body are read back from their segment."""
        self._next = expected
        self._kinds: list[tuple[str, int]] = kinds
        self._kind_codes = {k: i for i, k in enumerate(kinds)}
        self._assets = assets
        self._asset_codes = {a: i for i, a in enumerate(assets)}
        self._sources: list[Any] = sources
        self._source_codes = {s: i for i, s in enumerate(sources)}
        self._by_class: dict[type[Event], tuple[int, Callable[[Event], bytes]]] = {}
        self._decoders: list[Callable[[bytes], Event]] = []

    def _scan_wal(self, committed: int, unit: int) -> list[SegmentScan]:
        """Scan the segments not yet wholly in the body. They are created one unit after
        another and deleted only once committed, so they start at ``committed`` and follow
        each other by one unit; a hole means a segment was lost."""
        scans = []
        expected = committed
        for start, path in list_segments(self.path / "wal"):
            if start + unit <= committed:
                continue  # every event in it is in the body
            if start != expected:
                raise TraceCorrupted(
                    f"trace {self.path}: the write-ahead segment for events from {expected} "
                    f"is missing (found {path.name})"
                )
            scans.append(scan_segment(path))
            expected = start + unit
        return scans

    def _open_reader(self) -> None:
        for _attempt in range(50):
            meta = read_meta(self.path)
            try:
                scans = self._scan_wal(int(meta["committed"]), int(meta["unit"]))
            except FileNotFoundError:
                continue  # the writer committed and removed a segment meanwhile
            except TraceCorrupted:
                if read_meta(self.path)["committed"] != meta["committed"]:
                    continue
                raise
            if read_meta(self.path)["committed"] != meta["committed"]:
                continue
            for scan in scans[:-1]:
                if scan.problem:
                    raise TraceCorrupted(f"{scan.path}: {scan.problem} before a later segment")
            self._load(meta, scans)
            return
        raise TraceError(f"trace {self.path} changed too fast to read a consistent view")

    def refresh(self) -> None:
        """Readers: catch up with what the writer has written since open (or the last refresh)."""
        self._check_open()
        if self.mode != "r":
            return
        self._block_cache = None
        self._open_reader()

    def _open_writer(self, lock_fd: int) -> None:
        self._lock_fd = lock_fd
        meta = read_meta(self.path)
        committed, unit = int(meta["committed"]), int(meta["unit"])
        wal = self.path / "wal"
        wal.mkdir(exist_ok=True)
        for start, path in list_segments(wal):
            if start + unit <= committed:
                path.unlink()
        scans = self._scan_wal(committed, unit)
        for i, scan in enumerate(scans):
            if scan.problem is None:
                continue
            if i != len(scans) - 1:
                raise TraceCorrupted(f"{scan.path}: {scan.problem} before a later segment")
            dropped = scan.size - scan.end
            if dropped:
                self.recovery.dropped_frames += 1
                self.recovery.dropped_bytes += dropped
                message = f"{scan.path}: dropped a {scan.problem}"
                self.recovery.messages.append(message)
                log.warning("trace %s recovered: %s", self.path, message)
            if scan.end == 0:
                scan.path.unlink()
            else:
                os.truncate(scan.path, scan.end)
                fsync_dir(scan.path.parent)
        self._load(meta, scans)
        self._unit_end = (self._next // self._unit + 1) * self._unit
        self._durable = self._next
        self._flush_wanted = threading.Event()
        self._durable_changed = threading.Condition()
        self._committer = Committer(self.path, lock_fd, self._unit_sealed, self._fail_committing)
        self._writer = SegmentWriter(
            wal,
            (self._next // self._unit) * self._unit,
            sync_rotation=self._dmode != _NONE,
            retire_rotated=self._dmode == _GROUP,
            on_complete=self._segment_complete,
        )
        if self._dmode == _GROUP:
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"eventsrc-flush:{self.path.name}", daemon=True
            )
            self._flusher.start()
        for index in range(committed // unit, self._next // unit):
            # Complete in the write-ahead segment but not sealed: a crash came between.
            self.recovery.resealed_units += 1
            self._committer.submit(index)
        _open_writers.add(self)

    # -- appending --------------------------------------------------------------------------

    def append(self, event: Event) -> int:
        """Append one event; returns its seq (see the module docstring for when it is durable).

        Raises EventNotSerializable (or UnknownEventKind) before anything is written if the
        event cannot be recorded.
        """
        if self._refuse_appends:
            self._check_writable()
        seq = self._next
        head, payload = self._stage(event, seq)
        writer = self._writer
        assert writer is not None
        if self._dmode == _GROUP:
            with writer.lock:  # the flusher drains the same pending list
                self._put(writer, head, payload, seq)
        else:
            self._put(writer, head, payload, seq)
            if self._dmode == _SYNC:
                self._write_out(writer, sync=True)
        if seq + 1 == self._unit_end:
            self._complete_unit()
        return seq

    def _put(self, writer: SegmentWriter, head: bytes, payload: bytes, seq: int) -> None:
        pending = writer.pending
        try:
            if self._defs:
                pending.extend(self._defs)
                self._defs.clear()
            pending.extend((head, payload))  # one call: a record is never queued half
            self._next = seq + 1
            self._heads.append(head)
            self._payloads.append(payload)
        except BaseException as exc:  # e.g. KeyboardInterrupt between two of these
            # What is queued is whole and will be written; appending more could reuse a seq.
            self._fail(exc, "an append (interrupted)")
            raise
        if len(pending) > _DRAIN_AT:
            self._write_out(writer)
        if len(self._heads) > 2 * RING:
            self._write_out(writer)  # everything older than the ring must be in its segment
            self._trim()

    def _write_out(self, writer: SegmentWriter, sync: bool = False) -> None:
        """Drain (and fsync) the write-ahead segment; a failure stops all further writing,
        since a frame written after a partial one would read as damage, not a torn tail."""
        try:
            writer.drain()
            if sync:
                writer.sync()
        except BaseException as exc:
            self._wal_failed = True
            self._fail(exc, "writing the write-ahead segment")
            raise TraceError(
                f"trace {self.path}: writing the write-ahead segment failed ({exc}); the trace "
                "takes no more events; reopen it to recover what was written"
            ) from exc

    def extend(self, events: Iterable[Event]) -> range:
        """Append events in order, as one batch: if any cannot be recorded, none is.
        With durability="sync" the batch is durable (one fsync) when this returns."""
        if self._refuse_appends:
            self._check_writable()
        first = self._next
        marks = (len(self._kinds), len(self._assets), len(self._sources), len(self._defs))
        try:
            staged = [self._stage(event, seq) for seq, event in enumerate(events, first)]
        except BaseException:
            self._forget_codes(*marks)
            raise
        writer = self._writer
        assert writer is not None
        done = 0
        while done < len(staged):
            # Up to the end of the current unit at a time, so each unit is handed over whole.
            batch = staged[done : done + self._unit_end - self._next]
            with writer.lock:
                for head, payload in batch:
                    self._put(writer, head, payload, self._next)
            done += len(batch)
            if self._next == self._unit_end:
                self._complete_unit()
        if staged and self._dmode == _SYNC:
            self._write_out(writer, sync=True)
        return range(first, self._next)

    def _stage(self, event: Event, seq: int) -> tuple[bytes, bytes]:
        """The write-ahead record (head, payload) of ``event`` at ``seq``; writes nothing.
        This is the hot path of every append: keep it lean."""
        kind = self._by_class.get(type(event))
        if kind is None:
            kind = self._define_kind(event)
        try:
            payload = kind[1](event)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise EventNotSerializable(f"cannot encode {type(event).__qualname__}: {exc}") from None
        asset = self._asset_codes.get(event.asset)
        if asset is None:
            asset = self._define_code(ASSET, event.asset, seq)
        source = self._source_codes.get(event.source)
        if source is None:
            source = self._define_code(SOURCE, event.source, seq)
        exchange_ts = event.exchange_ts
        cause = event.cause
        try:
            if exchange_ts is None:
                exchange_ts = NO_EXCHANGE_TS
            elif exchange_ts < _EXCHANGE_TS_MIN:
                raise ValueError(f"exchange_ts {exchange_ts} is out of range")
            if type(cause) is not int:
                cause = NO_CAUSE
            elif cause < 0:
                raise ValueError(f"cause {cause} is not a seq (seqs are >= 0)")
            head = _pack_head(
                ENVELOPE_SIZE + len(payload),
                seq,
                self._now(),
                exchange_ts,
                kind[0],
                asset,
                source,
                cause,
            )
        except (struct.error, ValueError, TypeError, OverflowError) as exc:
            raise EventNotSerializable(
                f"cannot record {type(event).__qualname__}: envelope field out of range ({exc})"
            ) from None
        return head, payload

    def _define_kind(self, event: Event) -> tuple[int, Callable[[Event], bytes]]:
        cls = type(event)
        if not isinstance(event, Event):
            raise UnknownEventKind(f"{cls.__qualname__} is not an eventsrc event")
        info = self.registry.info(cls)
        key = (info.name, info.version)
        code = self._kind_codes.get(key)
        if code is None:
            code = len(self._kinds)
            if code >= DEFINE:
                raise TraceError(f"trace {self.path} has too many kinds ({code})")
            self._kinds.append(key)
            self._kind_codes[key] = code
            self._defs.append(define_record(self._next, KIND, code, info.name, info.version))
        entry = (code, self._codec.encoder_for(info))
        self._by_class[cls] = entry
        return entry

    def _define_code(self, table: int, name: str | None, seq: int) -> int:
        names: list[Any]
        if table == ASSET:
            if name is not None and not isinstance(name, str):
                raise EventNotSerializable(f"asset must be a str or None, not {type(name)}")
            codes: dict[Any, int] = self._asset_codes
            names = self._assets
        else:
            if not isinstance(name, str):
                raise EventNotSerializable(f"source must be a str, not {type(name)}")
            codes = self._source_codes
            names = self._sources
        code = len(names)
        if code >= 2**32 - 1:
            raise TraceError(f"trace {self.path}: code table {table} is full")
        names.append(name)
        codes[name] = code
        self._defs.append(define_record(seq, table, code, name))
        return code

    def _forget_codes(self, kinds: int, assets: int, sources: int, defs: int) -> None:
        """Undo the code definitions a batch made before it failed to stage (and only those:
        definitions queued earlier still precede the events that use them)."""
        for key in self._kinds[kinds:]:
            del self._kind_codes[key]
        del self._kinds[kinds:]
        self._by_class = {c: e for c, e in self._by_class.items() if e[0] < kinds}
        for asset in self._assets[assets:]:
            del self._asset_codes[asset]
        del self._assets[assets:]
        for source in self._sources[sources:]:
            del self._source_codes[source]
        del self._sources[sources:]
        del self._defs[defs:]

    def _complete_unit(self) -> None:
        """The unit ending at ``_unit_end`` is complete: later records go to a new segment
        (whose opening hands the complete one to the committer), and memory is trimmed."""
        boundary = self._unit_end
        self._unit_end = boundary + self._unit
        writer = self._writer
        assert writer is not None
        with writer.lock:
            writer.rotate_at(boundary)
            if self._next - self._committed > MAX_UNSEALED_UNITS * self._unit:
                self._write_out(writer)  # the committer must have been handed what we wait for
        if self._next - self._committed > MAX_UNSEALED_UNITS * self._unit:
            self._wait_for_committer(self._next - MAX_UNSEALED_UNITS * self._unit)

    def _segment_complete(self, start: int) -> None:
        """Called by the segment writer once the segment ending at ``start`` is all on disk."""
        assert self._committer is not None
        self._committer.submit(start // self._unit - 1)

    def _unit_sealed(self, index: int) -> None:
        """Called from the committer's reader thread: unit ``index`` is in the body."""
        self._raise_committed((index + 1) * self._unit)

    def _raise_committed(self, committed: int) -> None:
        with self._committed_changed:
            self._committed = max(self._committed, committed)
            self._committed_changed.notify_all()

    def _wait_for_committer(self, committed: int) -> None:
        """Backpressure: memory holds every unsealed event, so do not run far ahead."""
        with self._committed_changed:
            while self._committed < committed:
                self._raise_background_error()
                self._committed_changed.wait(0.1)

    def _trim(self) -> None:
        """Keep the last RING events in memory. Called with nothing pending (just drained),
        under the WAL lock when there is a flusher."""
        drop = len(self._heads) - RING
        del self._heads[:drop]
        del self._payloads[:drop]
        self._mem_start += drop

    # -- background work --------------------------------------------------------------------

    def _flush_loop(self) -> None:
        writer = self._writer
        assert writer is not None
        try:
            while not self._wal_failed:
                self._flush_wanted.wait(self._group_interval)
                self._flush_wanted.clear()
                stopping = self._closed
                with writer.lock:
                    if self._wal_failed:
                        return
                    target = self._next
                    writer.drain()
                    fd, retired = writer.fd, writer.take_retired()
                # fsync outside the lock, so appends go on meanwhile; rotated files are only
                # closed here, so neither fd can be closed under us.
                for old in retired:
                    os.fdatasync(old)
                    os.close(old)
                os.fdatasync(fd)
                with self._durable_changed:
                    self._durable = target
                    self._durable_changed.notify_all()
                if stopping:
                    return
        except BaseException as exc:
            self._wal_failed = True
            self._fail(exc, "writing the write-ahead segment")
            with self._durable_changed:
                self._durable_changed.notify_all()

    def _fail(self, exc: BaseException, doing: str) -> None:
        self._error = exc
        self._refuse_appends = True
        log.error("trace %s: %s failed: %s", self.path, doing, exc)
        with self._committed_changed:
            self._committed_changed.notify_all()

    def _fail_committing(self, exc: BaseException) -> None:
        self._fail(exc, "sealing the body")

    def _raise_background_error(self) -> None:
        if self._error is not None:
            raise TraceError(
                f"trace {self.path}: a background write failed; events appended before it are "
                f"in the write-ahead segment up to the failure: {self._error}"
            ) from self._error

    def flush(self) -> None:
        """Make every event appended so far durable (waits for the group commit if any)."""
        self._check_open()
        if self.mode == "r":
            return
        self._raise_background_error()
        writer = self._writer
        assert writer is not None
        if self._dmode == _GROUP:
            target = self._next
            self._flush_wanted.set()
            with self._durable_changed:
                while self._durable < target and self._error is None:
                    self._durable_changed.wait(0.1)
                    self._flush_wanted.set()
            self._raise_background_error()
        else:
            self._write_out(writer, sync=True)

    def close(self) -> None:
        """Make everything durable, stop the background threads, release the lock."""
        if self._closed:
            return
        self._refuse_appends = True
        if self.mode == "r":
            self._closed = True
            return
        writer = self._writer
        assert writer is not None
        errors: list[BaseException] = []
        try:
            if self._flusher is not None:
                self._closed = True
                self._flush_wanted.set()
                self._flusher.join()
            if not self._wal_failed:
                with writer.lock:
                    writer.drain()
                writer.sync()
        except BaseException as exc:
            errors.append(exc)
        self._closed = True
        if self._committer is not None:
            self._committer.close()
        writer.close()
        os.close(self._lock_fd)
        self._lock_fd = -1
        _open_writers.discard(self)
        if errors:
            raise errors[0]
        self._raise_background_error()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TraceClosed(f"trace {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode == "r":
            raise TraceReadOnly(f"trace {self.path} was opened read-only (mode='r')")
        self._raise_background_error()

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._next

    @property
    def committed(self) -> int:
        """How many events the sealed Zarr body holds (the rest are in the write-ahead tail)."""
        return self._committed

    def code_table(self, column: Literal["kind", "asset", "source"]) -> list[Any]:
        """The names behind the codes of the ``kind``, ``asset`` or ``source`` column
        (kinds as ``(name, version)``)."""
        tables: dict[str, list[Any]] = {
            "kind": self._kinds,
            "asset": self._assets,
            "source": self._sources,
        }
        return list(tables[column])

    def _decoder(self, code: int) -> Callable[[bytes], Event]:
        decoders = self._decoders
        while len(decoders) <= code:
            name, version = self._kinds[len(decoders)]
            decoders.append(self._codec.decoder(name, version))
        return decoders[code]

    def _decode_parts(self, seq: int, envelope: bytes, at: int, payload: bytes) -> Event:
        recorded, ts, _, kind, _, _, _ = ENV.unpack_from(envelope, at)
        if recorded != seq:
            raise TraceCorrupted(f"trace {self.path}: the record at {seq} says it is {recorded}")
        try:
            event = self._decoder(kind)(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, IndexError) as exc:
            raise TraceCorrupted(
                f"trace {self.path}: event {seq} cannot be decoded ({exc})"
            ) from None
        return stamp(event, seq, ts)

    def _from_memory(self, seq: int) -> Event:
        i = seq - self._mem_start
        return self._decode_parts(seq, self._heads[i], 4, self._payloads[i])

    def _block(
        self, seq: int, span: int, committed: int | None = None
    ) -> tuple[int, int, list[bytes], int]:
        """A block of stored records holding ``seq`` (which is older than the memory ring):
        ``(start, stop, items, at)``, the envelope of ``items[i]`` (event ``start + i``) at
        offset ``at`` and its payload right after. From the body when sealed (``span`` events,
        a multiple of the record chunk), else from the event's write-ahead segment. Callers
        reading a range pass one ``committed`` snapshot, so tiers cannot shift under them."""
        cache = self._block_cache
        if cache is not None and cache[0] <= seq < cache[1]:
            return cache
        for _attempt in range(3):
            if committed is None:
                committed = self._committed
            if seq < committed:
                start = seq - seq % span
                stop = min(start + span, committed)
                block = (start, stop, self._body.records(start, stop), 0)
                break
            start = seq - seq % self._unit
            for sealed in [k for k in self._segments if k + self._unit <= self._committed]:
                del self._segments[sealed]
            records = self._segments.get(start)
            if records is None or seq - start >= len(records):
                try:
                    records = scan_segment(self.path / "wal" / segment_name(start)).records
                except FileNotFoundError:
                    # Sealed and removed since we last looked: the body has it now.
                    self._raise_committed(int(read_meta(self.path)["committed"]))
                    committed = min(self._committed, start + self._unit)
                    continue
                self._segments[start] = records
            stop = min(start + len(records), self._mem_start)
            if seq >= stop:
                raise TraceCorrupted(
                    f"trace {self.path}: event {seq} is neither in the body, nor in its "
                    f"write-ahead segment ({len(records)} events), nor in memory"
                )
            block = (start, stop, records, 4)
            break
        else:
            raise TraceError(f"trace {self.path} changed too fast to read event {seq}")
        self._block_cache = block
        return block

    def iter(self, start: int = 0, stop: int | None = None) -> Iterator[Event]:
        """Stream events ``start..stop-1`` (default: all), reading stored events a block at a
        time (bounded memory)."""
        self._check_open()
        stop = len(self) if stop is None else min(stop, len(self))
        seq = max(start, 0)
        decode = self._decode_parts
        while seq < stop:
            if seq >= self._mem_start:
                yield self._from_memory(seq)
                seq += 1
                continue
            block_start, block_stop, items, at = self._block(seq, self._iter_span)
            end = min(block_stop, stop)
            skip = at + ENVELOPE_SIZE
            for i in range(seq - block_start, end - block_start):
                item = items[i]
                yield decode(block_start + i, item, at, item[skip:])
            seq = end

    def __iter__(self) -> Iterator[Event]:
        return self.iter()

    def record_blocks(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, int, int, Sequence[bytes], int]]:
        """Low level, for folds that decode events themselves: the stored records of events
        ``start..stop-1``, a block at a time, as ``(first, lo, hi, items, at)``: event
        ``seq`` in ``lo..hi-1`` is ``items[seq - first]``, its 42-byte envelope (``ENV``) at
        offset ``at`` and its MessagePack payload right after."""
        self._check_open()
        stop = len(self) if stop is None else min(stop, len(self))
        seq = max(start, 0)
        while seq < stop:
            if seq >= self._mem_start:
                lo, hi = seq - self._mem_start, stop - self._mem_start
                items = [
                    h + p for h, p in zip(self._heads[lo:hi], self._payloads[lo:hi], strict=True)
                ]
                yield seq, seq, stop, items, 4
                return
            first, block_stop, block, at = self._block(seq, self._iter_span)
            end = min(block_stop, stop)
            yield first, seq, end, block, at
            seq = end

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        self._check_open()
        n = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(n)
            if step == 1:
                return list(self.iter(start, stop))
            return [self[i] for i in range(start, stop, step)]
        if not isinstance(index, int):
            raise TypeError(f"trace indices are ints or slices, not {type(index).__name__}")
        seq = index + n if index < 0 else index
        if not 0 <= seq < n:
            raise IndexError(f"seq {index} is out of range for a trace of {n} events")
        if seq >= self._mem_start:
            return self._from_memory(seq)
        block_start, _, items, at = self._block(seq, self._record_chunk)
        item = items[seq - block_start]
        return self._decode_parts(seq, item, at, item[at + ENVELOPE_SIZE :])

    def tail(
        self,
        n: int = 10,
        kinds: Iterable[str | type[Event]] | None = None,
        asset: str | None = None,
    ) -> list[Event]:
        """The last ``n`` events (oldest first), only of ``kinds`` and ``asset`` if given."""
        self._check_open()
        if n <= 0:
            return []
        codes: set[int] | None = None
        if kinds is not None:
            names = {k if isinstance(k, str) else k.kind for k in kinds}
            codes = {code for code, (name, _) in enumerate(self._kinds) if name in names}
            if not codes:
                return []
        asset_code: int | None = None
        if asset is not None:
            if asset not in self._asset_codes:
                return []
            asset_code = self._asset_codes[asset]
        if codes is None and asset_code is None:
            return list(self.iter(max(0, len(self) - n)))
        found: list[list[Event]] = []  # newest block first
        count = 0
        if self._heads:
            table = self._head_table(self._heads)
            rows = np.flatnonzero(self._match(table["kind"], table["asset"], codes, asset_code))
            rows = rows[len(rows) - n :] if len(rows) > n else rows
            found.append([self._from_memory(self._mem_start + int(i)) for i in rows])
            count += len(rows)
        hi = self._mem_start
        committed = min(self._committed, hi)  # one snapshot: the committer may move on
        kind_col: np.ndarray[Any, Any] | None
        asset_col: np.ndarray[Any, Any] | None
        while count < n and hi > 0:
            if hi > committed:  # unsealed, older than the ring: its segment
                start, stop, items, at = self._block(hi - 1, self._unit, committed)
                lo = max(start, committed)
                hi = min(hi, stop)
                table = self._envelopes(items[lo - start : hi - start], at)
                kind_col, asset_col = table["kind"], table["asset"]
            else:
                lo = max(0, hi - self._unit)
                kind_col = self._body.column("kind", lo, hi) if codes is not None else None
                asset_col = self._body.column("asset", lo, hi) if asset_code is not None else None
            rows = np.flatnonzero(self._match(kind_col, asset_col, codes, asset_code)) + lo
            rows = rows[len(rows) - (n - count) :] if len(rows) > n - count else rows
            found.append([self[int(seq)] for seq in rows])
            count += len(rows)
            hi = lo
        return [event for block in reversed(found) for event in block]

    @staticmethod
    def _envelopes(items: list[bytes], at: int) -> np.ndarray[Any, Any]:
        """The envelopes of stored records, as a table (ENV_DTYPE)."""
        return np.frombuffer(
            b"".join([item[at : at + ENVELOPE_SIZE] for item in items]), dtype=ENV_DTYPE
        )

    @staticmethod
    def _head_table(heads: list[bytes]) -> np.ndarray[Any, Any]:
        return np.frombuffer(b"".join(heads), dtype=HEAD_DTYPE)

    @staticmethod
    def _match(
        kind_col: np.ndarray[Any, Any] | None,
        asset_col: np.ndarray[Any, Any] | None,
        codes: set[int] | None,
        asset_code: int | None,
    ) -> np.ndarray[Any, Any]:
        mask: Any = True
        if codes is not None and kind_col is not None:
            mask = np.isin(kind_col, np.fromiter(codes, dtype=np.int64))
        if asset_code is not None and asset_col is not None:
            mask = mask & (asset_col == asset_code)
        return np.asarray(mask, dtype=bool)

    def column(self, name: str) -> np.ndarray[Any, Any]:
        """One envelope column for every event, as a numpy array.

        ``kind``, ``asset`` and ``source`` hold codes (see ``code_table``); ``exchange_ts`` holds
        ``NO_EXCHANGE_TS`` where the event had none; ``cause`` holds the causing seq, or -1.
        """
        self._check_open()
        if name not in COLUMNS:
            raise KeyError(f"no envelope column {name!r}; columns are {', '.join(COLUMNS)}")
        committed = min(self._committed, self._mem_start)  # may advance meanwhile
        parts = [self._body.column(name, 0, committed)]
        seq = committed
        while seq < self._mem_start:  # unsealed and older than the ring
            start, stop, items, at = self._block(seq, self._unit, committed)
            stop = min(stop, self._mem_start)
            parts.append(self._envelopes(items[seq - start : stop - start], at)[name])
            seq = stop
        if self._heads:
            parts.append(self._head_table(self._heads)[name])
        return np.concatenate(parts)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} events"
        return f"<Trace {str(self.path)!r} mode={self.mode!r} {state}>"
