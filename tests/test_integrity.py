"""Trace.check(): every chunk, seq and segment read once; every problem reported, none raised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import pytest

from eventsrc import Note, Trace, TraceRecovered
from eventsrc.trace.segment import list_segments

SMALL: dict[str, Any] = {"unit": 64, "record_chunk": 16}
# 200 events: 3 sealed units of 7 envelope chunks and 4 record chunks each, 8 in a segment
CHUNKS, EVENTS = 3 * (7 + 4), 200


@pytest.fixture(autouse=True)
def _crash_layout(tail_unsealed: None) -> None:
    """Every trace here is as a crash leaves it: its last 8 events in the segment only.
    (test_sealed_tail.py checks traces whose close sealed them.)"""


def write(path: Path, n: int = EVENTS) -> None:
    with Trace.open(path, "w", **SMALL) as trace:
        for i in range(n):
            trace.append(Note(f"{i}:" + "c" * (i % 23), asset=("A/B", None)[i % 2]))


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_clean_trace_checks_clean_and_counts_what_it_read(trace_path: Path, mode: str) -> None:
    write(trace_path)
    with Trace.open(trace_path, mode) as trace:  # type: ignore[arg-type]
        report = trace.check()
    assert report.problems == [] and report.ok
    assert (report.chunks_checked, report.seqs_checked, report.segments_scanned) == (
        CHUNKS,
        EVENTS,
        1,
    )
    assert report.recoveries == [] and report.pending_tail is None


def test_damaged_chunks_in_several_columns_are_each_reported(trace_path: Path) -> None:
    write(trace_path)
    flip(trace_path / "record" / "c" / "0", 20)
    flip(trace_path / "ts" / "c" / "0", -6)
    flip(trace_path / "kind" / "c" / "1", 10)
    (trace_path / "cause" / "c" / "2").unlink()
    with Trace.open(trace_path) as trace:
        report = trace.check()
    assert not report.ok
    for chunk in ("record/c/0", "ts/c/0", "kind/c/1", "cause/c/2"):
        assert any(chunk in p for p in report.problems), (chunk, report.problems)
    assert len(report.problems) == 4
    assert report.chunks_checked == CHUNKS  # it went on past each
    assert report.seqs_checked == EVENTS  # the seq column still vouches for every sealed one


def test_a_column_that_disagrees_with_the_records_is_reported(trace_path: Path) -> None:
    write(trace_path)
    chunk = trace_path / "ts" / "c" / "1"
    zstd = numcodecs.Zstd(level=1)
    ts = np.frombuffer(zstd.decode(chunk.read_bytes()[:-4]), dtype="<i8").copy()
    ts[5] += 1  # a well-formed chunk (its checksum right) holding a wrong value
    body = bytes(zstd.encode(ts.tobytes()))
    chunk.write_bytes(body + google_crc32c.value(body).to_bytes(4, "little"))
    with Trace.open(trace_path) as trace:
        [problem] = trace.check().problems
    assert "ts/c/1" in problem and "event 69" in problem


def test_a_pending_tail_and_recoveries_are_reported(trace_path: Path) -> None:
    write(trace_path)
    segment = list_segments(trace_path / "wal")[-1][1]
    segment.write_bytes(segment.read_bytes()[:-4])  # torn: a crash mid-write
    with Trace.open(trace_path) as reader:
        report = reader.check()
        assert report.problems == []  # a torn tail is no damage
        assert report.pending_tail is not None and report.pending_tail.torn
        assert report.seqs_checked == EVENTS - 1
    Trace.open(trace_path, "a").close()  # sets it aside, records it
    with Trace.open(trace_path) as reader:
        report = reader.check()
    assert report.pending_tail is None and report.problems == []
    [recovered] = report.recoveries
    assert isinstance(recovered, TraceRecovered) and recovered.torn


def test_a_damaged_pending_tail_is_a_problem(trace_path: Path) -> None:
    write(trace_path)
    segment = list_segments(trace_path / "wal")[-1][1]
    flip(segment, -3)
    with Trace.open(trace_path) as reader:
        report = reader.check()
    assert report.pending_tail is not None and not report.pending_tail.torn
    [problem] = report.problems
    assert segment.name in problem and "damaged" in problem


def test_damage_in_a_segment_and_in_the_body_are_both_reported(trace_path: Path) -> None:
    write(trace_path)
    segment = list_segments(trace_path / "wal")[-1][1]
    with Trace.open(trace_path) as reader:  # opened while whole: check() reads disk afresh
        flip(trace_path / "asset" / "c" / "0", 12)
        flip(segment, 40)  # inside the segment's first frame: good frames follow it
        report = reader.check()
    assert len(report.problems) == 2
    assert "asset/c/0" in report.problems[0]
    assert segment.name in report.problems[1] and "good frame follows" in report.problems[1]
    assert report.segments_scanned == 1 and report.seqs_checked == EVENTS - 8
