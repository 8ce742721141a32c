"""``Trace``: the append-only event log, one directory holding a Zarr body and a write-ahead tail.

Layout of a trace directory::

    zarr.json        Zarr v3 group metadata; attributes["eventsrc"] is the commit marker:
                     format and version, committed length, unit sizes, and the code tables
                     (kind names and schema versions, asset symbols, sources)
    seq/ ts/ exchange_ts/ kind/ asset/ source/ cause/ record/      the body (see body.py)
    wal/<seq>.wal    write-ahead segments of the events not yet in the body (see segment.py)
    recovered/       bytes a writer cut off the end of a segment at open, kept (recovery.py)
    LOCK             the writer's lock (flock), holding who took it

Durability contract:

- ``append(event)`` returns the event's seq. With ``durability="sync"`` the event is on disk
  (fsync) before it returns; ``extend(events)`` makes the whole batch durable with one fsync.
- With ``"group"`` a background thread writes and fsyncs pending events at least every
  ``group_interval`` seconds (10 ms by default; measured here at 1M events, 5 ms costs ~8% of
  the append rate and 25 ms gains ~3%); ``flush()`` waits until everything appended so far is
  durable.
- With ``"none"`` nothing is promised until ``flush()`` or ``close()``.
- A writer makes durable what it finds when it opens the trace (it fsyncs the unsealed
  write-ahead segments): ``durable`` counts those events.
- A process killed at any instant leaves a trace that opens, whose events are a dense prefix
  ``0..n-1`` containing every event acknowledged as durable, with no torn record: a torn frame
  at the end of the write-ahead segment (the last write, never acknowledged) is cut off by the
  next writer, after copying its bytes to ``recovered/``; the trace records that as a
  TraceRecovered event, and ``trace.recovery`` says what was found. The same goes for a last
  frame that is whole but fails its checksum (damage: it may hold acknowledged events, and
  its bytes are kept for that reason). Readers report such a tail and leave it. Damage
  anywhere else, or a missing segment, raises TraceCorrupted naming where; nothing is dropped.

One writer at a time: mode "a" or "w" takes an exclusive lock, and a second writer gets
TraceLocked naming the holder. Any number of readers (mode "r", in any process) may read while
it is written; a reader sees the events durable or written when it opened or last ``refresh()``-ed.

A Trace object is used from one thread (the engine's single writer); its background threads
(group commit, body committer) are its own and stop with ``close()``.

``Trace`` is a facade over parts that each own one thing: the code tables (tables.py), the
record layout (record.py), reading records across the tiers (reader.py: ``records()``),
appending (appender.py, writers only), opening and crash recovery (recovery.py), and beneath
them the write-ahead segment, the body, the commit marker and the committer.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, overload

import msgspec
import numpy as np

from eventsrc.clock import TimeSource, WallClock
from eventsrc.codec import Codec, stamp
from eventsrc.errors import (
    EventsrcError,
    TraceClosed,
    TraceCorrupted,
    TraceError,
    TraceExists,
    TraceNotFound,
    TraceReadOnly,
    TraceStorageError,
)
from eventsrc.events import REGISTRY, Event, EventRegistry, TraceRecovered
from eventsrc.trace.appender import DURABILITY, Appender
from eventsrc.trace.body import COLUMNS, body_metadata, check_appendable
from eventsrc.trace.committer import seal_tail
from eventsrc.trace.files import fsync_all
from eventsrc.trace.integrity import Integrity, check_trace
from eventsrc.trace.marker import create, read_meta, take_lock
from eventsrc.trace.reader import RecordReader, Ring
from eventsrc.trace.record import Record, split_records
from eventsrc.trace.recovery import (
    Recovery,
    Unsealed,
    drop_sealed_segments,
    read_unsealed,
    set_aside,
    tail_of,
    wal_state,
)
from eventsrc.trace.tables import CodeTables, Column

if TYPE_CHECKING:
    from zarr.abc.store import Store

    from eventsrc.trace.store import SealedBody

__all__ = ["Durability", "Mode", "Recovery", "Trace"]

log = logging.getLogger("eventsrc.trace")

DEFAULT_UNIT = 32768
DEFAULT_RECORD_CHUNK = 4096
IN_MEMORY = 8192
"""The most recent events are kept in memory (between IN_MEMORY and twice as many), so tail()
rarely reads a file; older ones are read back from the write-ahead segment or the body."""

Durability = Literal["sync", "group", "none"]
Mode = Literal["r", "a", "w"]

_open_writers: weakref.WeakSet[Trace] = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:
    for trace in list(_open_writers):
        with contextlib.suppress(Exception):
            trace.close()


class Trace:
    """An append-only, Zarr-backed event log. Open one with ``Trace.open``."""

    path: Path
    mode: Mode
    durability: Durability
    recovery: Recovery
    registry: EventRegistry

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Mode = "r",
        durability: Durability = "sync",
        *,
        clock: TimeSource | None = None,
        registry: EventRegistry = REGISTRY,
        unit: int = DEFAULT_UNIT,
        record_chunk: int = DEFAULT_RECORD_CHUNK,
        group_interval: float = 0.01,
        in_memory: int = IN_MEMORY,
    ) -> Trace:
        """Open the trace at ``path``.

        - ``mode="r"``: read an existing trace (any number of readers, while it is written).
        - ``mode="a"``: append to the trace, creating it if there is none.
        - ``mode="w"``: create a new trace; an existing one is never overwritten (TraceExists).

        ``unit`` (events per body chunk) and ``record_chunk`` (events per chunk of the record
        column) apply when a trace is created; an existing trace keeps its own. ``clock`` stamps
        ``ts`` on append (the wall clock by default). ``in_memory``: how many of the newest
        events a writer keeps in memory for cheap reads (between it and twice as many).
        """
        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', not {mode!r}")
        if durability not in DURABILITY:
            raise ValueError(f"durability must be 'sync', 'group' or 'none', not {durability!r}")
        if unit <= 0 or record_chunk <= 0 or unit % record_chunk:
            raise ValueError(
                f"unit ({unit}) must be a positive multiple of record_chunk ({record_chunk})"
            )
        if group_interval <= 0:
            raise ValueError(f"group_interval must be > 0 seconds, not {group_interval}")
        if in_memory < 2:
            raise ValueError(f"in_memory must be at least 2 events, not {in_memory}")
        root = Path(path)
        trace = cls.__new__(cls)
        trace.path = root
        trace.mode = mode
        trace.durability = durability
        trace.registry = registry
        trace.recovery = Recovery()
        trace._closed = False
        trace._codec = Codec(registry)
        trace._decoders = []
        trace._appender = None
        trace._in_memory = in_memory
        trace._writer_options = {
            "durability": durability,
            "clock": clock,
            "registry": registry,
            "group_interval": group_interval,
            "in_memory": in_memory,
        }
        try:
            if mode == "r":
                trace._open_reader()
            else:
                trace._open_writer(unit, record_chunk, clock or WallClock(), group_interval)
        except TraceError:
            raise
        except OSError as exc:  # the file system refused: read-only, full, permissions
            doing = "read" if mode == "r" else "write"
            where = f" ({exc.filename})" if exc.filename else ""
            raise TraceStorageError(
                f"trace {root}: cannot open it to {doing}: {exc.strerror or exc}{where}"
            ) from exc
        return trace

    @classmethod
    def open_store(
        cls,
        source: str | os.PathLike[str] | Store | SealedBody,
        *,
        storage_options: dict[str, Any] | None = None,
        sealed_only: bool = False,
        registry: EventRegistry = REGISTRY,
    ) -> Trace:
        """Open the SEALED body of a trace read-only, from any Zarr 3 store (see store.py).

        ``source``: a path or URL (``file://``, a trace directory, ``zip://PATH`` or a ``.zip``
        path, ``memory://...``, ``s3://bucket/prefix`` and any other fsspec URL; their
        ``storage_options``, e.g. ``{"endpoint_url": ...}``, go to fsspec), a
        ``zarr.abc.store.Store``, or a ``SealedBody``. The trace reads only its sealed events
        (``len(trace) == trace.committed``): one that also holds events not sealed yet (a
        local trace's write-ahead segments) is refused with TraceError, unless
        ``sealed_only=True`` (then those are left out; ``Trace.open`` reads them all). It
        never changes; ``check()`` is for local traces (``Trace.open``).
        """
        from eventsrc.trace.store import open_body

        body, unsealed = open_body(source, storage_options)
        meta = body.marker()
        committed = int(meta["committed"])
        if unsealed is not None and not sealed_only:
            raise TraceError(
                f"trace {body.where} holds events that are not sealed ({unsealed}); open it "
                f"with Trace.open to read them all, or with sealed_only=True to read only its "
                f"{committed} sealed events"
            )
        trace = cls.__new__(cls)
        trace.path = Path(body.where)
        trace.mode = "r"
        trace.durability = "none"
        trace.registry = registry
        trace.recovery = Recovery()
        trace._closed = False
        trace._codec = Codec(registry)
        trace._decoders = []
        trace._appender = None
        trace._in_memory = IN_MEMORY
        trace._tables = CodeTables.from_marker(meta, f"trace {body.where}")
        trace._sealed_body = body
        trace._reader = RecordReader(
            trace.path,
            int(meta["unit"]),
            int(meta["record_chunk"]),
            committed,
            {},
            Ring(committed, [], []),
            body=body,
        )
        return trace

    _writer_options: dict[str, Any] | None = None
    """How a writer was opened (``reopen`` opens it again alike)."""
    _sealed_body: SealedBody | None = None
    """The body a trace opened with ``open_store`` reads (None: a trace directory)."""
    _closed: bool
    _codec: Codec
    _decoders: list[Callable[[bytes], Event]]
    _appender: Appender | None
    _in_memory: int
    _lock_fd: int
    _tables: CodeTables
    _reader: RecordReader

    # -- opening ----------------------------------------------------------------------------

    def _install(self, meta: dict[str, Any], tables: CodeTables, unsealed: Unsealed) -> None:
        """Take in the marker, code tables and unsealed records that opening found."""
        committed = int(meta["committed"])
        previous: RecordReader | None = getattr(self, "_reader", None)  # refresh() keeps its body
        ring = Ring(committed, *split_records(unsealed.records))
        ring.trim(self._in_memory)
        self._tables = tables
        self._decoders = []
        self._reader = RecordReader(
            self.path,
            int(meta["unit"]),
            int(meta["record_chunk"]),
            committed,
            {scan.start: (scan.first, scan.records) for scan in unsealed.scans},
            ring,
            body=None if previous is None else previous.body,
        )

    def _open_reader(self) -> None:
        meta = read_meta(self.path)
        body_metadata(self.path, meta["unit"], meta["record_chunk"])
        self._read_view()

    def _read_view(self) -> None:
        for _attempt in range(50):
            meta = read_meta(self.path)
            tables = CodeTables.from_marker(meta, f"trace {self.path}")
            before = wal_state(self.path)
            try:
                unsealed = read_unsealed(self.path, meta["committed"], meta["unit"], tables)
            except FileNotFoundError:
                continue  # the writer committed and removed a segment meanwhile
            except TraceCorrupted:
                # A writer may have moved on under us (appended, rotated, sealed): look again.
                if (
                    read_meta(self.path)["committed"] != meta["committed"]
                    or wal_state(self.path) != before
                ):
                    continue
                raise
            if read_meta(self.path)["committed"] != meta["committed"]:
                continue
            self._install(meta, tables, unsealed)
            self._report_pending(unsealed)
            return
        raise TraceError(f"trace {self.path} changed too fast to read a consistent view")

    def _report_pending(self, unsealed: Unsealed) -> None:
        """Readers: say what is unreadable at the end of the last segment (left alone)."""
        tails = [] if unsealed.tail is None else [tail_of(unsealed.tail)]
        if tails != self.recovery.tails:
            for tail in tails:
                how = "is torn (a writer mid-write, or a crash)" if tail.torn else "is damaged"
                log.log(
                    logging.INFO if tail.torn else logging.WARNING,
                    "trace %s: the end of write-ahead segment %s %s: %s; read up to byte %d, "
                    "the next writer sets the rest aside",
                    self.path,
                    tail.segment,
                    how,
                    tail.reason,
                    tail.offset,
                )
        self.recovery.tails = tails

    def refresh(self) -> None:
        """Readers: catch up with what the writer has written since open (or the last refresh)."""
        self._check_open()
        if self.mode == "r" and self._sealed_body is None:  # a sealed body never changes
            self._read_view()

    def _open_writer(
        self, unit: int, record_chunk: int, clock: TimeSource, group_interval: float
    ) -> None:
        root = self.path
        lock_fd = -1
        if self.mode == "w" or not root.exists() or (root.is_dir() and not any(root.iterdir())):
            try:
                lock_fd = create(root, unit, record_chunk)
            except TraceExists:
                if self.mode == "w":
                    raise
        if lock_fd < 0:
            read_meta(root)  # NotATrace / TraceVersionError before taking the lock
            lock_fd = take_lock(root)
        try:
            self._recover(lock_fd, clock, group_interval)
        except BaseException:
            if self._appender is not None:
                with contextlib.suppress(Exception):
                    self._appender.close()
            os.close(lock_fd)
            raise

    def _recover(self, lock_fd: int, clock: TimeSource, group_interval: float) -> None:
        meta = read_meta(self.path)
        committed, unit = int(meta["committed"]), int(meta["unit"])
        check_appendable(self.path, body_metadata(self.path, unit, int(meta["record_chunk"])))
        drop_sealed_segments(self.path, committed, unit)
        tables = CodeTables.from_marker(meta, f"trace {self.path}")
        unsealed = read_unsealed(self.path, committed, unit, tables)
        if unsealed.tail is not None:
            set_aside(self.path, unsealed.tail, self.recovery)
        # What the last writer wrote but could not fsync (it died, or its fsync failed) is
        # read back from the page cache: make it durable before counting it as such.
        fsync_all([scan.path for scan in unsealed.scans])
        self._install(meta, tables, unsealed)
        # The wall clock's method only wraps time.time_ns; call that directly on the hot path.
        now = time.time_ns if type(clock) is WallClock else clock.now_ns
        self._appender = Appender(
            self._reader,
            tables,
            self._codec,
            lock_fd,
            durability=self.durability,
            now=now,
            group_interval=group_interval,
            in_memory=self._in_memory,
        )
        self.recovery.resealed_units += self._appender.reseal(committed)
        self._record_recovery()
        self._lock_fd = lock_fd
        _open_writers.add(self)

    def _record_recovery(self) -> None:
        """Record what was set aside as events, durably, before anything else is appended."""
        recovery = self.recovery
        for tail, kept in zip(recovery.tails, recovery.set_aside, strict=True):
            event = TraceRecovered(
                segment=tail.segment,
                offset=tail.offset,
                dropped_bytes=tail.size,
                torn=tail.torn,
                set_aside=kept,
                reason=tail.reason,
                source="eventsrc.trace",
            )
            recovery.recorded.append(self.append(event))
        if recovery.recorded:
            self.flush()

    # -- appending --------------------------------------------------------------------------

    def append(self, event: Event) -> int:
        """Append one event; returns its seq (see the module docstring for when it is durable).

        Raises EventNotSerializable (or UnknownEventKind) before anything is written if the
        event cannot be recorded.
        """
        appender = self._appender
        if appender is None:
            self._refuse_write()
        return appender.append(event)

    def extend(self, events: Iterable[Event]) -> range:
        """Append events in order, as one batch: if any cannot be recorded, none is.
        With durability="sync" the batch is durable (one fsync) when this returns."""
        appender = self._appender
        if appender is None:
            self._refuse_write()
        return appender.extend(events)

    def _refuse_write(self) -> NoReturn:
        self._check_open()
        raise TraceReadOnly(f"trace {self.path} was opened read-only (mode='r')")

    def flush(self) -> None:
        """Make every event appended so far durable (waits for the group commit if any)."""
        self._check_open()
        if self._appender is not None:
            self._appender.flush()

    def close(self) -> None:
        """Make everything durable, stop the background threads, release the lock."""
        if self._closed:
            return
        self._closed = True
        appender = self._appender
        if appender is None:
            return
        try:
            appender.close()
            self._seal_tail()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1
            _open_writers.discard(self)

    def _seal_tail(self) -> None:
        """Seal the last, partial unit, so a closed trace is columnar to its end (readable
        from its columns, exportable whole, opened without parsing its segment). Everything
        is durable in the segment already: a failure here costs only that, and is logged."""
        try:
            seal_tail(self.path, len(self))
        except (OSError, TraceError) as exc:
            log.warning(
                "trace %s: its last %d events stay in the write-ahead segment only "
                "(sealing them failed: %s)",
                self.path,
                len(self) - self.committed,
                exc,
            )

    def reopen(self) -> Trace:
        """A writer whose appends failed (a full or read-only disk, an I/O error) takes no
        more events (a frame written after a failed one would read as damage); once the file
        system takes writes again, ``reopen`` closes this object (releasing its lock; the
        failure it reports is not raised again) and opens the trace again for appending,
        with the same options. Opening runs recovery: events whose write was cut short are
        set aside and a TraceRecovered event records it (see the module docstring), so the
        new trace holds the first ``durable`` events of this one, maybe some after them, and
        nothing else. Raises what ``Trace.open`` raises if it cannot be opened yet
        (TraceStorageError while the disk still refuses), and TraceNotFound if the trace is
        gone (it is never created afresh). Read what is not durable (``iter(durable)``)
        before: this object is closed afterwards, whether the reopening succeeds or not."""
        options = self._writer_options
        if self.mode == "r" or options is None:
            raise TraceReadOnly(f"trace {self.path} was not opened for writing: nothing to reopen")
        if not self._closed:
            try:
                self.close()
            except (EventsrcError, OSError) as exc:  # the failure that made the caller reopen
                log.info("trace %s: closed for reopening: %s", self.path, exc)
        if not self.path.is_dir():
            raise TraceNotFound(f"trace {self.path} is gone: it cannot be reopened")
        return Trace.open(self.path, "a", **options)

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TraceClosed(f"trace {self.path} is closed")

    # -- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._reader.ring.end

    @property
    def sealed_body(self) -> SealedBody | None:
        """The sealed body a trace opened with ``open_store`` reads; None for a trace
        directory opened with ``open``."""
        return self._sealed_body

    @property
    def durable(self) -> int:
        """How many events are known to be on disk, fsynced: the first ``durable`` events
        survive a crash or a failed write (see the module docstring for when an append
        becomes durable); the events appended since may not. A reader: all it reads."""
        appender = self._appender
        return len(self) if appender is None else min(appender.durable, len(self))

    @property
    def committed(self) -> int:
        """How many events the sealed Zarr body holds (the rest are in the write-ahead tail)."""
        return self._reader.committed

    def code_table(self, column: Column) -> list[Any]:
        """The names behind the codes of the ``kind``, ``asset`` or ``source`` column
        (kinds as ``(name, version)``)."""
        return self._tables.names(column)

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[Record]:
        """The stored records of events ``start..stop-1`` (default: all), for folds that
        decode events themselves: ``(seq, ts, kind, payload)`` with ``kind`` a code of
        ``code_table("kind")`` and ``payload`` the event's MessagePack payload. Each record's
        stored seq is checked (TraceCorrupted if it is not the event asked for)."""
        self._check_open()
        n = len(self)
        stop = n if stop is None else min(stop, n)
        return self._reader.records(max(start, 0), stop)

    def records_at(self, seqs: Sequence[int] | np.ndarray[Any, Any]) -> Iterator[Record]:
        """The stored records (as ``records`` gives them) of the events ``seqs``, ascending:
        for readers that chose events from the envelope columns; only these records are
        split out of the blocks that hold them."""
        self._check_open()
        wanted = [int(s) for s in seqs]  # (numpy integers, say: seqs are plain ints)
        n = len(self)
        if wanted and not 0 <= wanted[0] <= wanted[-1] < n:
            raise IndexError(f"trace {self.path}: seqs {wanted[0]}..{wanted[-1]} not in 0..{n - 1}")
        return self._reader.records_at(wanted)

    def _decoder(self, code: int) -> Callable[[bytes], Event]:
        decoders = self._decoders
        while len(decoders) <= code:
            name, version = self._tables.kinds[len(decoders)]
            decoders.append(self._codec.decoder(name, version))
        return decoders[code]

    def decode(self, record: Record) -> Event:
        """The event a record of ``records()`` holds, stamped with its seq and ts (a payload
        that cannot be decoded is TraceCorrupted): for readers that choose records before
        decoding them."""
        seq, ts, kind, payload = record
        try:
            event = self._decoder(kind)(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, IndexError) as exc:
            raise TraceCorrupted(
                f"trace {self.path}: event {seq} cannot be decoded ({exc})"
            ) from None
        return stamp(event, seq, ts)

    def iter(self, start: int = 0, stop: int | None = None) -> Iterator[Event]:
        """Stream events ``start..stop-1`` (default: all), reading stored events a block at a
        time (bounded memory)."""
        decode = self.decode
        for record in self.records(start, stop):
            yield decode(record)

    def __iter__(self) -> Iterator[Event]:
        return self.iter()

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
        return self.decode(self._reader.record(seq))

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
            codes = {code for code, (name, _) in enumerate(self._tables.kinds) if name in names}
            if not codes:
                return []
        asset_code: int | None = None
        if asset is not None:
            if asset not in self._tables.asset_codes:
                return []
            asset_code = self._tables.asset_codes[asset]
        if codes is None and asset_code is None:
            return list(self.iter(max(0, len(self) - n)))
        return [self[seq] for seq in self._reader.last_matching(n, codes, asset_code)]

    def check(self) -> Integrity:
        """Read every sealed chunk and write-ahead segment from disk and report what is wrong
        (see integrity.py): in any mode, reporting corruption rather than raising it."""
        self._check_open()
        if self._sealed_body is not None:
            raise TraceError(
                f"trace {self.path}: check() reads a trace directory; this one was opened "
                "with open_store (read its events to check them, or export it to a directory)"
            )
        return check_trace(self.path, self.decode)

    def column(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray[Any, Any]:
        """One envelope column, as a numpy array: of every event, or of events
        ``start..stop-1`` (clipped to the trace, as a slice is).

        ``kind``, ``asset`` and ``source`` hold codes (see ``code_table``); ``exchange_ts`` holds
        ``NO_EXCHANGE_TS`` where the event had none; ``cause`` holds the causing seq, or -1.
        """
        self._check_open()
        if name not in COLUMNS:
            raise KeyError(f"no envelope column {name!r}; columns are {', '.join(COLUMNS)}")
        n = len(self)
        start, stop, _ = slice(start, stop).indices(n)
        return self._reader.column(name, start, max(start, stop))

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} events"
        return f"<Trace {str(self.path)!r} mode={self.mode!r} {state}>"
