"""Events as rows: the envelope columns and the event's own fields, for JSON lines, CSV and
Parquet (and for any reader that wants an event as plain data).

A row is ``seq, ts, time, exchange_ts, exchange_time, kind, asset, source, cause`` followed by
the kind's fields (the raw venue payload only when asked for: it is most of a trace's bytes).
Money stays exact everywhere: a ``Decimal`` is written as its plain decimal string in JSON and
CSV ("0.00001", never "1E-5", never a float), and in Parquet as ``decimal128(38, scale)`` with
the column's largest scale, or as that string where a column's values do not fit 38 digits.
Nested values (a balance report's balances, an order's fees, a decision's values) are JSON
text in CSV and Parquet, and nested JSON in JSON lines. In CSV an absent value is an empty
cell, and a boolean is ``true``/``false``.

Parquet needs pyarrow (``pip install 'eventsrc[analytics]'``): it is imported only here, only
when a Parquet file is written.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import IO, Any, Literal

import attrs
import numpy as np

from eventsrc import Event, EventRegistry, Observation, Trace, UnknownEvent
from projections.extra import require
from projections.selection import events_at, kind_name

__all__ = [
    "ENVELOPE",
    "FORMATS",
    "Format",
    "columns",
    "event_row",
    "events_at",
    "iso_ms",
    "iso_ns",
    "json_default",
    "plain",
    "write_csv",
    "write_jsonl",
    "write_parquet",
]

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")

ENVELOPE = (
    "seq",
    "ts",
    "time",
    "exchange_ts",
    "exchange_time",
    "kind",
    "asset",
    "source",
    "cause",
)
"""The columns every row starts with (``time`` and ``exchange_time``: ``ts`` and
``exchange_ts`` as ISO-8601 UTC)."""
_NOT_FIELDS = frozenset({"seq", "ts", "exchange_ts", "asset", "source", "cause", "raw"})

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PARQUET_BATCH = 65_536


def plain(value: Decimal) -> str:
    """A decimal as a plain decimal string, exactly: never an exponent ("1E+2" -> "100")."""
    return format(value, "f")


def iso_ns(ns: int | None, timespec: str = "microseconds") -> str | None:
    """Nanoseconds since the epoch as ISO-8601 UTC ("2025-01-01T00:03:45.123456Z")."""
    if ns is None:
        return None
    moment = _EPOCH + dt.timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_ms(ms: int | None, timespec: str = "milliseconds") -> str | None:
    """Milliseconds since the epoch (a venue's time) as ISO-8601 UTC."""
    return None if ms is None else iso_ns(ms * 1_000_000, timespec)


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default``: decimals as plain strings, bytes as text."""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"no JSON form for a {type(value).__name__}")


def _data(value: Any) -> Any:
    """A field's value as plain data (decimals kept): attrs values as dicts, tuples as lists."""
    if isinstance(value, (str, int, float, Decimal)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if attrs.has(type(value)):
        return {a.name: _data(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, dict):
        return {str(k): _data(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_data(v) for v in value]
    return str(value)


def event_row(event: Event, raw: bool = False) -> dict[str, Any]:
    """``event`` as one row of plain data (see the module docstring); ``raw``: with the venue's
    raw payload, decoded (None where the event kept none)."""
    row: dict[str, Any] = {
        "seq": event.seq,
        "ts": event.ts,
        "time": iso_ns(event.ts),
        "exchange_ts": event.exchange_ts,
        "exchange_time": iso_ms(event.exchange_ts),
        "kind": kind_name(event),
        "asset": event.asset,
        "source": event.source,
        "cause": event.cause,
    }
    for a in attrs.fields(type(event)):
        if a.name not in _NOT_FIELDS:
            row[a.name] = _data(getattr(event, a.name))
    if isinstance(event, UnknownEvent) and isinstance(event.data, dict):
        # a kind this eventsrc does not know: its payload, less the envelope given above
        row["data"] = {k: v for k, v in row["data"].items() if k not in _NOT_FIELDS}
    if raw:
        row["raw"] = event.info() if isinstance(event, Observation) else None
    return row


def _class_of(registry: EventRegistry, name: str, version: int) -> type[Event]:
    info = registry.by_name(name)
    if info is None or version > info.version:
        return UnknownEvent
    return info.cls


def columns(trace: Trace, kinds: Iterable[str] | None = None, raw: bool = False) -> list[str]:
    """Every column a row of ``trace``'s events of ``kinds`` (default: all) can have, in
    order: the envelope, then each kind's fields as they first appear."""
    wanted = None if kinds is None else set(kinds)
    found = dict.fromkeys(ENVELOPE)
    for name, version in trace.code_table("kind"):
        if wanted is not None and name not in wanted:
            continue
        cls = _class_of(trace.registry, name, version)
        found.update((a.name, None) for a in attrs.fields(cls) if a.name not in _NOT_FIELDS)
    if raw:
        found["raw"] = None
    return list(found)


# ---------------------------------------------------------------------------------------------
# JSON lines and CSV


def write_jsonl(events: Iterable[Event], out: IO[str], raw: bool = False) -> int:
    """One JSON object per event; returns how many were written."""
    n = 0
    for event in events:
        out.write(json.dumps(event_row(event, raw), default=json_default, ensure_ascii=False))
        out.write("\n")
        n += 1
    return n


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=json_default, ensure_ascii=False)
    return str(value)


def write_csv(events: Iterable[Event], out: IO[str], header: list[str], raw: bool = False) -> int:
    """A header row (``header``, from ``columns``) then one row per event; returns how many
    events were written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    n = 0
    for event in events:
        row = event_row(event, raw)
        writer.writerow([_cell(row.get(name)) for name in header])
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# Parquet


@attrs.define
class _Column:
    """What one column holds, to choose its Parquet type: the Python types of its values, and
    for decimals the most digits they have before and after the point."""

    types: set[type] = attrs.field(factory=set)
    scale: int = 0
    digits: int = 0
    finite: bool = True

    def see(self, value: Any) -> None:
        if value is None:
            return
        self.types.add(type(value))
        if isinstance(value, Decimal):
            if not value.is_finite():
                self.finite = False
                return
            exponent = value.as_tuple().exponent
            assert isinstance(exponent, int)
            self.scale = max(self.scale, -exponent)
            self.digits = max(self.digits, value.adjusted() + 1)

    def arrow_type(self, pa: Any) -> Any:
        types = self.types
        if types == {Decimal}:
            if self.finite and max(self.digits, 1) + self.scale <= 38:
                return pa.decimal128(38, self.scale)
            return pa.string()
        if types == {bool}:
            return pa.bool_()
        if types == {int}:
            return pa.int64()
        if types and types <= {int, float}:
            return pa.float64()
        return pa.string()


_TIMES = {"time": ("ts", "ns"), "exchange_time": ("exchange_ts", "ms")}


def write_parquet(
    trace: Trace,
    seqs: np.ndarray[Any, Any],
    out: IO[bytes],
    header: list[str],
    raw: bool = False,
) -> int:
    """The events at ``seqs`` as a Parquet file written to ``out``; returns how many.

    Two passes over the events: the first finds each column's type (a decimal column's
    scale), the second writes row groups of PARQUET_BATCH events, so memory stays bounded.
    """
    pa = require("pyarrow", "writing Parquet")
    pq = require("pyarrow.parquet", "writing Parquet")
    seen = {name: _Column() for name in header}
    for event in events_at(trace, seqs):
        row = event_row(event, raw)
        for name, column in seen.items():
            column.see(row.get(name))
    fields = []
    for name in header:
        if name in _TIMES:
            arrow = pa.timestamp(_TIMES[name][1], tz="UTC")
        else:
            arrow = seen[name].arrow_type(pa)
        fields.append(pa.field(name, arrow))
    schema = pa.schema(fields)
    scalar = {f.name: pa.types.is_string(f.type) for f in fields}
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        batch: dict[str, list[Any]] = {name: [] for name in header}
        for event in events_at(trace, seqs):
            row = event_row(event, raw)
            for name, values in batch.items():
                if name in _TIMES:
                    value = row.get(_TIMES[name][0])
                else:
                    value = row.get(name)
                    if scalar[name] and value is not None and not isinstance(value, str):
                        value = _cell(value)
                values.append(value)
            n += 1
            if len(batch["seq"]) >= PARQUET_BATCH:
                writer.write_table(pa.table(batch, schema=schema))
                batch = {name: [] for name in header}
        if batch["seq"] or n == 0:
            writer.write_table(pa.table(batch, schema=schema))
    return n
