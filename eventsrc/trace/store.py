"""The sealed body behind a small storage interface, so a sealed trace can live in any Zarr 3
store (a local directory, a zip file, fsspec memory, an S3-compatible object store).

Two protocols, each with one contract (``tests/test_stores.py`` runs the same test case over
every implementation):

- ``SealedBody`` reads: the commit marker (sealed length, unit sizes, code tables), an envelope
  column over a range, the record column's items over a range (each the event's 42-byte
  envelope and MessagePack payload, record.py).
- ``BodySink`` writes: ``create`` the empty body, ``write_unit`` a whole unit of items, then
  ``commit`` the sealed length and code tables. Nothing written is part of the body until the
  commit: readers ignore rows past the committed length, exactly as for a local trace.

Implementations:

- ``LocalBody`` / ``LocalSink``: the fast local path: what the trace's own writer produces (the
  committer's ``BodyWriter``; reads through ``BodyReader``). ``LocalSink`` leaves a complete
  trace directory that ``Trace.open`` reads and a writer can append to.
- ``ZarrBody`` / ``ZarrSink``: the same layout read and written through zarr-python, over any
  ``zarr.abc.store.Store``. Its arrays have exactly the metadata the local writer writes.
- ``MemoryBody``: an in-memory reference (plain lists), both reader and sink.

``open_body(source)`` resolves a path, URL or store to a ``SealedBody`` and says whether the
trace also holds events that are not sealed (write-ahead segments: only local traces have them;
an exported body never does). ``Trace.open_store`` reads a body as a read-only Trace;
``export_body`` copies one into a sink (``sink_for(url)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from eventsrc.errors import NotATrace, TraceCorrupted, TraceError, TraceExists, TraceNotFound
from eventsrc.trace.body import COLUMNS, FILL, RECORD, BodyReader, BodyWriter, _expected_codecs
from eventsrc.trace.marker import FORMAT, FORMAT_VERSION, create, marker_of, read_meta, write_meta
from eventsrc.trace.record import HEAD_DTYPE, envelope_table
from eventsrc.trace.recovery import drop_sealed_segments
from eventsrc.trace.segment import (
    SEGMENT_HEADER,
    create_segment,
    scan_segment,
    segment_name,
    segment_start,
    write_segment,
)
from eventsrc.trace.tables import CodeTables

if TYPE_CHECKING:
    from zarr.abc.store import Store

__all__ = [
    "BodySink",
    "LocalBody",
    "LocalSink",
    "MemoryBody",
    "SealedBody",
    "ZarrBody",
    "ZarrSink",
    "export_body",
    "open_body",
    "sink_for",
    "store_for",
]

_LENGTH = struct.Struct("<I")


@runtime_checkable
class SealedBody(Protocol):
    """Reads a sealed body (see the module docstring)."""

    where: str
    """How to name the body in messages (a path or URL)."""

    def marker(self) -> dict[str, Any]:
        """The commit marker, checked (``committed``, ``unit``, ``record_chunk``, the tables)."""
        ...

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]:
        """Envelope column ``name`` over events ``start..stop-1`` (within the committed length)."""
        ...

    def records(self, start: int, stop: int) -> list[bytes]:
        """Items of the record column over events ``start..stop-1``."""
        ...


class BodySink(Protocol):
    """Writes a sealed body (see the module docstring)."""

    where: str

    def create(self, unit: int, record_chunk: int) -> None:
        """Create the empty body; TraceExists if the target already holds something."""
        ...

    def write_unit(self, index: int, items: Sequence[bytes]) -> None:
        """Write unit ``index`` (``unit`` items of the record column, events
        ``index*unit..``; fewer for the last unit) to every column; not part of the body
        until ``commit``."""
        ...

    def commit(self, committed: int, tables: CodeTables) -> None:
        """Record the sealed length and code tables: the commit point."""
        ...


def _new_marker(unit: int, record_chunk: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "committed": 0,
        "unit": unit,
        "record_chunk": record_chunk,
        **CodeTables().to_marker(),
    }


def _check_fill(where: str, name: str, values: np.ndarray[Any, Any], start: int) -> None:
    bad = np.flatnonzero(values == FILL[name])
    if len(bad):
        raise TraceCorrupted(
            f"trace body at {where}: column {name!r} row {start + int(bad[0])} reads as the "
            "fill value (a chunk is missing)"
        )


def _check_unit(unit: int, index: int, items: Sequence[bytes]) -> np.ndarray[Any, Any]:
    """The envelopes of a unit's items, checked to be events ``index*unit..`` (all ``unit``
    of them, or the first ones of the last unit)."""
    if not 0 < len(items) <= unit:
        raise ValueError(f"unit {index} must hold 1..{unit} events, not {len(items)}")
    heads = envelope_table(items, prefixed=False)
    if not np.array_equal(heads["seq"], np.arange(index * unit, index * unit + len(items))):
        raise ValueError(f"unit {index} does not hold events {index * unit}..")
    return heads


# -- the fast local body (the trace's own writer and reader) -----------------------------------


class LocalBody:
    """A trace directory's sealed body, read as ``Trace.open`` reads it (``BodyReader``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.where = str(self.root)
        self._reader: BodyReader | None = None

    def marker(self) -> dict[str, Any]:
        return read_meta(self.root)

    def _body(self) -> BodyReader:
        if self._reader is None:
            self._reader = BodyReader(self.root, int(self.marker()["record_chunk"]))
        return self._reader

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]:
        return self._body().column(name, start, stop)

    def records(self, start: int, stop: int) -> list[bytes]:
        return self._body().records(start, stop)

    def unsealed(self, committed: int) -> str | None:
        """What the write-ahead segments hold past the sealed length, or None."""
        wal = self.root / "wal"
        unit = int(self.marker()["unit"])
        found = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(wal):
                start = segment_start(Path(entry.path))
                if start is None:
                    continue
                size = entry.stat().st_size
                if start < committed < start + unit:  # a partial unit sealed: anything more?
                    with contextlib.suppress(FileNotFoundError):
                        scan = scan_segment(Path(entry.path), skip_below=committed)
                        if scan.first + len(scan.records) > committed or scan.problem:
                            found.append((committed, size))
                    continue
                found.append((start, size))
        return _unsealed(found, committed)


def _unsealed(segments: list[tuple[int, int]], committed: int) -> str | None:
    """Whether write-ahead segments ``(start, size)`` hold anything past the sealed length:
    the segment at the sealed length with more than its header, or any later one."""
    later = [s for s, size in segments if s > committed or (s == committed and size > _HEADER)]
    if not later:
        return None
    return f"write-ahead segment(s) {', '.join(segment_name(s) for s in sorted(later))}"


_HEADER = SEGMENT_HEADER.size


class LocalSink:
    """Writes a complete trace directory through the trace's own fast writer (``BodyWriter``,
    the commit marker, and the write-ahead segment at the sealed length), so the result is a
    trace like any other: ``Trace.open`` reads it and a writer can append to it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.where = str(self.root)
        self._writer: BodyWriter | None = None
        self._unit = 0
        self._last: tuple[int, list[bytes]] = (-1, [])

    def create(self, unit: int, record_chunk: int) -> None:
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise TraceExists(f"cannot create a trace at {self.root}: it exists and is not empty")
        os.close(create(self.root, unit, record_chunk))  # the lock: nobody else writes here
        self._writer = BodyWriter(self.root, unit, record_chunk)
        self._unit = unit

    def write_unit(self, index: int, items: Sequence[bytes]) -> None:
        assert self._writer is not None, "create() first"
        _check_unit(self._unit, index, items)
        records = [_LENGTH.pack(len(item)) + item for item in items]
        self._writer.write_unit(index, records)
        self._last = (index, records)

    def commit(self, committed: int, tables: CodeTables) -> None:
        wal = self.root / "wal"
        start = committed - committed % self._unit
        if not (wal / segment_name(start)).exists():  # always exists (recovery.py)
            if start == committed:
                os.close(create_segment(wal, committed, sync=True))
            else:  # a partial last unit: its segment holds its events, as a writer left it
                index, records = self._last
                assert index * self._unit == start and len(records) == committed - start
                write_segment(wal, start, records)
        meta = read_meta(self.root)
        meta.update(committed=committed, **tables.to_marker())
        write_meta(self.root, meta)
        drop_sealed_segments(self.root, committed, self._unit)


# -- any Zarr store, through zarr-python -------------------------------------------------------


def _sync(coroutine: Any) -> Any:
    from zarr.core.sync import sync

    return sync(coroutine)


class ZarrBody:
    """A sealed body in any ``zarr.abc.store.Store``, read through zarr-python."""

    def __init__(self, store: Store, where: str | None = None) -> None:
        self.store = store
        self.where = where or str(store)
        self._group: Any = None
        self._marker: dict[str, Any] | None = None
        self._arrays: dict[str, Any] = {}

    def _open(self) -> Any:
        if self._group is None:
            import zarr

            try:
                self._group = zarr.open_group(store=self.store, mode="r")
            except FileNotFoundError:
                raise TraceNotFound(f"no trace at {self.where}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise NotATrace(f"{self.where} is not a trace ({exc})") from None
        return self._group

    def marker(self) -> dict[str, Any]:
        if self._marker is None:
            group = self._open()
            self._marker = marker_of({"attributes": group.attrs.asdict()}, self.where)
        return self._marker

    def _array(self, name: str) -> Any:
        array = self._arrays.get(name)
        if array is None:
            committed = int(self.marker()["committed"])
            try:
                array = self._open()[name]
            except KeyError:
                raise TraceCorrupted(
                    f"trace body at {self.where}: the column {name!r} is missing"
                ) from None
            if array.ndim != 1 or array.shape[0] < committed:
                raise TraceCorrupted(
                    f"trace body at {self.where}: column {name!r} holds {array.shape} rows but "
                    f"the commit marker says {committed}"
                )
            self._arrays[name] = array
        return array

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]:
        if name not in COLUMNS:
            raise KeyError(f"no envelope column {name!r}")
        if stop <= start:
            return np.empty(0, dtype=HEAD_DTYPE[name])
        values = np.asarray(self._read(name, start, stop), dtype=HEAD_DTYPE[name])
        _check_fill(self.where, name, values, start)
        return values

    def records(self, start: int, stop: int) -> list[bytes]:
        if stop <= start:
            return []
        items: list[bytes] = self._read(RECORD, start, stop).tolist()
        if not all(items):
            raise TraceCorrupted(
                f"trace body at {self.where}: records {start}..{stop - 1} include empty ones "
                "(a chunk is missing)"
            )
        return items

    def _read(self, name: str, start: int, stop: int) -> Any:
        array = self._array(name)
        try:
            return array[start:stop]
        except Exception as exc:  # zarr and the store raise their own errors
            raise TraceCorrupted(
                f"trace body at {self.where}: column {name!r} rows {start}..{stop - 1} cannot "
                f"be read ({type(exc).__name__}: {exc})"
            ) from None

    def unsealed(self, committed: int) -> str | None:
        """What the store's write-ahead segments (if it holds a trace directory's) hold past
        the sealed length, or None."""

        async def segments() -> list[tuple[int, int]]:
            found = []
            async for key in self.store.list_prefix("wal/"):
                start = segment_start(Path(key))
                if start is not None:
                    found.append((start, await self.store.getsize(key)))
            return found

        found: list[tuple[int, int]] = _sync(segments())
        return _unsealed(found, committed)


class ZarrSink:
    """Writes a sealed body into any ``zarr.abc.store.Store`` through zarr-python, with the
    metadata the local writer writes (so a local directory written this way is appendable)."""

    def __init__(self, store: Store, where: str | None = None) -> None:
        self.store = store
        self.where = where or str(store)
        self._group: Any = None
        self._arrays: dict[str, Any] = {}
        self._unit = 0

    def create(self, unit: int, record_chunk: int) -> None:
        import zarr
        from zarr.codecs import BytesCodec, Crc32cCodec, VLenBytesCodec, ZstdCodec

        if not _sync(self.store.is_empty("")):
            raise TraceExists(f"cannot export a trace to {self.where}: it is not empty")
        self._group = zarr.create_group(
            store=self.store, attributes={"eventsrc": _new_marker(unit, record_chunk)}
        )
        for name in (*COLUMNS, RECORD):
            level = _expected_codecs(name)[1]["configuration"]["level"]
            serializer: Any = VLenBytesCodec() if name == RECORD else BytesCodec(endian="little")
            self._arrays[name] = self._group.create_array(
                name,
                shape=(0,),
                chunks=(record_chunk if name == RECORD else unit,),
                dtype="variable_length_bytes" if name == RECORD else HEAD_DTYPE[name].str,
                fill_value=b"" if name == RECORD else FILL[name],
                filters=(),
                serializer=serializer,
                compressors=(ZstdCodec(level=level, checksum=False), Crc32cCodec()),
            )
        self._unit = unit

    def write_unit(self, index: int, items: Sequence[bytes]) -> None:
        assert self._group is not None, "create() first"
        heads = _check_unit(self._unit, index, items)
        start, stop = index * self._unit, index * self._unit + len(items)
        for name, array in self._arrays.items():
            if array.shape[0] < stop:
                array.resize((stop,))
            if name == RECORD:
                values = np.empty(len(items), dtype=object)
                values[:] = list(items)
                array[start:stop] = values
            else:
                array[start:stop] = np.ascontiguousarray(heads[name])

    def commit(self, committed: int, tables: CodeTables) -> None:
        assert self._group is not None, "create() first"
        meta = dict(self._group.attrs["eventsrc"])
        meta.update(committed=committed, **tables.to_marker())
        self._group.update_attributes({"eventsrc": meta})


# -- the in-memory reference -------------------------------------------------------------------


class MemoryBody:
    """The reference body: plain Python lists, both a ``SealedBody`` and a ``BodySink``."""

    def __init__(self, where: str = "memory") -> None:
        self.where = where
        self.items: list[bytes] = []
        self.meta: dict[str, Any] | None = None
        self._committed_marker: dict[str, Any] | None = None

    def create(self, unit: int, record_chunk: int) -> None:
        if self.meta is not None:
            raise TraceExists(f"{self.where} already holds a trace")
        self.meta = _new_marker(unit, record_chunk)
        self._committed_marker = dict(self.meta)

    def write_unit(self, index: int, items: Sequence[bytes]) -> None:
        assert self.meta is not None, "create() first"
        _check_unit(self.meta["unit"], index, items)
        del self.items[index * self.meta["unit"] :]
        self.items.extend(items)

    def commit(self, committed: int, tables: CodeTables) -> None:
        assert self.meta is not None, "create() first"
        self.meta.update(committed=committed, **tables.to_marker())
        self._committed_marker = json.loads(json.dumps(self.meta))

    def marker(self) -> dict[str, Any]:
        if self._committed_marker is None:
            raise TraceNotFound(f"no trace at {self.where}")
        return marker_of({"attributes": {"eventsrc": self._committed_marker}}, self.where)

    def column(self, name: str, start: int, stop: int) -> np.ndarray[Any, Any]:
        if stop <= start:
            return np.empty(0, dtype=HEAD_DTYPE[name])
        return np.array(envelope_table(self.items[start:stop], prefixed=False)[name])

    def records(self, start: int, stop: int) -> list[bytes]:
        return self.items[start:stop]


# -- resolving paths and URLs ------------------------------------------------------------------


def _split(url: str) -> tuple[str, str]:
    """``(protocol, rest)``; a plain path is ``("file", path)``."""
    if "://" in url:
        protocol, rest = url.split("://", 1)
        return protocol.lower(), rest
    return "file", url


def store_for(url: str, *, read_only: bool, storage_options: dict[str, Any] | None = None) -> Store:
    """The zarr store a URL names: ``zip://PATH`` or a ``.zip`` path (a ZipStore), ``file://``
    or a plain path (a LocalStore), anything else (``memory://``, ``s3://bucket/prefix``, ...)
    through fsspec (``storage_options`` go to its file system, e.g. ``endpoint_url``)."""
    from zarr.storage import FsspecStore, LocalStore, ZipStore

    protocol, rest = _split(url)
    if protocol == "zip" or (protocol == "file" and rest.endswith(".zip")):
        if read_only and not Path(rest).is_file():
            raise TraceNotFound(f"no trace at {url} (no such zip file)")
        return ZipStore(rest, mode="r" if read_only else "w", read_only=read_only)
    if protocol == "file":
        return LocalStore(rest, read_only=read_only)
    try:
        return FsspecStore.from_url(url, storage_options=storage_options, read_only=read_only)
    except (ImportError, ValueError) as exc:
        raise TraceError(f"cannot open the store {url}: {exc}") from None


def open_body(
    source: str | os.PathLike[str] | Store | SealedBody,
    storage_options: dict[str, Any] | None = None,
) -> tuple[SealedBody, str | None]:
    """The sealed body at ``source`` (a path or URL, a zarr store, or a body), and what it
    holds that is not sealed (None when everything is sealed). A local trace directory is read
    with the fast local reader."""
    if isinstance(source, SealedBody):
        unsealed = getattr(source, "unsealed", None)
        return source, None if unsealed is None else unsealed(int(source.marker()["committed"]))
    body: LocalBody | ZarrBody
    if isinstance(source, str | os.PathLike):
        url = os.fspath(source)
        protocol, rest = _split(url)
        if protocol == "file" and not rest.endswith(".zip"):
            body = LocalBody(rest)
        else:
            body = ZarrBody(store_for(url, read_only=True, storage_options=storage_options), url)
    else:
        body = ZarrBody(source)
    committed = int(body.marker()["committed"])
    return body, body.unsealed(committed)


class _ZipSink(ZarrSink):
    """A zip file is written once: the body is built in memory, then written to the zip key by
    key (zarr's ZipStore cannot replace a key, and each unit rewrites the arrays' metadata)."""

    def __init__(self, path: str, where: str) -> None:
        from zarr.storage import MemoryStore

        super().__init__(MemoryStore(), where)
        self.path = path

    def create(self, unit: int, record_chunk: int) -> None:
        if Path(self.path).exists():
            raise TraceExists(f"cannot export a trace to {self.where}: it exists")
        super().create(unit, record_chunk)

    def commit(self, committed: int, tables: CodeTables) -> None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.storage import ZipStore

        super().commit(committed, tables)
        source = self.store

        async def copy(target: ZipStore) -> None:
            keys = sorted([key async for key in source.list()], key=lambda k: k == "zarr.json")
            for key in keys:  # the group's zarr.json (the commit marker) last
                buffer = await source.get(key, default_buffer_prototype())
                assert buffer is not None
                await target.set(key, buffer)

        target = ZipStore(self.path, mode="w")
        try:
            _sync(copy(target))
        finally:
            target.close()


def sink_for(url: str, storage_options: dict[str, Any] | None = None) -> BodySink:
    """Where ``export_body`` writes for a URL (see ``store_for``): a plain path or ``file://``
    gets a complete trace directory (the local writer), a zip a zip, anything else a zarr store."""
    protocol, rest = _split(url)
    if protocol == "zip" or (protocol == "file" and rest.endswith(".zip")):
        return _ZipSink(rest, url)
    if protocol == "file":
        return LocalSink(rest)
    return ZarrSink(store_for(url, read_only=False, storage_options=storage_options), url)


def units(body: SealedBody) -> Iterator[tuple[int, list[bytes]]]:
    """The sealed units of a body, with their items (the last may be partial)."""
    meta = body.marker()
    unit, committed = int(meta["unit"]), int(meta["committed"])
    for index in range(-(-committed // unit)):
        yield index, body.records(index * unit, min((index + 1) * unit, committed))


def export_body(source: SealedBody, sink: BodySink) -> int:
    """Copy the sealed body ``source`` into ``sink``, a unit at a time, committing last;
    returns how many events it holds."""
    meta = source.marker()
    sink.create(int(meta["unit"]), int(meta["record_chunk"]))
    for index, items in units(source):
        sink.write_unit(index, items)
    committed = int(meta["committed"])
    sink.commit(committed, CodeTables.from_marker(meta, f"trace {source.where}"))
    return committed
