"""The sealed body of a trace: a Zarr v3 group of 1-D envelope columns and a record column.

Columns (one Zarr array each, all the same length): ``seq``, ``ts``, ``exchange_ts``, ``kind``,
``asset``, ``source``, ``cause`` (chunk = one *unit* of events), for numpy analytics, and
``record`` (variable-length bytes, a unit split into several smaller chunks so one event can be
read without decoding a whole unit): each item is the event's record (record.py: its
42-byte envelope followed by its MessagePack payload), so the record column alone reproduces
every event. Every chunk is compressed with zstd and checksummed with crc32c (both standard Zarr v3
codecs); the record column uses zarr-python's ``variable_length_bytes`` data type and
``vlen-bytes`` codec (no finished v3 spec yet; zarr-python reads it).

Zarr never fsyncs and has no transaction across arrays, so the body is written a whole unit at a
time, by the trace's committer: write the unit's chunks to every column, grow every array's
shape, fsync chunk files and array metadata, and only then record the committed length in the
group's attributes (``Trace`` does that, atomically). Rows past the committed length are
ignored, so a crash mid-unit leaves nothing a reader can see; the write-ahead segment still
holds the unit.

The committer encodes chunks itself (zstd via numcodecs, crc32c via google-crc32c, both of
which release the GIL; the ``vlen-bytes`` layout is the write-ahead records joined) rather than
through zarr-python's write path: that path holds the GIL for ~0.5 us per event (mostly
numcodecs' VLenBytes), which the appending thread then waits for. The bytes are exactly what
zarr-python writes for these codecs; every read goes through zarr-python, and the tests read
everything back through it.

Each column's fill value is one the trace never writes, so a chunk file that has gone missing
(it would read back as fill values) is reported as corruption, never read as data.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import struct
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import google_crc32c
import numcodecs
import numpy as np

from eventsrc.errors import TraceCorrupted, TraceError, TraceStorageError
from eventsrc.trace.files import fsync_path, replace_file, write_file
from eventsrc.trace.record import DEFINE, ENVELOPE, HEAD_DTYPE, NO_EXCHANGE_TS, envelope_table

T = TypeVar("T")

COLUMNS = ENVELOPE
RECORD = "record"
FILL: dict[str, int] = {
    "seq": -1,
    "ts": -(2**63),
    "exchange_ts": NO_EXCHANGE_TS + 1,
    "kind": DEFINE,
    "asset": 2**32 - 1,
    "source": 2**32 - 1,
    "cause": -(2**63),
}
ZSTD_LEVEL = 1
GROW_UNITS = 8

# The payload column's dtype is deliberate (see the module docstring); zarr warns about it each
# time such an array is opened, from whichever thread opens it, so the filter is process-wide
# and matches only that warning.
# zarr is imported where it is used: the committer process writes chunks without it, and starts
# faster for that.
warnings.filterwarnings("ignore", message=r"The data type \(VariableLengthBytes\(\)\)")


def create_body(root: Path, unit: int, record_chunk: int) -> list[Path]:
    """Write the metadata of the (empty) columns of a new trace body in the group at ``root``,
    exactly as zarr-python writes it for these arrays (so creating a trace needs no zarr: its
    import and array creation cost ~0.15-0.7 s); returns every path written, for the caller to
    make durable (nothing is fsynced here)."""
    written = []
    for name in (*COLUMNS, RECORD):
        directory = root / name
        directory.mkdir()
        doc = _array_doc(name, record_chunk if name == RECORD else unit)
        write_file(directory / "zarr.json", json.dumps(doc, indent=2).encode(), sync=False)
        written += [directory / "zarr.json", directory]
    return written


def _array_doc(name: str, chunk: int) -> dict[str, Any]:
    if name == RECORD:
        dtype: str = "variable_length_bytes"
        fill: Any = ""
    else:
        dtype = HEAD_DTYPE[name].newbyteorder("=").name
        fill = FILL[name]
    return {
        "shape": [0],
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": _expected_codecs(name),
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def array_metadata(root: Path, name: str, chunk: int) -> dict[str, Any]:
    """The metadata (``zarr.json``) of one column, checked enough to read the column by:
    TraceCorrupted naming the file if it is missing, unreadable or not this column's."""
    path = root / name / "zarr.json"
    where = f"trace {root}: the body column {name!r} ({path})"
    try:
        doc: dict[str, Any] = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        raise TraceCorrupted(f"{where} is missing") from None
    except ValueError as exc:
        raise TraceCorrupted(f"{where} is unreadable ({exc})") from None
    shape = doc.get("shape") if isinstance(doc, dict) else None
    if (
        not isinstance(shape, list)
        or len(shape) != 1
        or not isinstance(shape[0], int)
        or doc.get("node_type") != "array"
    ):
        raise TraceCorrupted(f"{where} is not the metadata of a 1-D Zarr array")
    grid = doc.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
    if grid != [chunk]:
        raise TraceCorrupted(f"{where} has chunks of {grid}, where the trace has {chunk}")
    return doc


def body_metadata(root: Path, unit: int, record_chunk: int) -> dict[str, dict[str, Any]]:
    """Every column's metadata (see ``array_metadata``), by name."""
    return {
        name: array_metadata(root, name, record_chunk if name == RECORD else unit)
        for name in (*COLUMNS, RECORD)
    }


def check_appendable(root: Path, metadata: dict[str, dict[str, Any]]) -> None:
    """TraceError unless every column is encoded as this eventsrc writes it."""
    for name, doc in metadata.items():
        if doc.get("codecs") != _expected_codecs(name):
            raise TraceError(
                f"trace body column {root / name} was written with other codecs than this "
                "eventsrc writes; it can be read but not appended to"
            )


def _expected_codecs(name: str) -> list[dict[str, Any]]:
    first = (
        {"name": "vlen-bytes", "configuration": {}}
        if name == RECORD
        else {"name": "bytes", "configuration": {"endian": "little"}}
    )
    return [
        first,
        {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}},
        {"name": "crc32c"},
    ]


class BodyWriter:
    """Writes whole units into the body; used by the trace's committer thread only."""

    def __init__(self, root: Path, unit: int, record_chunk: int) -> None:
        self.root = root
        self.unit = unit
        self.record_chunk = record_chunk
        self._zstd = numcodecs.Zstd(level=ZSTD_LEVEL)
        self._metadata = body_metadata(root, unit, record_chunk)
        check_appendable(root, self._metadata)
        for name in self._metadata:
            (root / name / "c").mkdir(exist_ok=True)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():  # a partial unit's chunk: readers may be reading its rows
            replace_file(path, data)
        else:
            write_file(path, data)

    def _chunk(self, raw: bytes | np.ndarray[Any, Any]) -> bytes:
        compressed = bytes(self._zstd.encode(raw))
        checksum: int = google_crc32c.value(compressed)
        return compressed + checksum.to_bytes(4, "little")

    def write_unit(self, index: int, records: list[bytes]) -> None:
        """Write unit ``index`` (its write-ahead records: all ``unit`` of them, or the first
        ones of the last unit, as closing a trace seals it) to every column and grow the
        arrays over it, durably. A partial unit's chunks are padded with the fill value, as
        zarr pads a chunk past an array's end; chunk files already there (a partial unit
        sealed before) are replaced atomically, so the rows they hold stay readable."""
        start, stop = index * self.unit, index * self.unit + len(records)
        if not 0 < len(records) <= self.unit:
            raise ValueError(f"unit {index} must hold 1..{self.unit} events, not {len(records)}")
        heads = envelope_table(records, prefixed=True)
        if heads["seq"][0] != start or not np.array_equal(heads["seq"], np.arange(start, stop)):
            raise ValueError(f"unit {index} does not hold events {start}..{stop - 1}")
        pad = self.unit - len(records)
        for name in COLUMNS:
            column = np.ascontiguousarray(heads[name])
            if pad:
                column = np.concatenate([column, np.full(pad, FILL[name], dtype=column.dtype)])
            self._write(self.root / name / "c" / str(index), self._chunk(column))
        per_unit = self.unit // self.record_chunk
        count = struct.pack("<I", self.record_chunk)
        empty = struct.pack("<I", 0)  # an empty item: the record column's fill value
        for j in range(-(-len(records) // self.record_chunk)):
            # vlen-bytes: the item count, then each item as (uint32 length, bytes), which is
            # exactly a write-ahead record.
            items = records[j * self.record_chunk : (j + 1) * self.record_chunk]
            raw = b"".join([count, *items, empty * (self.record_chunk - len(items))])
            path = self.root / RECORD / "c" / str(index * per_unit + j)
            self._write(path, self._chunk(raw))
        for name, doc in self._metadata.items():
            fsync_path(self.root / name / "c")  # the new chunk files' directory entries
            if doc["shape"][0] < stop:
                # Grow GROW_UNITS units at a time: each growth rewrites (and fsyncs) every
                # array's zarr.json. Rows past the committed length are not events anyway.
                doc["shape"] = [stop + (GROW_UNITS - 1) * self.unit]
                replace_file(self.root / name / "zarr.json", json.dumps(doc, indent=2).encode())
                fsync_path(self.root / name)


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _map(read: Callable[[int], T], indexes: range) -> Iterable[T]:
    """``read`` over ``indexes``, in order: on a small shared thread pool when there are
    several (decompressing chunks lets go of the GIL, so reads of many chunks run ~1.5-2x
    faster on two cores), else in this thread."""
    global _POOL
    if len(indexes) < 2:
        return map(read, indexes)
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="eventsrc-read"
            )
    return _POOL.map(read, indexes)


class BodyReader:
    """Reads ranges of the sealed body straight from its chunk files, with the same checks
    zarr makes (crc32c, zstd, vlen-bytes; zarr-python opens the arrays to check their shapes,
    reopened when they have grown): through zarr a streaming read of records cost ~3.8 us an
    event, directly ~1.5, most of it zstd; a column ~1.7x less time."""

    def __init__(self, root: Path, record_chunk: int) -> None:
        self.root = root
        self._chunks: dict[str, int] = {}
        self._length = -1
        self._record_chunk = record_chunk
        self._zstd = numcodecs.Zstd()
        self._vlen = numcodecs.VLenBytes()

    def _chunk_of(self, name: str, need: int) -> int:
        """Column ``name``'s chunk length, once every array's metadata (read afresh when
        ``need`` is past what it said last: arrays grow) says it holds ``need`` rows."""
        if need > self._length:
            shapes = {}
            for column in (*COLUMNS, RECORD):
                path = self.root / column / "zarr.json"
                try:
                    doc = json.loads(path.read_bytes())
                    shapes[column] = int(doc["shape"][0])
                    self._chunks[column] = int(doc["chunk_grid"]["configuration"]["chunk_shape"][0])
                except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                    raise TraceCorrupted(
                        f"trace body at {self.root} cannot be opened ({path}: "
                        f"{type(exc).__name__}: {exc})"
                    ) from None
            self._length = min(shapes.values())
            if need > self._length:
                raise TraceCorrupted(
                    f"trace body at {self.root} holds {self._length} rows but its commit "
                    f"marker says {need}: body arrays are missing data"
                )
        return self._chunks[name]

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]:
        if stop <= start:
            return np.empty(0, dtype=HEAD_DTYPE[name])
        chunk = self._chunk_of(name, stop)  # (checks the arrays hold ``stop``)
        # Straight from the chunk files, checked as zarr checks them: ~1.7x faster than
        # through zarr-python, whose per-chunk machinery dominates a column read; chunks
        # decompressed on a few threads (zstd lets go of the GIL).
        indexes = range(start // chunk, (stop - 1) // chunk + 1)
        chunks = _map(lambda index: self.column_chunk(name, index, chunk), indexes)
        parts = []
        for index, values in zip(indexes, chunks, strict=True):
            first = index * chunk
            parts.append(values[max(start, first) - first : min(stop, first + chunk) - first])
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._check(name, values, start)
        return values

    def records(self, start: int, stop: int) -> list[bytes]:
        """Items of the record column ``start..stop-1``: each the event's envelope + payload."""
        if stop <= start:
            return []
        chunk = self._record_chunk
        found: list[bytes] = []
        indexes = range(start // chunk, (stop - 1) // chunk + 1)
        read = _map(
            lambda index: self._record_chunk_items(index, min(stop - index * chunk, chunk)),
            indexes,
        )
        for index, items in zip(indexes, read, strict=True):
            first = index * chunk
            found.extend(items[max(start, first) - first : min(stop, first + chunk) - first])
        return found

    def _record_chunk_items(self, index: int, valid: int) -> list[bytes]:
        raw, where = self._decompressed(RECORD, index)
        try:
            items: list[bytes] = self._vlen.decode(raw).tolist()
        except Exception as exc:  # numcodecs raises plain RuntimeError/ValueError
            raise TraceCorrupted(f"{where} cannot be decoded ({exc})") from None
        if len(items) != self._record_chunk or not all(items[:valid]):
            raise TraceCorrupted(f"{where} holds {len(items)} records, some empty")
        return items

    def record_chunk(self, index: int, valid: int | None = None) -> list[bytes]:
        """The items of chunk ``index`` of the record column, checked (crc32c, zstd, vlen-bytes,
        item count, none of the first ``valid`` empty: default all, a chunk of the last,
        partial unit holds fewer events); TraceCorrupted naming the chunk if they fail."""
        return self._record_chunk_items(index, self._record_chunk if valid is None else valid)

    def column_chunk(self, name: str, index: int, unit: int) -> np.ndarray[Any, Any]:
        """The values of chunk ``index`` (``unit`` events) of an envelope column, checked the
        same way as ``record_chunk``, without zarr."""
        raw, where = self._decompressed(name, index)
        dtype = HEAD_DTYPE[name]
        if len(raw) != unit * dtype.itemsize:
            raise TraceCorrupted(f"{where} holds {len(raw)} bytes, not {unit} values")
        return np.frombuffer(raw, dtype=dtype)

    def _decompressed(self, name: str, index: int) -> tuple[bytes, str]:
        """A chunk file's contents, its crc32c checked and zstd undone; and how to name it."""
        where = f"trace body at {self.root}: chunk {name}/c/{index}"
        try:
            data = (self.root / name / "c" / str(index)).read_bytes()
        except FileNotFoundError:
            raise TraceCorrupted(f"{where} is missing") from None
        except OSError as exc:
            raise TraceStorageError(f"{where} cannot be read ({exc.strerror})") from None
        body = data[:-4]
        if len(data) < 4 or google_crc32c.value(body) != int.from_bytes(data[-4:], "little"):
            raise TraceCorrupted(f"{where} fails its crc32c checksum")
        try:
            return bytes(self._zstd.decode(body)), where
        except Exception as exc:  # numcodecs raises plain RuntimeError/ValueError
            raise TraceCorrupted(f"{where} cannot be decoded ({exc})") from None

    def _check(self, name: str, values: np.ndarray[Any, Any], start: int) -> None:
        bad = np.flatnonzero(values == FILL[name])
        if len(bad):
            chunk = self._chunks[name]
            first = start + int(bad[0])
            raise TraceCorrupted(
                f"trace body at {self.root}: chunk {name}/c/{first // chunk} is missing "
                f"(row {first} reads as the fill value)"
            )
