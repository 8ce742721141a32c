"""replay_from_trace, snapshots, checkpoints and verify, trace_tail."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from adapters import synthetic
from eventsrc import (
    Checkpoint,
    ManualClock,
    Note,
    State,
    TickerObserved,
    Trace,
    checkpoint,
    fold,
    reduce,
    replay_from_trace,
    save_snapshot,
    state_hash,
    trace_tail,
    verify,
)
from eventsrc.codec import state_parts
from eventsrc.snapshot import load_snapshot, snapshot_seqs


def write(path: Path, n: int = 600, clock: ManualClock | None = None) -> None:
    with Trace.open(path, "w", durability="none", unit=64, record_chunk=16, clock=clock) as t:
        t.extend(synthetic.stream(n, seed=7))


def test_replay_until_a_seq_or_a_time(trace_path: Path) -> None:
    clock = ManualClock(start_ns=1_700_000_000_000_000_000, step_ns=1_000_000)  # 1 ms apart
    write(trace_path, clock=clock)
    with Trace.open(trace_path) as trace:
        events = trace[:]
        assert replay_from_trace(trace) == fold(events)
        assert replay_from_trace(trace, until=99) == fold(events[:100])
        at = dt.datetime.fromtimestamp(1_700_000_000.2, tz=dt.UTC)  # 200 ms in: events 0..200
        assert replay_from_trace(trace, until=at) == fold(events[:201])
        assert replay_from_trace(trace, until=-1) == State()
        with pytest.raises(ValueError, match="aware"):
            replay_from_trace(trace, until=dt.datetime(2024, 1, 1))
        with pytest.raises(TypeError):
            replay_from_trace(trace, until="yesterday")  # type: ignore[arg-type]


def test_replay_continues_from_a_given_state(trace_path: Path) -> None:
    write(trace_path)
    with Trace.open(trace_path) as trace:
        half = replay_from_trace(trace, until=300)
        assert replay_from_trace(trace, state=half) == replay_from_trace(trace)
        with pytest.raises(ValueError, match="past until"):
            replay_from_trace(trace, until=10, state=half)


def test_replay_starts_from_the_nearest_snapshot(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(trace_path)
    with Trace.open(trace_path) as trace:
        for at in (100, 400):
            save_snapshot(trace, replay_from_trace(trace, until=at))
        assert snapshot_seqs(trace) == [100, 400]
        folded: list[int] = []
        import eventsrc.replay as replay_module

        def counting(state: State, event: object) -> State:
            folded.append(event.seq)  # type: ignore[attr-defined]
            return reduce(state, event)  # type: ignore[arg-type]

        monkeypatch.setattr(replay_module, "reduce", counting)
        full = replay_from_trace(trace)
        assert folded[0] == 401  # started from the snapshot at 400
        folded.clear()
        assert replay_from_trace(trace, until=250) == fold(trace.iter(0, 251))
        assert folded[0] == 101
        monkeypatch.undo()
        assert full == fold(trace)


def test_a_snapshot_that_fails_its_hash_or_is_from_another_reducer_is_ignored(
    trace_path: Path,
) -> None:
    write(trace_path)
    with Trace.open(trace_path) as trace:
        path = save_snapshot(trace, replay_from_trace(trace, until=300))
        good = msgspec.msgpack.decode(path.read_bytes())
        tampered = dict(good, state=good["state"][:-1] + bytes([good["state"][-1] ^ 1]))
        for bad in (
            msgspec.msgpack.encode(tampered),
            msgspec.msgpack.encode(dict(good, reducer=-1)),
            b"not a snapshot",
        ):
            path.write_bytes(bad)
            assert load_snapshot(trace, 300) is None
            assert replay_from_trace(trace) == fold(trace)
        path.write_bytes(msgspec.msgpack.encode(good))
        assert load_snapshot(trace, 300) == fold(trace.iter(0, 301))
        with pytest.raises(ValueError, match="does not fit"):
            save_snapshot(trace, State(seq=10_000))


def test_verify_names_the_first_checkpoint_a_replay_disagrees_with(trace_path: Path) -> None:
    with Trace.open(trace_path, "w", durability="none", unit=64, record_chunk=16) as trace:
        live = State()
        for i, event in enumerate(synthetic.stream(300, seed=3)):
            live = reduce(live, trace[trace.append(event)])
            if i % 50 == 49:
                trace.append(checkpoint(live, source="engine"))
                live = reduce(live, trace[-1])
        assert verify(trace).ok
        # A live run that saw something the trace does not say: its checkpoint disagrees.
        wrong = reduce(live, TickerObserved(asset="BTC/USDT", last=Decimal(1)))
        trace.append(Checkpoint(live.seq, state_hash(wrong), state_parts(wrong)))
        live = reduce(live, trace[-1])
        trace.append(checkpoint(live))
    with Trace.open(trace_path) as trace:
        found = verify(trace)
        assert found.diverged_at == trace[-2].state_seq  # type: ignore[attr-defined]
        assert found.differs == ("last_price",) and not found.ok


def test_verify_rejects_a_checkpoint_of_the_future(trace_path: Path) -> None:
    with Trace.open(trace_path, "w") as trace:
        trace.append(Note("x"))
        trace.append(Checkpoint(5, "00"))
        assert verify(trace).diverged_at == 5


def test_trace_tail_since_a_seq_or_a_time(trace_path: Path) -> None:
    clock = ManualClock(start_ns=1_700_000_000_000_000_000, step_ns=1_000_000)
    write(trace_path, clock=clock)
    with Trace.open(trace_path) as trace:
        tickers = trace_tail(trace, 50, kinds=["ticker_observed"])
        assert [e.kind for e in tickers] == ["ticker_observed"] * 50
        since = tickers[30].seq
        assert trace_tail(trace, 50, kinds=["ticker_observed"], since=since) == tickers[30:]
        at = dt.datetime.fromtimestamp(tickers[40].ts / 1e9, tz=dt.UTC)  # type: ignore[operator]
        assert trace_tail(trace, 50, kinds=["ticker_observed"], since=at) == tickers[40:]


def test_a_snapshot_makes_the_events_it_covers_durable_first(trace_path: Path) -> None:
    with Trace.open(trace_path, "w", durability="none") as trace:
        trace.extend(synthetic.stream(50, seed=5))
        state = replay_from_trace(trace)
        save_snapshot(trace, state)
        with Trace.open(trace_path) as reader:  # sees only what reached the file
            assert len(reader) == 50
            assert load_snapshot(reader, 49) == state


def test_a_snapshot_of_events_lost_in_a_crash_is_ignored(
    trace_path: Path, tmp_path: Path, tail_unsealed: None
) -> None:
    import shutil

    with Trace.open(trace_path, "w", durability="sync") as trace:
        trace.extend(synthetic.stream(50, seed=5))
    shutil.copytree(trace_path / "wal", tmp_path / "wal-at-50")
    with Trace.open(trace_path, "a", durability="sync") as trace:
        trace.extend(synthetic.stream(50, seed=6))
        save_snapshot(trace, replay_from_trace(trace, until=90))
    # The disk loses the last 50 events (say the WAL came back from a backup); the trace
    # goes on with other events under the same seqs.
    shutil.rmtree(trace_path / "wal")
    shutil.copytree(tmp_path / "wal-at-50", trace_path / "wal")
    with Trace.open(trace_path, "a", durability="sync") as trace:
        assert len(trace) == 50
        trace.extend(synthetic.stream(60, seed=7))
    with Trace.open(trace_path) as trace:
        assert snapshot_seqs(trace) == [90]
        assert load_snapshot(trace, 90) is None
        assert replay_from_trace(trace) == fold(trace)
        assert replay_from_trace(trace, until=95) == fold(trace.iter(0, 96))


def test_verify_checks_every_chunk_and_seq_even_without_checkpoints(trace_path: Path) -> None:
    """It used to say "every checkpoint agrees" without reading anything."""
    with Trace.open(trace_path, "w", durability="none", unit=64, record_chunk=16) as trace:
        trace.extend(synthetic.stream(300, seed=9))
    with Trace.open(trace_path) as trace:
        clean = verify(trace)
        sealed = trace.committed
    assert clean.ok and clean.checkpoints_checked == 0
    assert clean.seqs_checked == 300 and clean.chunks_checked > 0 and clean.segments_scanned >= 1
    chunk = trace_path / "record" / "c" / "1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with Trace.open(trace_path) as trace:
        damaged = verify(trace)
    assert not damaged.ok and sealed >= 32
    assert any("record/c/1" in problem for problem in damaged.problems)
