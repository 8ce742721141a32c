"""The trace: appending, reading back, the body/tail split, modes, locks and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import synthetic
from eventsrc import (
    NO_EXCHANGE_TS,
    Decision,
    Event,
    EventNotSerializable,
    ManualClock,
    NotATrace,
    Note,
    TickerObserved,
    Trace,
    TraceClosed,
    TraceExists,
    TraceLocked,
    TraceNotFound,
    TraceReadOnly,
    TraceVersionError,
    UnknownEventKind,
)
from eventsrc.testing import events

SMALL: dict[str, Any] = {"unit": 64, "record_chunk": 16}


def unstamped(event: Event) -> tuple[type, tuple[object, ...]]:
    """An event's identity without the stamps a trace adds."""
    import attrs

    values = tuple(
        getattr(event, a.name) for a in attrs.fields(type(event)) if a.name not in ("seq", "ts")
    )
    return type(event), values


def notes(n: int, start: int = 0) -> list[Note]:
    return [
        Note(f"{i}:" + "x" * (i % 37), asset=("BTC/USDT", "ETH/USDT", None)[i % 3], source="t")
        for i in range(start, start + n)
    ]


def test_append_returns_dense_seqs_and_stamps_ts(trace_path: Path, clock: ManualClock) -> None:
    with Trace.open(trace_path, "w", clock=clock, **SMALL) as trace:
        seqs = [trace.append(e) for e in notes(200)]
        assert seqs == list(range(200))
        assert len(trace) == 200
        first = trace[0]
        assert first.seq == 0 and first.ts == 1_700_000_000_000_000_000
        assert trace[199].ts == 1_700_000_000_000_000_000 + 199_000


def test_reopen_after_close_reads_every_event(trace_path: Path) -> None:
    written = list(synthetic.stream(700, seed=3))
    with Trace.open(trace_path, "w", **SMALL) as trace:
        assert trace.extend(written) == range(700)
    with Trace.open(trace_path) as trace:
        assert len(trace) == 700
        assert trace.committed == 700  # closing sealed the last, partial unit too
        back = list(trace)
    assert [e.seq for e in back] == list(range(700))
    assert [unstamped(e) for e in back] == [unstamped(e) for e in written]
    with Trace.open(trace_path, "a", **SMALL) as trace:
        assert trace.append(Note("more")) == 700
    with Trace.open(trace_path) as trace:
        assert len(trace) == 701 and trace[-1] == trace[700]


@pytest.mark.parametrize("durability", ["sync", "group", "none"])
def test_each_durability_keeps_everything_after_close(trace_path: Path, durability: str) -> None:
    with Trace.open(trace_path, "w", durability=durability, **SMALL) as trace:  # type: ignore[arg-type]
        for e in notes(300):
            trace.append(e)
        trace.flush()
    with Trace.open(trace_path) as trace:
        assert [e.text for e in trace] == [e.text for e in notes(300)]  # type: ignore[attr-defined]


def test_indexing_and_slices(trace_path: Path) -> None:
    with Trace.open(trace_path, "w", **SMALL) as trace:
        trace.extend(notes(150))
    with Trace.open(trace_path) as trace:
        texts = [e.text for e in notes(150)]
        assert trace[-1].text == texts[-1]  # type: ignore[attr-defined]
        assert [e.text for e in trace[10:20]] == texts[10:20]  # type: ignore[attr-defined]
        assert [e.text for e in trace[5:140:7]] == texts[5:140:7]  # type: ignore[attr-defined]
        assert [e.seq for e in trace[-3:]] == [147, 148, 149]
        assert [e.seq for e in trace.iter(60, 70)] == list(range(60, 70))
        with pytest.raises(IndexError):
            trace[150]
        with pytest.raises(IndexError):
            trace[-151]


def test_columns_match_events(trace_path: Path) -> None:
    written = list(synthetic.stream(500, seed=1))
    with Trace.open(trace_path, "w", **SMALL) as trace:
        trace.extend(written)
        np.testing.assert_array_equal(trace.column("seq"), np.arange(500))
    with Trace.open(trace_path) as trace:
        back = list(trace)
        np.testing.assert_array_equal(trace.column("seq"), np.arange(500))
        np.testing.assert_array_equal(trace.column("ts"), [e.ts for e in back])
        exch = [NO_EXCHANGE_TS if e.exchange_ts is None else e.exchange_ts for e in back]
        np.testing.assert_array_equal(trace.column("exchange_ts"), exch)
        kinds = trace.code_table("kind")
        assert [kinds[c][0] for c in trace.column("kind")] == [e.kind for e in back]
        assets = trace.code_table("asset")
        assert [assets[c] for c in trace.column("asset")] == [e.asset for e in back]
        with pytest.raises(KeyError, match="columns are"):
            trace.column("price")


def test_cause_column_holds_seqs(trace_path: Path) -> None:
    with Trace.open(trace_path, "w") as trace:
        first = trace.append(Note("command"))
        trace.append(Note("answer", cause=first))
        trace.append(Note("by client id", cause="cli-1"))
        np.testing.assert_array_equal(trace.column("cause"), [-1, 0, -1])
        assert trace[2].cause == "cli-1"


@settings(max_examples=25)
@given(
    stream=st.lists(events(), min_size=1, max_size=260),
    n=st.integers(1, 120),
    kinds=st.none()
    | st.sets(
        st.sampled_from(
            ["note", "ticker_observed", "order_observed", "trade_observed", "decision"]
        ),
        max_size=3,
    ),
    asset=st.none() | st.sampled_from(["BTC/USDT", "ETH/USDT", "NOPE/USDT"]),
)
def test_tail_equals_filtered_slice(
    tmp_path_factory: pytest.TempPathFactory,
    stream: list[Event],
    n: int,
    kinds: set[str] | None,
    asset: str | None,
) -> None:
    path = tmp_path_factory.mktemp("tail") / "trace"
    with Trace.open(path, "w", durability="none", unit=32, record_chunk=8) as trace:
        trace.extend(stream)
    with Trace.open(path) as trace:
        everything = trace[:]
        expected = [
            e
            for e in everything
            if (kinds is None or e.kind in kinds) and (asset is None or e.asset == asset)
        ][-n:]
        assert trace.tail(n, kinds=kinds, asset=asset) == expected
        assert trace.tail(100) == trace[-100:]


def test_tail_reaches_into_the_body_and_accepts_classes(trace_path: Path) -> None:
    with Trace.open(trace_path, "w", **SMALL) as trace:
        trace.append(TickerObserved(asset="BTC/USDT", bid=Decimal(1)))
        trace.extend(notes(1000))
        trace.append(TickerObserved(asset="BTC/USDT", bid=Decimal(2)))
        got = trace.tail(5, kinds=[TickerObserved])
        assert [e.seq for e in got] == [0, 1001]
        assert trace.tail(100) == trace[-100:]
        assert trace.tail(3, asset="NOPE") == []
        assert trace.tail(0) == []


def test_extend_is_all_or_nothing(trace_path: Path) -> None:
    with Trace.open(trace_path, "w") as trace:
        trace.append(Note("before"))
        bad = [Note("a", asset="NEW/ASSET"), Decision("x", values={"n": 2**70})]
        with pytest.raises(EventNotSerializable):
            trace.extend(bad)
        assert len(trace) == 1
        assert trace.code_table("asset") == [None]
        trace.append(Note("after", asset="OTHER/ASSET"))
    with Trace.open(trace_path) as trace:
        assert [e.text for e in trace] == ["before", "after"]  # type: ignore[attr-defined]
        assert trace.code_table("asset") == [None, "OTHER/ASSET"]


def test_bad_events_raise_before_anything_is_written(trace_path: Path) -> None:
    with Trace.open(trace_path, "w") as trace:
        trace.append(Note("ok"))
        with pytest.raises(EventNotSerializable):
            trace.append(Decision("x", values={"n": 2**70}))
        with pytest.raises(EventNotSerializable, match="cause"):
            trace.append(Note("x", cause=-5))
        with pytest.raises(EventNotSerializable, match="out of range"):
            trace.append(Note("x", exchange_ts=2**63))
        with pytest.raises(UnknownEventKind):
            trace.append("not an event")  # type: ignore[arg-type]
        assert trace.append(Note("still ok")) == 1
    with Trace.open(trace_path) as trace:
        assert [e.text for e in trace] == ["ok", "still ok"]  # type: ignore[attr-defined]


def test_mode_w_never_overwrites(trace_path: Path) -> None:
    Trace.open(trace_path, "w").close()
    with pytest.raises(TraceExists):
        Trace.open(trace_path, "w")


def test_mode_r_needs_a_trace(tmp_path: Path) -> None:
    with pytest.raises(TraceNotFound, match="no trace at"):
        Trace.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    with pytest.raises(NotATrace):
        Trace.open(tmp_path / "plain")
    with pytest.raises(NotATrace):
        Trace.open(tmp_path / "plain", "a")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotATrace):
        Trace.open(tmp_path / "file")


def test_a_zarr_group_that_is_not_a_trace(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(tmp_path / "group", mode="w").attrs["something"] = 1
    with pytest.raises(NotATrace, match="not an eventsrc trace"):
        Trace.open(tmp_path / "group")


def test_newer_format_version_is_refused(trace_path: Path) -> None:
    Trace.open(trace_path, "w").close()
    meta_path = trace_path / "zarr.json"
    doc = json.loads(meta_path.read_text())
    doc["attributes"]["eventsrc"]["format_version"] = 99
    meta_path.write_text(json.dumps(doc))
    for mode in ("r", "a"):
        with pytest.raises(TraceVersionError, match="format version 99"):
            Trace.open(trace_path, mode)


def test_mode_a_creates_a_missing_trace_and_an_empty_directory(tmp_path: Path) -> None:
    with Trace.open(tmp_path / "deep" / "new", "a") as trace:
        trace.append(Note("x"))
    (tmp_path / "empty").mkdir()
    with Trace.open(tmp_path / "empty", "a") as trace:
        trace.append(Note("y"))
    assert len(Trace.open(tmp_path / "empty")) == 1


def test_read_only_and_closed_traces_refuse_writes(trace_path: Path) -> None:
    Trace.open(trace_path, "w").close()
    reader = Trace.open(trace_path)
    with pytest.raises(TraceReadOnly):
        reader.append(Note("x"))
    reader.close()
    with pytest.raises(TraceClosed):
        reader.tail(1)
    writer = Trace.open(trace_path, "a")
    writer.close()
    with pytest.raises(TraceClosed):
        writer.append(Note("x"))


def test_bad_arguments_are_clear(trace_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        Trace.open(trace_path, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="durability"):
        Trace.open(trace_path, "w", durability="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="multiple"):
        Trace.open(trace_path, "w", unit=100, record_chunk=64)


def test_second_writer_in_the_same_process_is_refused(trace_path: Path) -> None:
    with Trace.open(trace_path, "w") as trace:
        trace.append(Note("x"))
        with pytest.raises(TraceLocked, match=r"already open for writing by pid \d+"):
            Trace.open(trace_path, "a")
        assert len(Trace.open(trace_path)) == 1  # readers are welcome
    with Trace.open(trace_path, "a") as trace:  # released on close
        assert len(trace) == 1


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_second_writer_in_another_process_is_refused(trace_path: Path) -> None:
    import os

    with Trace.open(trace_path, "w") as trace:
        trace.append(Note("mine"))
        done = run_python(
            """
            import sys
            from eventsrc import Trace, TraceLocked, Note
            try:
                Trace.open(sys.argv[1], "a")
            except TraceLocked as exc:
                print(exc)
            else:
                print("OPENED")
            """,
            str(trace_path),
        )
        assert done.returncode == 0, done.stderr
        assert f"pid {os.getpid()}" in done.stdout
        assert str(trace_path) in done.stdout
        assert len(trace) == 1
    with Trace.open(trace_path) as trace:
        assert len(trace) == 1


READER = """
import sys, json
from eventsrc import Trace
path, target = sys.argv[1], int(sys.argv[2])
reader = Trace.open(path)
seen, views = 0, 0
while True:
    n = len(reader)
    assert n >= seen, (n, seen)
    # every view is a dense prefix with the right contents
    for event in reader.iter(max(0, n - 40)):
        assert event.text.split(":")[0] == str(event.seq), (event.seq, event.text)
    assert [int(x) for x in reader.column("seq")] == list(range(n))
    seen, views = n, views + 1
    if n >= target:
        break
    reader.refresh()
print(json.dumps({"views": views, "seen": seen}))
"""


def test_reader_in_another_process_while_a_writer_appends(trace_path: Path) -> None:
    total = 3000
    with Trace.open(trace_path, "w", durability="group", **SMALL) as trace:
        trace.append(Note("0:"))
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(trace_path), str(total)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(1, total):
            trace.append(Note(f"{i}:" + "y" * (i % 50)))
            if i % 50 == 0:
                trace.flush()
        trace.flush()
        out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    result = json.loads(out)
    assert result["seen"] == total
    assert result["views"] > 1  # it really read while the writer was appending


def test_zarr_python_reads_the_body_as_the_trace_does(trace_path: Path) -> None:
    """The body is plain Zarr v3: zarr-python reads every column and record the trace wrote."""
    import zarr

    written = list(synthetic.stream(300, seed=5))
    with Trace.open(trace_path, "w", **SMALL) as trace:
        trace.extend(written)
    with Trace.open(trace_path) as trace:
        sealed = trace.committed
        group: Any = zarr.open_group(trace_path, mode="r")
        assert group.attrs["eventsrc"]["committed"] == sealed
        for name in ("seq", "ts", "kind", "asset", "exchange_ts", "cause", "source"):
            np.testing.assert_array_equal(group[name][:sealed], trace.column(name)[:sealed])
        records: list[bytes] = list(group["record"][:sealed])
        back = trace[:sealed]
        for item, event in zip(records, back, strict=True):
            assert int.from_bytes(item[:8], "little") == event.seq
            assert msgspec.msgpack.decode(item[42:])["source"] == event.source


def test_zarr_python_reads_a_new_empty_trace(trace_path: Path) -> None:
    """A new trace's body metadata is written without zarr-python; zarr-python reads it."""
    import zarr

    Trace.open(trace_path, "w").close()
    group: Any = zarr.open_group(trace_path, mode="r")
    assert group.attrs["eventsrc"]["committed"] == 0
    for name in ("seq", "ts", "kind", "asset", "exchange_ts", "cause", "source"):
        array = group[name]
        assert array.shape == (0,) and array.chunks == (32768,)
        assert array.dtype == np.dtype(array.dtype.name)  # a plain numpy integer type
    assert group["kind"].dtype == np.uint16 and group["ts"].dtype == np.int64
    assert group["record"].shape == (0,) and group["record"].chunks == (4096,)
    assert list(group["record"][:]) == []
