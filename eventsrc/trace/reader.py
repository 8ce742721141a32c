"""Reading records back, whichever tier holds them: the sealed body, an unsealed write-ahead
segment, or the memory ring of the newest events.

``RecordReader.records(start, stop)`` yields ``(seq, ts, kind code, payload)`` for a range of
events across the tiers, checking each record's stored seq; everything that reads events
(iteration, indexing, replay, snapshots' fingerprints) goes through it, and it leaves the
layout of a record to record.py. Envelope queries (a column, the seqs ``tail`` wants) read the
same tiers without touching payloads.

Streaming reads take whole units of the body, at least ITER_BLOCK events per read (Zarr's
per-call overhead is ~1 ms, so small units would otherwise dominate); a single event is read
from one chunk of the record column. A writer's reader sees its tiers move as it appends
(the ring) and as its committer seals units (``committed``); callers reading a range take one
snapshot of ``committed`` so the tiers cannot shift under them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eventsrc.errors import TraceCorrupted, TraceError
from eventsrc.trace.body import BodyReader
from eventsrc.trace.marker import read_meta
from eventsrc.trace.record import Record, envelope_table, head_table, read_items, read_ring
from eventsrc.trace.segment import scan_segment, segment_name

__all__ = ["ITER_BLOCK", "RecordReader", "Ring"]

ITER_BLOCK = 32768

Block = tuple[int, int, Sequence[bytes], bool]
"""``(first, stop, items, prefixed)``: stored records of events ``first..stop-1``, event
``first + i`` in ``items[i]``; ``prefixed``: the records start with their length."""


class SealedColumns(Protocol):
    """What the reader needs of a sealed body: ranges of a column and of the record items."""

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]: ...

    def records(self, start: int, stop: int) -> list[bytes]: ...


class Ring:
    """The newest records in memory, as heads (length + envelope) and payloads of events
    ``start..end-1``: the writer appends to it, and reads of those events touch no file."""

    __slots__ = ("end", "heads", "payloads", "start")

    def __init__(self, start: int, heads: list[bytes], payloads: list[bytes]) -> None:
        self.start = start
        self.heads = heads
        self.payloads = payloads
        self.end = start + len(heads)

    def trim(self, keep: int) -> None:
        """Keep only the newest ``keep`` records."""
        drop = len(self.heads) - keep
        if drop > 0:
            del self.heads[:drop]
            del self.payloads[:drop]
            self.start += drop


class RecordReader:
    """The records of a trace across its tiers (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        unit: int,
        record_chunk: int,
        committed: int,
        segments: dict[int, tuple[int, list[bytes]]],
        ring: Ring,
        body: SealedColumns | None = None,
    ) -> None:
        """``body``: the body reader of an earlier view of the same trace, to reuse, or the
        sealed body of a trace in another store (store.py)."""
        self.root = root
        self.where = f"trace {root}"
        self.body: SealedColumns = BodyReader(root, record_chunk) if body is None else body
        self.unit = unit
        self.record_chunk = record_chunk
        self.committed = committed
        """How many events the sealed body holds."""
        self.committed_changed = threading.Condition()
        self.segments = segments
        """Records of unsealed segments (length-prefixed) as last scanned, by start seq: the
        seq of the first one kept (older ones the body holds need not be), and the records."""
        self.ring = ring
        self._span = unit * max(1, -(-ITER_BLOCK // unit))
        self._cached: Block | None = None

    def raise_committed(self, committed: int) -> None:
        with self.committed_changed:
            self.committed = max(self.committed, committed)
            self.committed_changed.notify_all()

    # -- records ----------------------------------------------------------------------------

    def records(self, start: int, stop: int) -> Iterator[Record]:
        """``(seq, ts, kind, payload)`` of events ``start..stop-1`` (within the trace)."""
        where = self.where
        seq = start
        while seq < stop:
            ring = self.ring
            if seq >= ring.start:
                yield from read_ring(ring.heads, ring.payloads, ring.start, seq, stop, where)
                return
            first, end, items, prefixed = self._block(seq, self._span)
            end = min(end, stop)
            yield from read_items(items, prefixed, first, seq, end, where)
            seq = end

    def records_at(self, seqs: Sequence[int]) -> Iterator[Record]:
        """The records of ``seqs`` (ascending, within the trace): sealed ones from runs of
        the record chunks that hold them (a chunk holding none is never read; a run's
        chunks are decompressed together, on a few threads), the rest from their segment
        or memory; only the records asked for are split out."""
        where = self.where
        chunk = self.record_chunk
        committed = self.committed  # one snapshot: the committer may move on
        i, n = 0, len(seqs)
        while i < n and seqs[i] < committed:
            first = seqs[i] - seqs[i] % chunk
            stop = first  # extend over consecutive chunks that hold a wanted seq
            j = i
            while j < n and seqs[j] < min(stop + chunk, committed) and stop - first < self._span:
                stop = min(stop + chunk, committed)
                j = bisect.bisect_left(seqs, stop, j)
            items = self.body.records(first, stop)
            for s in seqs[i:j]:
                yield from read_items(items, False, first, s, s + 1, where)
            i = j
        while i < n:
            seq = seqs[i]
            ring = self.ring
            if seq >= ring.start:
                for s in seqs[i:]:
                    yield from read_ring(ring.heads, ring.payloads, ring.start, s, s + 1, where)
                return
            first, end, block_items, prefixed = self._block(seq, self.record_chunk)
            j = bisect.bisect_left(seqs, end, i)
            for s in seqs[i:j]:
                yield from read_items(block_items, prefixed, first, s, s + 1, where)
            i = j

    def record(self, seq: int) -> Record:
        """The record of event ``seq`` (within the trace)."""
        ring = self.ring
        if seq >= ring.start:
            found = read_ring(ring.heads, ring.payloads, ring.start, seq, seq + 1, self.where)
        else:
            first, _, items, prefixed = self._block(seq, self.record_chunk)
            found = read_items(items, prefixed, first, seq, seq + 1, self.where)
        return next(found)

    def _block(self, seq: int, span: int, committed: int | None = None) -> Block:
        """A block of stored records holding ``seq`` (which is older than the ring): from the
        body when sealed (``span`` events, a multiple of the record chunk), else from the
        event's write-ahead segment."""
        cached = self._cached
        if cached is not None and cached[0] <= seq < cached[1]:
            return cached
        for _attempt in range(3):
            if committed is None:
                committed = self.committed
            if seq < committed:
                start = seq - seq % span
                stop = min(start + span, committed)
                block: Block = (start, stop, self.body.records(start, stop), False)
                break
            start = seq - seq % self.unit
            for sealed in [k for k in self.segments if k + self.unit <= self.committed]:
                del self.segments[sealed]
            first, records = self.segments.get(start, (start, None))
            if records is None or not first <= seq < first + len(records):
                try:
                    scan = scan_segment(
                        self.root / "wal" / segment_name(start),
                        skip_below=min(committed, seq),  # older events: in the body
                    )
                except FileNotFoundError:
                    # Sealed and removed since we last looked: the body has it now.
                    self.raise_committed(int(read_meta(self.root)["committed"]))
                    committed = min(self.committed, start + self.unit)
                    continue
                first, records = scan.first, scan.records
                self.segments[start] = (first, records)
            start = first
            stop = min(start + len(records), self.ring.start)
            if seq >= stop:
                raise TraceCorrupted(
                    f"{self.where}: event {seq} is neither in the body, nor in its "
                    f"write-ahead segment ({len(records)} events), nor in memory"
                )
            block = (start, stop, records, True)
            break
        else:
            raise TraceError(f"{self.where} changed too fast to read event {seq}")
        self._cached = block
        return block

    def forget_cache(self) -> None:
        self._cached = None

    # -- envelopes --------------------------------------------------------------------------

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]:
        """One envelope column of events ``start..stop-1`` (within the trace)."""
        ring = self.ring
        mem_start = ring.start
        committed = min(self.committed, mem_start)  # one snapshot: the committer may move on
        parts = [self.body.column(name, min(start, committed), min(stop, committed))]
        seq = max(start, committed)
        while seq < min(stop, mem_start):  # unsealed and older than the ring
            first, end, items, prefixed = self._block(seq, self.unit, committed)
            end = min(end, mem_start, stop)
            parts.append(envelope_table(items[seq - first : end - first], prefixed)[name])
            seq = end
        if ring.heads and stop > mem_start:
            lo, hi = max(start, mem_start) - mem_start, stop - mem_start
            parts.append(head_table(ring.heads[lo:hi])[name])
        return np.concatenate(parts)

    def last_matching(self, n: int, kinds: set[int] | None, asset: int | None) -> list[int]:
        """The seqs of the last ``n`` events (oldest first) whose kind code is in ``kinds``
        and whose asset code is ``asset`` (None: any)."""
        found: list[np.ndarray[Any, Any]] = []  # newest block first
        count = 0
        ring = self.ring
        if ring.heads:
            table = head_table(ring.heads)
            rows = np.flatnonzero(_match(table["kind"], table["asset"], kinds, asset))
            found.append(rows[max(0, len(rows) - n) :] + ring.start)
            count += len(found[-1])
        hi = ring.start
        committed = min(self.committed, hi)  # one snapshot: the committer may move on
        kind_col: np.ndarray[Any, Any] | None
        asset_col: np.ndarray[Any, Any] | None
        while count < n and hi > 0:
            if hi > committed:  # unsealed, older than the ring: its segment
                first, stop, items, prefixed = self._block(hi - 1, self.unit, committed)
                lo = max(first, committed)
                hi = min(hi, stop)
                table = envelope_table(items[lo - first : hi - first], prefixed)
                kind_col, asset_col = table["kind"], table["asset"]
            else:
                lo = max(0, hi - self.unit)
                kind_col = self.body.column("kind", lo, hi) if kinds is not None else None
                asset_col = self.body.column("asset", lo, hi) if asset is not None else None
            rows = np.flatnonzero(_match(kind_col, asset_col, kinds, asset)) + lo
            found.append(rows[max(0, len(rows) - (n - count)) :])
            count += len(found[-1])
            hi = lo
        return [int(seq) for block in reversed(found) for seq in block]


def _match(
    kind_col: np.ndarray[Any, Any] | None,
    asset_col: np.ndarray[Any, Any] | None,
    kinds: set[int] | None,
    asset: int | None,
) -> np.ndarray[Any, Any]:
    mask: Any = True
    if kinds is not None and kind_col is not None:
        mask = np.isin(kind_col, np.fromiter(kinds, dtype=np.int64))
    if asset is not None and asset_col is not None:
        mask = mask & (asset_col == asset)
    return np.asarray(mask, dtype=bool)
