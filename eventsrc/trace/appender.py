"""The appender: everything only a writer has. It stages each event as a record (encoding,
code definitions, the envelope), queues it for the write-ahead segment and the memory ring,
makes it durable when the durability mode says (on the appending thread, or on its own
group-commit thread), hands each complete unit to the committer, and holds appends back when
the committer falls behind.

A failed write stops all further writing (a frame written after a partial one would read as
damage, not a torn tail); the trace then refuses appends, and reopening it recovers what was
written.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Callable, Iterable

import msgspec

from eventsrc.codec import Codec
from eventsrc.errors import EventNotSerializable, TraceClosed, TraceError, UnknownEventKind
from eventsrc.events import REGISTRY, Event, EventRegistry, TraceRecovered
from eventsrc.trace.committer import Committer
from eventsrc.trace.reader import RecordReader
from eventsrc.trace.record import NO_CAUSE, NO_EXCHANGE_TS, define_record, pack_head
from eventsrc.trace.segment import SegmentWriter
from eventsrc.trace.tables import CodeTables, Table

__all__ = ["MAX_UNSEALED_UNITS", "Appender"]

log = logging.getLogger("eventsrc.trace")

MAX_UNSEALED_UNITS = 8
"""Appending waits for the committer when more units than this are not yet sealed."""
_DRAIN_AT = 4096
"""Pending pieces (two per event) the appending thread writes out itself ("group", "none")."""
_SYNC, _GROUP, _NONE = 0, 1, 2
DURABILITY = {"sync": _SYNC, "group": _GROUP, "none": _NONE}
_EXCHANGE_TS_MIN = NO_EXCHANGE_TS + 2  # the two lowest int64 values mean "none" and "missing"

Encoder = Callable[[Event], bytes]


class Appender:
    """A writer's appending machinery (see the module docstring)."""

    def __init__(
        self,
        reader: RecordReader,
        tables: CodeTables,
        codec: Codec,
        lock_fd: int,
        *,
        durability: str,
        now: Callable[[], int],
        group_interval: float,
        in_memory: int,
    ) -> None:
        self.root = reader.root
        self._where = reader.where
        self._reader = reader
        self._ring = reader.ring
        self._tables = tables
        self._codec = codec
        self._registry: EventRegistry = codec.registry
        self._now = now
        self._dmode = DURABILITY[durability]
        self._group_interval = group_interval
        self._in_memory = in_memory
        self._drain_at = min(_DRAIN_AT, in_memory)
        # every event older than the ring must be in a segment file
        assert self._drain_at // 2 < in_memory
        self._unit = reader.unit
        self._by_class: dict[type[Event], tuple[int, Encoder]] = {}
        self._defs: list[bytes] = []
        """Definition records made while staging, written before the event that needs them."""
        self.refusing = False
        """True when append must take the slow way, to raise (closed or failed)."""
        self.closed = False
        self._error: BaseException | None = None
        self._wal_failed = False
        end = self._ring.end
        self._unit_end = (end // self._unit + 1) * self._unit
        self._durable = end
        self._flush_wanted = threading.Event()
        self._durable_changed = threading.Condition()
        self._committer = Committer(self.root, lock_fd, self._unit_sealed, self._fail_committing)
        self._writer = SegmentWriter(
            self.root / "wal",
            (end // self._unit) * self._unit,
            sync_rotation=self._dmode != _NONE,
            retire_rotated=self._dmode == _GROUP,
            on_complete=self._segment_complete,
        )
        self._flusher: threading.Thread | None = None
        if self._dmode == _GROUP:
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"eventsrc-flush:{self.root.name}", daemon=True
            )
            self._flusher.start()

    def reseal(self, committed: int) -> int:
        """Hand the committer every complete unit past ``committed`` (found complete in the
        write-ahead segment but not sealed: a crash came between); returns how many."""
        units = range(committed // self._unit, self._ring.end // self._unit)
        for index in units:
            self._committer.submit(index)
        return len(units)

    # -- appending --------------------------------------------------------------------------

    def append(self, event: Event) -> int:
        if self.refusing:
            self._refuse()
        seq = self._ring.end
        head, payload = self._stage(event, seq)
        writer = self._writer
        if self._dmode == _GROUP:
            with writer.lock:  # the flusher drains the same pending list
                completed = self._put(writer, head, payload, seq)
        else:
            completed = self._put(writer, head, payload, seq)
            if self._dmode == _SYNC:
                self._write_out(writer, sync=True)
        if completed:
            self._hold_back()
        return seq

    def extend(self, events: Iterable[Event]) -> range:
        if self.refusing:
            self._refuse()
        first = self._ring.end
        marks = self._tables.mark(), len(self._defs)
        try:
            staged = [self._stage(event, seq) for seq, event in enumerate(events, first)]
        except BaseException:
            self._forget_codes(*marks)
            raise
        writer = self._writer
        ring = self._ring
        done = 0
        while done < len(staged):
            # Up to the end of the current unit at a time, so each unit is handed over whole.
            batch = staged[done : done + self._unit_end - ring.end]
            completed = False
            with writer.lock:
                for head, payload in batch:
                    completed = self._put(writer, head, payload, ring.end)
            done += len(batch)
            if completed:
                self._hold_back()
        if staged and self._dmode == _SYNC:
            self._write_out(writer, sync=True)
        return range(first, ring.end)

    def _put(self, writer: SegmentWriter, head: bytes, payload: bytes, seq: int) -> bool:
        """Queue one staged record; True if it completes a unit."""
        pending = writer.pending
        ring = self._ring
        completes = seq + 1 == self._unit_end
        try:
            if self._defs:
                pending.extend(self._defs)
                self._defs.clear()
            if completes:
                # Marked before the record is queued, so no drain (here, or the flusher's) can
                # write the frame that completes the segment before its successor exists.
                writer.rotate_after(2, seq + 1)
                self._unit_end += self._unit
            pending.extend((head, payload))  # one call: a record is never queued half
            ring.end = seq + 1
            ring.heads.append(head)
            ring.payloads.append(payload)
        except BaseException as exc:  # e.g. KeyboardInterrupt between two of these
            # What is queued is whole and will be written; appending more could reuse a seq.
            self._fail(exc, "an append (interrupted)")
            raise
        if len(pending) > self._drain_at:
            self._write_out(writer)
        if len(ring.heads) > 2 * self._in_memory:
            self._write_out(writer)  # everything older than the ring must be in its segment
            ring.trim(self._in_memory)
        return completes

    def _write_out(self, writer: SegmentWriter, sync: bool = False) -> None:
        """Drain (and fsync) the write-ahead segment; a failure stops all further writing."""
        target = self._ring.end
        if self._wal_failed:  # the flusher's write failed: no frame may follow it
            self.raise_if_failed()
            raise TraceError(
                f"{self._where}: writing the write-ahead segment failed; the trace takes no "
                "more events; reopen it to recover what was written"
            )
        try:
            writer.drain()
            if sync:
                writer.sync()
        except BaseException as exc:
            self._wal_failed = True
            self._fail(exc, "writing the write-ahead segment")
            raise TraceError(
                f"{self._where}: writing the write-ahead segment failed ({exc}); the trace "
                "takes no more events; reopen it to recover what was written"
            ) from exc
        if sync:
            self._made_durable(target)

    def _made_durable(self, target: int) -> None:
        with self._durable_changed:
            self._durable = max(self._durable, target)
            self._durable_changed.notify_all()

    @property
    def durable(self) -> int:
        """How many events are known to be on disk (fsynced): the first ``durable`` events
        survive a crash; the rest (appended since) may not."""
        return self._durable

    # -- staging ----------------------------------------------------------------------------

    def _stage(self, event: Event, seq: int) -> tuple[bytes, bytes]:
        """The written record (head, payload) of ``event`` at ``seq``; writes nothing.
        This is the hot path of every append: keep it lean."""
        kind = self._by_class.get(type(event))
        if kind is None:
            kind = self._define_kind(event, seq)
        try:
            payload = kind[1](event)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise EventNotSerializable(f"cannot encode {type(event).__qualname__}: {exc}") from None
        tables = self._tables
        asset = tables.asset_codes.get(event.asset)
        if asset is None:
            asset = self._define_name(Table.ASSET, event.asset, seq)
        source = tables.source_codes.get(event.source)
        if source is None:
            source = self._define_name(Table.SOURCE, event.source, seq)
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
            head = pack_head(payload, seq, self._now(), exchange_ts, kind[0], asset, source, cause)
        except (struct.error, ValueError, TypeError, OverflowError) as exc:
            raise EventNotSerializable(
                f"cannot record {type(event).__qualname__}: envelope field out of range ({exc})"
            ) from None
        return head, payload

    def _define_kind(self, event: Event, seq: int) -> tuple[int, Encoder]:
        cls = type(event)
        if not isinstance(event, Event):
            raise UnknownEventKind(f"{cls.__qualname__} is not an eventsrc event")
        if cls is TraceRecovered and cls not in self._registry:
            info = REGISTRY.info(cls)  # the trace records its own events with any registry
        else:
            info = self._registry.info(cls)
        key = (info.name, info.version)
        code = self._tables.kind_codes.get(key)
        if code is None:
            definition = self._tables.define(Table.KIND, info.name, info.version)
            self._defs.append(define_record(seq, definition))
            code = definition.code
        entry = (code, self._codec.encoder_for(info))
        self._by_class[cls] = entry
        return entry

    def _define_name(self, table: Table, name: object, seq: int) -> int:
        if table is Table.ASSET and name is not None and not isinstance(name, str):
            raise EventNotSerializable(f"asset must be a str or None, not {type(name)}")
        if table is Table.SOURCE and not isinstance(name, str):
            raise EventNotSerializable(f"source must be a str, not {type(name)}")
        definition = self._tables.define(table, name)  # type: ignore[arg-type]
        self._defs.append(define_record(seq, definition))
        return definition.code

    def _forget_codes(self, tables: tuple[int, int, int], defs: int) -> None:
        """Undo the code definitions a batch made before it failed to stage (and only those:
        definitions queued earlier still precede the events that use them)."""
        self._tables.forget(tables)
        kinds = tables[0]
        self._by_class = {c: e for c, e in self._by_class.items() if e[0] < kinds}
        del self._defs[defs:]

    # -- units and the committer ------------------------------------------------------------

    def _hold_back(self) -> None:
        """A unit is complete: wait for the committer if too many units are unsealed (memory
        holds every unsealed event, so do not run far ahead)."""
        limit = MAX_UNSEALED_UNITS * self._unit
        if self._ring.end - self._reader.committed > limit:
            writer = self._writer
            with writer.lock:
                self._write_out(writer)  # the committer must have been handed what we wait for
            self._wait_for_committer(self._ring.end - limit)

    def _segment_complete(self, start: int) -> None:
        """Called by the segment writer once the segment ending at ``start`` is all on disk."""
        self._committer.submit(start // self._unit - 1)

    def _unit_sealed(self, index: int) -> None:
        """Called from the committer's reader thread: unit ``index`` is in the body."""
        self._reader.raise_committed((index + 1) * self._unit)

    def _wait_for_committer(self, committed: int) -> None:
        reader = self._reader
        with reader.committed_changed:
            while reader.committed < committed:
                self.raise_if_failed()
                reader.committed_changed.wait(0.1)

    # -- durability -------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        writer = self._writer
        try:
            while not self._wal_failed:
                self._flush_wanted.wait(self._group_interval)
                self._flush_wanted.clear()
                stopping = self.closed
                with writer.lock:
                    if self._wal_failed:
                        return
                    target = self._ring.end
                    try:
                        writer.drain()
                    except BaseException:
                        # Said before the lock is let go: an append that drains by itself
                        # must not write a later frame after the one this lost.
                        self._wal_failed = self.refusing = True
                        raise
                    fd, retired = writer.fd, writer.take_retired()
                # fsync outside the lock, so appends go on meanwhile; rotated files are only
                # closed here, so neither fd can be closed under us.
                for old in retired:
                    os.fdatasync(old)
                    os.close(old)
                os.fdatasync(fd)
                self._made_durable(target)
                if stopping:
                    return
        except BaseException as exc:
            self._wal_failed = True
            self._fail(exc, "writing the write-ahead segment")
            with self._durable_changed:
                self._durable_changed.notify_all()

    def flush(self) -> None:
        """Make every event appended so far durable (waits for the group commit if any)."""
        self.raise_if_failed()
        writer = self._writer
        if self._dmode == _GROUP:
            target = self._ring.end
            self._flush_wanted.set()
            with self._durable_changed:
                while self._durable < target and self._error is None:
                    self._durable_changed.wait(0.1)
                    self._flush_wanted.set()
            self.raise_if_failed()
        else:
            self._write_out(writer, sync=True)

    def close(self) -> None:
        """Make everything durable, stop the background threads and the committer."""
        writer = self._writer
        errors: list[BaseException] = []
        self.refusing = True
        try:
            if self._flusher is not None:
                self.closed = True
                self._flush_wanted.set()
                self._flusher.join()
            if not self._wal_failed:
                with writer.lock:
                    target = self._ring.end
                    writer.drain()
                writer.sync()
                self._made_durable(target)
        except BaseException as exc:
            errors.append(exc)
        self.closed = True
        self._committer.close()
        writer.close()
        if errors:
            raise errors[0]
        self.raise_if_failed()

    # -- failures ---------------------------------------------------------------------------

    def _fail(self, exc: BaseException, doing: str) -> None:
        self._error = exc
        self.refusing = True
        log.error("%s: %s failed: %s", self._where, doing, exc)
        with self._reader.committed_changed:
            self._reader.committed_changed.notify_all()

    def _fail_committing(self, exc: BaseException) -> None:
        self._fail(exc, "sealing the body")

    def _refuse(self) -> None:
        if self.closed:
            raise TraceClosed(f"{self._where} is closed")
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise TraceError(
                f"{self._where}: a background write failed; events appended before it are "
                f"in the write-ahead segment up to the failure: {self._error}"
            ) from self._error
