"""Reads agree whichever tier holds an event: the memory ring, an unsealed write-ahead segment,
or the sealed body. A tiny ring (``in_memory``) makes all three appear in small traces."""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsrc import Event, Note, Trace
from eventsrc.testing import events

RING = 16


def content(event: Event) -> tuple[object, ...]:
    return tuple(getattr(event, a.name) for a in attrs.fields(type(event)) if a.name != "ts")


@pytest.mark.parametrize("durability", ["sync", "group", "none"])
def test_every_tier_reads_back_what_was_written(trace_path: Path, durability: str) -> None:
    written = [Note(f"{i}", asset=("A/B", "C/D", None)[i % 3]) for i in range(700)]
    with Trace.open(
        trace_path,
        "w",
        durability,  # type: ignore[arg-type]
        unit=256,
        record_chunk=64,
        in_memory=RING,
    ) as trace:
        for event in written:
            trace.append(event)
        trace.flush()
        # some events are sealed, some only in a segment (memory holds at most 2 * RING)
        assert trace.committed < len(trace) - 2 * RING
        check(trace, written)
    with Trace.open(trace_path, in_memory=RING) as reader:
        check(reader, written)


def check(trace: Trace, written: list[Note]) -> None:
    back = trace[:]
    assert [e.seq for e in back] == list(range(len(written)))
    assert [e.text for e in back] == [e.text for e in written]  # type: ignore[attr-defined]
    for seq in (0, 255, 256, 300, 511, 600, len(written) - 17, len(written) - 1):
        assert trace[seq] == back[seq]
    assert trace[100:650:7] == back[100:650:7]
    np.testing.assert_array_equal(trace.column("seq"), np.arange(len(written)))
    assets = trace.code_table("asset")
    assert [assets[c] for c in trace.column("asset")] == [e.asset for e in written]
    expected = [e for e in back if e.asset == "C/D"][-50:]
    assert trace.tail(50, asset="C/D") == expected
    assert trace.tail(100) == back[-100:]


@settings(max_examples=20)
@given(stream=st.lists(events(), min_size=1, max_size=300), n=st.integers(1, 80))
def test_tail_across_tiers_equals_the_filtered_slice(
    tmp_path_factory: pytest.TempPathFactory, stream: list[Event], n: int
) -> None:
    path = tmp_path_factory.mktemp("tiers") / "trace"
    with Trace.open(path, "w", "none", unit=128, record_chunk=32, in_memory=RING) as trace:
        for event in stream:
            trace.append(event)
        everything = trace[:]
        assert [content(e) for e in everything] == [
            content(attrs.evolve(e, seq=i)) for i, e in enumerate(stream)
        ]
        for kinds in (["note"], ["ticker_observed", "order_observed"], None):
            expected = [e for e in everything if kinds is None or e.kind in kinds][-n:]
            assert trace.tail(n, kinds=kinds) == expected
