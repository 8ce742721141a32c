"""Closing a trace seals its last, partial unit into the body, so a closed trace is columnar
data all the way to its end: read by its columns, copied to any Zarr store whole, opened
without parsing its write-ahead segment. The unit's segment stays until the unit fills, and
sealing it whole later rewrites the partial chunks in place of the old ones, atomically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import synthetic
from eventsrc import Trace, replay_from_trace
from eventsrc.codec import state_hash
from eventsrc.events import Event, Note
from eventsrc.replay import fold
from eventsrc.trace import committer
from eventsrc.trace.segment import scan_segment, segment_name
from eventsrc.trace.store import LocalBody, export_body, sink_for

UNIT, CHUNK = 64, 16


def stream(n: int, seed: int = 5) -> list[Event]:
    return list(synthetic.stream(n, seed=seed))


def seqless(events: list[Event]) -> list[Any]:
    return [(type(e).__name__, e.asset, e.source) for e in events]


def test_closing_a_trace_seals_its_partial_unit(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(stream(100))
        written = trace[:]
    with Trace.open(path) as trace:
        assert trace.committed == len(trace) == 100  # every event in the body
        assert trace[:] == written
        assert np.array_equal(trace.column("seq"), np.arange(100))
        assert trace.check().ok, trace.check().problems
    with Trace.open_store(path) as sealed:  # no longer refused as "unsealed"
        assert sealed[:] == written


def test_a_sealed_tail_is_resealed_as_its_unit_grows(tmp_path: Path) -> None:
    path = tmp_path / "t"
    events = stream(200)
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(events[:70])
    for stop in (75, 100, 140, 143, 200):  # within the unit, to its end, past it, ...
        with Trace.open(path, "a") as trace:
            assert len(trace) == trace.committed  # the last close sealed everything
            trace.extend(events[len(trace) : stop])
        with Trace.open(path) as trace:
            assert trace.committed == len(trace) == stop
            assert seqless(trace[:]) == seqless(events[:stop])
            assert trace.check().ok, trace.check().problems
            assert state_hash(replay_from_trace(trace)) == state_hash(fold(events[:stop]))


def test_a_failed_tail_seal_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while sealing the tail at close: the events are durable in the
    write-ahead segment already, so close neither raises nor loses them, and the next writer
    seals over the half-written chunks."""
    path = tmp_path / "t"
    events = stream(150)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(events[:100])
        monkeypatch.setattr(committer, "write_meta", full)  # chunks written, marker not
    monkeypatch.undo()
    with Trace.open(path) as trace:
        assert trace.committed == UNIT and len(trace) == 100
        assert seqless(trace[:]) == seqless(events[:100])
        assert trace.check().ok, trace.check().problems
    with Trace.open(path, "a") as trace:
        trace.extend(events[100:])
    with Trace.open(path) as trace:
        assert trace.committed == len(trace) == 150
        assert seqless(trace[:]) == seqless(events[:150])
        assert trace.check().ok, trace.check().problems


def test_opening_a_closed_trace_skips_the_sealed_part_of_its_segment(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK, durability="sync") as trace:
        for event in stream(100):
            trace.append(event)  # one frame each
    segment = path / "wal" / segment_name(UNIT)
    whole = scan_segment(segment)
    assert whole.first == UNIT and len(whole.records) == 100 - UNIT
    skipped = scan_segment(segment, skip_below=90)  # one frame per event ("sync")
    assert skipped.first <= 90 and len(skipped.records) == 100 - skipped.first
    assert skipped.records == whole.records[skipped.first - UNIT :]
    assert skipped.end == whole.end and skipped.problem is None
    last = scan_segment(segment, skip_below=100)  # the last frame is always split
    assert (last.first, last.records) == (99, whole.records[-1:])
    with Trace.open(path, "a") as trace:  # a writer reopening it reads on from the body
        trace.append(Note("more"))
        assert [e.seq for e in trace[95:]] == list(range(95, 101))


def test_a_closed_trace_exports_whole(tmp_path: Path) -> None:
    path = tmp_path / "t"
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(stream(150))
        written = trace[:]
    for url in (str(tmp_path / "copy"), str(tmp_path / "t.zip"), "memory://sealed-tail/x"):
        assert export_body(LocalBody(path), sink_for(url)) == 150
        with Trace.open_store(url) as copy:
            assert copy[:] == written
            assert np.array_equal(copy.column("ts"), np.array([e.ts for e in written]))


def test_a_segment_damaged_where_the_body_holds_its_events_loses_nothing(
    tmp_path: Path,
) -> None:
    """The body is the truth for the events it holds: a unit's segment torn below the sealed
    length (the disk's doing, not a crash's) neither loses them nor stops the unit sealing."""
    path = tmp_path / "t"
    events = stream(150)
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(events[:100])
        written = trace[:]
    segment = path / "wal" / segment_name(UNIT)
    segment.write_bytes(segment.read_bytes()[:-5])  # event 99's record torn
    with Trace.open(path, "a") as trace:
        assert trace[:100] == written
        trace.extend(events[100:])
    with Trace.open(path) as trace:
        assert trace.committed == len(trace) and trace[:100] == written
        assert seqless(trace[:])[-50:] == seqless(events[100:])
        assert trace.check().ok, trace.check().problems


@pytest.fixture(scope="module")
def three_tiers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A trace whose events lie in every tier: sealed units, a partial unit sealed at close,
    then more in the segment (a crash's layout)."""
    path = tmp_path_factory.mktemp("tiers") / "t"
    events = stream(300, seed=8)
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(events[:150])  # 2 units sealed whole, 22 events sealed at close
    with Trace.open(path, "a") as writer:  # still open: its events in the segment only
        writer.extend(events[150:])
        writer.flush()
        yield path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_records_at_reads_exactly_the_records_asked_for(
    three_tiers: Path, data: st.DataObject
) -> None:
    with Trace.open(three_tiers) as trace:
        n = len(trace)
        assert 0 < trace.committed < n
        seqs = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=80)))
        everything = list(trace.records())
        assert list(trace.records_at(seqs)) == [everything[s] for s in seqs]
        assert list(trace.records_at(np.asarray(seqs, dtype=np.int64))) == [
            everything[s] for s in seqs
        ]
    with Trace.open(three_tiers) as trace, pytest.raises(IndexError):
        list(trace.records_at([n]))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(-320, 320), st.one_of(st.none(), st.integers(-320, 320)))
def test_a_column_range_is_the_slice_of_the_whole_column(
    three_tiers: Path, start: int, stop: int | None
) -> None:
    with Trace.open(three_tiers) as trace:
        for name in ("seq", "ts", "kind"):
            assert np.array_equal(trace.column(name, start, stop), trace.column(name)[start:stop])
