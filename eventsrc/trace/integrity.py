"""The integrity check behind ``Trace.check()``: every sealed chunk, every seq and every
write-ahead segment of a trace, read from disk once, every problem reported rather than the
first raised (for ``verify`` and ``stats``).

What it reads: each column's chunks of the sealed body (crc32c, zstd, size) and the record
column's items (count, each record's stored seq); the ``seq`` column against ``0..n-1``; the
envelope columns against the records' own envelopes; the unsealed write-ahead segments with
the checks opening makes (recovery.py); and, through the ``kind`` column, the TraceRecovered
events the trace holds. A trace a writer is appending to may move on meanwhile: the check
describes what the commit marker said when it started.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from eventsrc.errors import TraceCorrupted, TraceError
from eventsrc.events import Event, TraceRecovered
from eventsrc.trace.body import COLUMNS, BodyReader, body_metadata
from eventsrc.trace.marker import read_meta
from eventsrc.trace.record import Record, envelope_table, read_items
from eventsrc.trace.recovery import Tail, survey, tail_of
from eventsrc.trace.tables import CodeTables

__all__ = ["Integrity", "check_trace"]


@attrs.frozen
class Integrity:
    """What ``Trace.check()`` found."""

    chunks_checked: int
    """Sealed chunk files read and checked, every column's."""
    seqs_checked: int
    """Events whose seq was checked (sealed: the ``seq`` column or their records; unsealed:
    their write-ahead records) to be dense from 0."""
    segments_scanned: int
    """Unsealed write-ahead segment files read."""
    recoveries: list[Event]
    """The TraceRecovered events the trace holds, oldest first."""
    pending_tail: Tail | None
    """An unreadable end of the last segment that no writer has set aside yet."""
    problems: list[str]
    """Everything found wrong, each naming its file and the offset or seq."""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_trace(root: Path, decode: Callable[[Record], Event]) -> Integrity:
    """Check the trace at ``root`` (see the module docstring); ``decode`` turns a record into
    its event. Raises only if the trace cannot be read at all (it is not one, say)."""
    meta = read_meta(root)
    for _attempt in range(10):
        try:
            return _check(root, meta, decode)
        except FileNotFoundError:
            meta = read_meta(root)  # a segment was sealed and removed meanwhile: look again
    raise TraceError(f"trace {root} changed too fast to check")


def _check(root: Path, meta: dict[str, Any], decode: Callable[[Record], Event]) -> Integrity:
    committed, unit, record_chunk = meta["committed"], meta["unit"], meta["record_chunk"]
    where = f"trace {root}"
    problems: list[str] = []
    try:
        tables = CodeTables.from_marker(meta, where)
    except TraceCorrupted as exc:
        problems.append(str(exc))
        tables = CodeTables()
    recovered_kinds = _codes_of(tables, TraceRecovered.kind)
    try:
        for name, doc in body_metadata(root, unit, record_chunk).items():
            if doc["shape"][0] < committed:
                problems.append(
                    f"{root / name / 'zarr.json'}: the array holds {doc['shape'][0]} rows, "
                    f"fewer than the {committed} sealed events"
                )
    except TraceCorrupted as exc:
        problems.append(str(exc))

    body = BodyReader(root, record_chunk)
    at_body = f"trace body at {root}: chunk"
    chunks = 0
    seqs = 0
    recovered: list[Record] = []
    per_unit = unit // record_chunk
    for index in range(-(-committed // unit)):  # the last unit may be partial (closing seals it)
        start = index * unit
        held = min(unit, committed - start)
        columns: dict[str, np.ndarray[Any, Any]] = {}
        for name in COLUMNS:
            chunks += 1
            try:
                columns[name] = body.column_chunk(name, index, unit)[:held]
            except TraceError as exc:
                problems.append(str(exc))
        checked = np.zeros(held, dtype=bool)
        if "seq" in columns:
            checked[:] = True
            _compare(problems, f"{at_body} seq/c/{index}", columns["seq"], start, "seq", None)
        for j in range(-(-held // record_chunk)):
            chunk = index * per_unit + j
            first = start + j * record_chunk
            valid = min(record_chunk, held - j * record_chunk)
            chunks += 1
            try:
                items = body.record_chunk(chunk, valid)[:valid]
            except TraceError as exc:
                problems.append(str(exc))
                continue
            table = envelope_table(items, prefixed=False)
            at = slice(j * record_chunk, j * record_chunk + valid)
            checked[at] = True
            _compare(problems, f"{at_body} record/c/{chunk}", table["seq"], first, "seq", None)
            for name, values in columns.items():
                _compare(problems, f"{at_body} {name}/c/{index}", values[at], first, name, table)
            for i in np.flatnonzero(np.isin(table["kind"], recovered_kinds)).tolist():
                seq = first + i
                recovered.append(next(read_items(items, False, first, seq, seq + 1, where)))
        seqs += int(checked.sum())

    unsealed = survey(root, committed, unit, tables)
    problems.extend(unsealed.problems)
    recovered_kinds = _codes_of(tables, TraceRecovered.kind)  # with the segments' definitions
    records = unsealed.records
    seqs += len(records)
    stop = committed + len(records)
    recovered.extend(
        record
        for record in read_items(records, True, committed, committed, stop, where)
        if record[2] in recovered_kinds
    )
    pending = None if unsealed.tail is None else tail_of(unsealed.tail)
    if pending is not None and not pending.torn:
        problems.append(
            f"{root / 'wal' / pending.segment}: {pending.reason} (the next writer sets it aside)"
        )
    recoveries: list[Event] = []
    for record in recovered:
        try:
            recoveries.append(decode(record))
        except TraceError as exc:
            problems.append(str(exc))
    return Integrity(chunks, seqs, unsealed.files, recoveries, pending, problems)


def _codes_of(tables: CodeTables, kind: str) -> list[int]:
    return [code for code, (name, _) in enumerate(tables.kinds) if name == kind]


def _compare(
    problems: list[str],
    chunk: str,
    values: np.ndarray[Any, Any],
    first: int,
    name: str,
    records: np.ndarray[Any, Any] | None,
) -> None:
    """A problem if ``values`` (events ``first..``) differ from the records' ``name`` (or, with
    no records, from the seqs themselves)."""
    expected = np.arange(first, first + len(values)) if records is None else records[name]
    wrong = np.flatnonzero(values != expected)
    if len(wrong):
        seq = first + int(wrong[0])
        against = "its seq" if records is None else "the event's record"
        problems.append(
            f"{chunk}: {name} of event {seq} is {values[wrong[0]]}, not {expected[wrong[0]]} "
            f"({against}; {len(wrong)} value(s) differ)"
        )
