"""The record: one event as the trace stores it, a 42-byte envelope followed by its payload.
This module is the only one that knows that layout: it packs records, parses them out of
write-ahead frames, reads ``(seq, ts, kind, payload)`` back out of them, and turns their
envelopes into tables.

Layout (little-endian)::

    envelope (ENV, 42 bytes)   seq int64, ts int64, exchange_ts int64, kind uint16,
                               asset uint32, source uint32, cause int64
    payload                    the event's fields, MessagePack (see eventsrc.codec)

Where records are written (the write-ahead segment, and the memory ring) each is preceded by
its uint32 length (HEAD = length + envelope): that makes a record exactly one item of Zarr's
``vlen-bytes`` encoding, so a body chunk of the ``record`` column is its item count followed by
its records, joined. Items read back from the body come without the length.

A *definition* record (kind == DEFINE) gives a code table entry instead of an event: ``asset``
holds the table (``Table``), ``source`` the code, ``cause`` the kind's schema version
(NONE_NAME: the name is None), ``seq`` the seq of the event about to use it, and the payload the
name in UTF-8. Definitions precede the first event that uses the code.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from eventsrc.errors import TraceCorrupted
from eventsrc.trace.tables import Definition, Table

__all__ = [
    "DEFINE",
    "ENVELOPE",
    "ENV_DTYPE",
    "HEAD_DTYPE",
    "NO_CAUSE",
    "NO_EXCHANGE_TS",
    "Record",
    "define_record",
    "envelope_table",
    "head_table",
    "pack_head",
    "parse_records",
    "read_items",
    "read_ring",
    "split_records",
    "written_seq",
]

Record = tuple[int, int, int, bytes]
"""``(seq, ts, kind code, payload)``: what reading a record gives."""

HEAD = struct.Struct("<IqqqHIIq")
ENV = struct.Struct("<qqqHIIq")
HEAD_DTYPE = np.dtype(
    [
        ("length", "<u4"),
        ("seq", "<i8"),
        ("ts", "<i8"),
        ("exchange_ts", "<i8"),
        ("kind", "<u2"),
        ("asset", "<u4"),
        ("source", "<u4"),
        ("cause", "<i8"),
    ]
)
assert HEAD_DTYPE.itemsize == HEAD.size
ENV_DTYPE = np.dtype([(n, HEAD_DTYPE[n]) for n in HEAD_DTYPE.names or () if n != "length"])
ENVELOPE: tuple[str, ...] = tuple(n for n in HEAD_DTYPE.names or () if n != "length")
"""The envelope columns, in order."""
ENVELOPE_SIZE = ENV.size
LENGTH_SIZE = HEAD.size - ENV.size

NO_EXCHANGE_TS = -(2**63)
"""``exchange_ts`` column value for "none"."""
NO_CAUSE = -1
"""``cause`` column value when the cause is none or a client order id (the payload keeps it)."""
DEFINE = 0xFFFF
"""The kind code of a definition record."""
NONE_NAME = -2

_KIND_AT = LENGTH_SIZE + struct.calcsize("<qqq")  # in HEAD: after seq, ts and exchange_ts
_DEFINE = DEFINE.to_bytes(2, "little")
_SEQ_TS_KIND = struct.Struct("<qq8xH")  # the start of an envelope, up to its kind
_LENGTH = struct.Struct("<I")
_pack = HEAD.pack


def pack_head(
    payload: bytes,
    seq: int,
    ts: int,
    exchange_ts: int,
    kind: int,
    asset: int,
    source: int,
    cause: int,
) -> bytes:
    """The length and envelope that precede ``payload`` in a written record."""
    return _pack(ENVELOPE_SIZE + len(payload), seq, ts, exchange_ts, kind, asset, source, cause)


def written_seq(record: bytes) -> int:
    """The seq a written (length-prefixed) record says it holds."""
    seq: int = _SEQ_TS_KIND.unpack_from(record, LENGTH_SIZE)[0]
    return seq


def split_records(records: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Written records as heads (length + envelope) and payloads."""
    return [r[: HEAD.size] for r in records], [r[HEAD.size :] for r in records]


def define_record(seq: int, definition: Definition) -> bytes:
    """A complete definition record (length, envelope and name)."""
    name = definition.name
    payload = b"" if name is None else name.encode()
    cause = NONE_NAME if name is None else definition.version
    head = pack_head(
        payload, seq, 0, NO_EXCHANGE_TS, DEFINE, definition.table, definition.code, cause
    )
    return head + payload


def parse_records(
    data: bytes, off: int, end: int, records: list[bytes], definitions: list[Definition]
) -> str | None:
    """Split ``data[off:end]`` (the records of one write-ahead frame) into event records
    (length included) and definitions. Returns what is wrong if the records overrun the frame
    or a definition is malformed (only a faulty writer makes such a frame)."""
    append = records.append
    unpack_length = _LENGTH.unpack_from
    kind_at = _KIND_AT
    while off < end:
        (length,) = unpack_length(data, off)
        stop = off + LENGTH_SIZE + length
        if length < ENVELOPE_SIZE or stop > end:
            return f"its records overrun it at byte {off}"
        record = data[off:stop]
        if record[kind_at : kind_at + 2] == _DEFINE:
            _, _, _, _, _, table, code, cause = HEAD.unpack_from(record)
            try:
                name = None if cause == NONE_NAME else record[HEAD.size :].decode()
                definitions.append(Definition(Table(table), code, name, max(cause, 0)))
            except ValueError:  # no such table, or a name that is not UTF-8
                return f"its definition record at byte {off} is malformed"
        else:
            append(record)
        off = stop
    return None


def _misplaced(where: str, seq: int, stored: int) -> TraceCorrupted:
    return TraceCorrupted(f"{where}: the record of event {seq} says it is event {stored}")


def read_items(
    items: Sequence[bytes], prefixed: bool, first: int, lo: int, hi: int, where: str
) -> Iterator[Record]:
    """The records of events ``lo..hi-1`` from ``items`` (``items[i]`` is event ``first + i``;
    ``prefixed``: each starts with its length, as written), checking each one's stored seq."""
    unpack = _SEQ_TS_KIND.unpack_from
    at = LENGTH_SIZE if prefixed else 0
    payload_at = at + ENVELOPE_SIZE
    seq = lo
    for item in items[lo - first : hi - first]:
        stored, ts, kind = unpack(item, at)
        if stored != seq:
            raise _misplaced(where, seq, stored)
        yield seq, ts, kind, item[payload_at:]
        seq += 1


def read_ring(
    heads: Sequence[bytes], payloads: Sequence[bytes], first: int, lo: int, hi: int, where: str
) -> Iterator[Record]:
    """Like ``read_items``, for records held as separate heads (length + envelope) and payloads."""
    unpack = _SEQ_TS_KIND.unpack_from
    seq = lo
    for head, payload in zip(
        heads[lo - first : hi - first], payloads[lo - first : hi - first], strict=True
    ):
        stored, ts, kind = unpack(head, LENGTH_SIZE)
        if stored != seq:
            raise _misplaced(where, seq, stored)
        yield seq, ts, kind, payload
        seq += 1


def envelope_table(items: Sequence[bytes], prefixed: bool) -> np.ndarray[Any, Any]:
    """The envelopes of records, as a table (ENV_DTYPE)."""
    at = LENGTH_SIZE if prefixed else 0
    stop = at + ENVELOPE_SIZE
    return np.frombuffer(b"".join([item[at:stop] for item in items]), dtype=ENV_DTYPE)


def head_table(heads: Sequence[bytes]) -> np.ndarray[Any, Any]:
    """The heads of written records, as a table (HEAD_DTYPE: the length and the envelope)."""
    return np.frombuffer(b"".join(heads), dtype=HEAD_DTYPE)
