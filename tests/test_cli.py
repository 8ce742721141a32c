"""The command line's read-only commands say what a trace holds, value by value; errors are
one line, not a traceback (the demo has tests/test_demo.py)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from adapters import synthetic
from adapters.cli import main
from adapters.sim import SimExchange
from adapters.venue import CcxtVenue
from eventsrc import (
    REGISTRY,
    BalanceObserved,
    Checkpoint,
    Engine,
    Event,
    EventRegistry,
    LocalCheckFailed,
    Note,
    OrderAcknowledged,
    OrderObserved,
    OrderRequested,
    StrategyStarted,
    Trace,
    TraceLocked,
    TradeObserved,
    checkpoint,
    replay_from_trace,
    state_hash,
    verify,
)
from projections.equity import history
from projections.lifecycles import lifecycles
from projections.summary import valuation


def record(path: Path, events: int) -> None:
    """A trace of ``events`` synthetic events and a note (what the old demo wrote)."""
    with Trace.open(path, "a") as trace:
        trace.extend(synthetic.stream(events, seed=0))
        trace.append(Note(f"{events} synthetic events"))


def test_tail_filters_and_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo"
    record(path, 500)
    capsys.readouterr()
    assert main(["tail", str(path), "-n", "3", "--kind", "ticker_observed", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 3
    assert {e["kind"] for e in events} == {"ticker_observed"}
    assert all("raw" not in e for e in events)


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eventsrc: error: no trace at")
    assert len(err.strip().splitlines()) == 1


def test_replay_verify_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from eventsrc import Checkpoint, checkpoint, replay_from_trace

    path = tmp_path / "demo"
    record(path, 400)
    capsys.readouterr()
    assert main(["replay", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seq"] == 400 and summary["main_currency"] == "USDT"
    assert main(["stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["events"] == 401 and sum(stats["kinds"].values()) == 401
    with Trace.open(path, "a") as trace:
        trace.append(checkpoint(replay_from_trace(trace)))
    assert main(["verify", str(path)]) == 0
    assert "agrees" in capsys.readouterr().out
    with Trace.open(path, "a") as trace:
        trace.append(Checkpoint(100, "0" * 64))
    assert main(["verify", str(path), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert (found["ok"], found["diverged_at"], found["checkpoints_checked"]) == (False, 100, 1)
    assert found["seqs_checked"] == 403 and not found["problems"]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_bad_arguments_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--trace", str(tmp_path / "t"), "--seed", "-5"]) == 2
    err = one_line_error(capsys)
    assert "--seed" in err and "-5" in err
    assert not (tmp_path / "t").exists()
    assert main(["tail", str(tmp_path), "-n", "-1"]) == 2
    assert "-n" in one_line_error(capsys)


def test_a_file_system_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["demo", "--trace", str(blocker / "trace"), "--seconds", "5"]) != 0
    assert str(blocker) in one_line_error(capsys)


def test_stats_counts_recoveries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo"
    record(path, 50)
    segment = sorted((path / "wal").iterdir())[-1]
    segment.write_bytes(segment.read_bytes()[:-5])
    Trace.open(path, "a").close()  # sets the torn tail aside and records it
    capsys.readouterr()
    assert main(["stats", str(path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["recoveries"] == 1 and stats["problems"] == []


def test_stats_lists_integrity_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "demo"
    with Trace.open(path, "w", unit=64, record_chunk=16) as trace:
        trace.extend(Note(f"{i}") for i in range(100))
    chunk = path / "kind" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[5] ^= 1
    chunk.write_bytes(bytes(data))
    assert main(["stats", str(path), "--json"]) == 1
    out, err = capsys.readouterr()
    stats = json.loads(out)
    assert err == "" and stats["events"] == 100 and stats["kinds"] is None
    [problem] = stats["problems"]
    assert "kind/c/0" in problem


# ---------------------------------------------------------------------------------------------
# The read-only commands, on a trace a live engine recorded against the simulated exchange


D = Decimal
SPOT = ("BTC/USDT", "ETH/USDT")
REPO = Path(__file__).resolve().parents[1]


def record_run(path: Path) -> None:
    """A live run in virtual time: market buys and sells on two assets, one limit order left
    resting (open), one refused before it reached the venue (not enough cash)."""
    ex = SimExchange(seed=11)

    async def run() -> None:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for i in range(4):
                side = "buy" if i % 2 == 0 else "sell"
                await engine.create_order("BTC/USDT", side, D("0.01"), type="market")
                await engine.create_order("ETH/USDT", side, D("0.1"), type="market")
            ticker = await ex.fetch_ticker("BTC/USDT")
            low = D(str(round(ticker["bid"] * 0.5, 1)))
            await engine.create_order("BTC/USDT", "buy", D("0.01"), low, waitfor=1.0)
            await engine.create_order("BTC/USDT", "buy", D(1000), low, waitfor=1.0)

    asyncio.run(run())


@pytest.fixture(scope="module")
def run_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded run (module-wide: tests that change a trace copy it first)."""
    path = tmp_path_factory.mktemp("run") / "trace"
    record_run(path)
    with Trace.open(path) as trace:
        state = replay_from_trace(trace)
        events = trace[:]
    # What the tests below rely on the run to hold:
    assert any(o.status == "open" for o in state.orders.values())
    assert sum(len(o.fills) for o in state.orders.values()) >= 8
    assert any(isinstance(e, LocalCheckFailed) for e in events)
    assert any(isinstance(e, Checkpoint) for e in events)
    assert any(isinstance(e, OrderAcknowledged) and isinstance(e.cause, str) for e in events)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> Any:
    assert main(list(argv)) == status, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert err == ""
    return json.loads(out)


def run_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[Any]:
    assert main(list(argv)) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def fails(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 2) -> str:
    """Run a command that must fail: its status, and its error as one line (returned)."""
    assert main(list(argv)) == status
    err = one_line_error(capsys)
    assert err.startswith("eventsrc")
    return err


def plain(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def iso(ns: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- replay -----------------------------------------------------------------------------------


def test_replay_json_is_the_state_replay_from_trace_folds(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_json(capsys, "replay", str(run_trace), "--json", "--fills", "5")
    with Trace.open(run_trace) as trace:
        state = replay_from_trace(trace)
        assert summary["events"] == len(trace)
    assert summary["seq"] == state.seq and summary["state_hash"] == state_hash(state)
    assert summary["main_currency"] == "USDT" and summary["universe"] == list(SPOT)
    assert summary["cash"] == {
        c: {"free": plain(v.free), "used": plain(v.used), "total": plain(v.total)}
        for c, v in state.cash.items()
    }
    finished = {"closed", "canceled", "expired", "rejected", "failed"}
    open_orders = {o.order_id for o in state.orders.values() if o.status not in finished}
    assert {o["order_id"] for o in summary["open_orders"]} == open_orders
    [resting] = summary["open_orders"]
    order = state.orders[resting["order_id"]]
    assert (resting["price"], resting["amount"], resting["filled"]) == (
        plain(order.price),
        plain(order.amount),
        plain(order.filled),
    )
    fills = sorted(
        (f for o in state.orders.values() for f in o.fills if f.amount),
        key=lambda f: (f.seq, f.exchange_ts or 0, f.trade_id or ""),
    )
    assert summary["fills"] == len(fills)
    assert [(f["order_id"], f["amount"], f["price"], f["cost"]) for f in summary["last_fills"]] == [
        (f.order_id, plain(f.amount), plain(f.price), plain(f.cost)) for f in fills[-5:]
    ]
    assert all(
        f["fees"] == {c: plain(v) for c, v in fill.fees}
        for f, fill in zip(summary["last_fills"], fills[-5:], strict=True)
    )
    assert summary["last_price"] == {s: plain(p) for s, p in state.last_price.items()}
    worth = sum(
        (v.total * (D(1) if c == "USDT" else state.last_price[f"{c}/USDT"]))
        for c, v in state.cash.items()
    )
    assert D(summary["equity"]["value"]) == worth and summary["equity"]["currency"] == "USDT"
    assert summary["anomalies"] == []
    assert summary["orders_by_status"] == dict(
        sorted(
            Counter(o.status for o in [*state.orders.values(), *state.requests.values()]).items()
        )
    )


def test_replay_until_a_seq_or_a_time_folds_that_far(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Trace.open(run_trace) as trace:
        at_50 = replay_from_trace(trace, until=50)
        ts = trace.column("ts").tolist()
    summary = run_json(capsys, "replay", str(run_trace), "--until", "50", "--json")
    assert (summary["seq"], summary["state_hash"]) == (50, state_hash(at_50))
    # A time: every event recorded at or before it (printed times are read back as UTC).
    moment = iso(ts[60])
    last = max(seq for seq, t in enumerate(ts) if t <= ts[60])
    assert last >= 60
    summary = run_json(capsys, "replay", str(run_trace), "--until", moment, "--json")
    with Trace.open(run_trace) as trace:
        expected = replay_from_trace(trace, until=last)
    assert (summary["seq"], summary["state_hash"]) == (last, state_hash(expected))
    naive = moment.removesuffix("Z")
    assert run_json(capsys, "replay", str(run_trace), "--until", naive, "--json") == summary


def test_replay_prints_plain_decimals_and_iso_times(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(run_trace)]) == 0
    out = capsys.readouterr().out
    with Trace.open(run_trace) as trace:
        state = replay_from_trace(trace)
    usdt = state.cash["USDT"]
    assert re.search(
        rf"^\s+USDT\s+{re.escape(plain(usdt.free) or '')}\s+{re.escape(plain(usdt.used) or '')}"
        rf"\s+{re.escape(plain(usdt.total) or '')}$",
        out,
        re.M,
    )
    assert state_hash(state) in out and "open orders (1)" in out
    assert "Decimal(" not in out and "immutables" not in out
    assert not re.search(r"(?<![\w.])\d+(\.\d+)?[eE][+-]?\d+(?![\w.])", out)  # no exponent
    assert re.search(
        r"^\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\s+\d+\s+BTC/USDT\s+buy", out, re.M
    )


def test_replay_lists_anomalies_with_their_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t"
    trade = TradeObserved(
        trade_id="t1", order_id="o1", asset="BTC/USDT", side="buy", price=D(100), amount=D(1)
    )
    with Trace.open(path, "w") as trace:
        trace.append(StrategyStarted("USDT", SPOT))
        trace.append(trade)
        trace.append(attrs.evolve(trade, price=D(101)))
        state = replay_from_trace(trace)
    [(seq, anomaly)] = state.anomalies.items()
    summary = run_json(capsys, "replay", str(path), "--json")
    assert summary["anomalies"] == [{"seq": seq, "kind": anomaly.kind, "reason": anomaly.reason}]
    assert main(["replay", str(path)]) == 0
    assert f"seq {seq} ({anomaly.kind}): {anomaly.reason}" in capsys.readouterr().out


def test_replay_refuses_what_is_not_a_seq_or_a_time_in_the_trace(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Trace.open(run_trace) as trace:
        n, first = len(trace), trace[0].ts
    assert first is not None
    assert "0 or more" in fails(capsys, "replay", str(run_trace), "--until", "-3")
    assert "ISO-8601" in fails(capsys, "replay", str(run_trace), "--until", "yesterday")
    err = fails(capsys, "replay", str(run_trace), "--until", str(n))
    assert f"--until {n} is past the end" in err and f"0..{n - 1}" in err
    err = fails(capsys, "replay", str(run_trace), "--until", "2020-01-01")
    assert "no event was recorded at or before 2020-01-01T00:00:00Z" in err
    assert f"the first was recorded at {iso(first)}" in err


# -- tail -------------------------------------------------------------------------------------


def test_tail_json_is_the_last_events_field_by_field(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_lines(capsys, "tail", str(run_trace), "-n", "7", "--json")
    with Trace.open(run_trace) as trace:
        events = trace[-7:]
    assert [r["seq"] for r in rows] == [e.seq for e in events]
    for row, event in zip(rows, events, strict=True):
        assert row["kind"] == event.kind and row["asset"] == event.asset
        assert row["source"] == event.source and row["cause"] == event.cause
        assert row["ts"] == event.ts and row["time"] == iso(event.ts or 0)
        assert "raw" not in row
    [trade] = run_lines(
        capsys, "tail", str(run_trace), "-n", "1", "--kind", "trade_observed", "--json"
    )
    with Trace.open(run_trace) as trace:
        last_trade = trace.tail(1, kinds=["trade_observed"])[0]
    assert isinstance(last_trade, TradeObserved)
    assert (trade["seq"], trade["price"], trade["amount"], trade["cost"]) == (
        last_trade.seq,
        plain(last_trade.price),
        plain(last_trade.amount),
        plain(last_trade.cost),
    )
    assert trade["fees"] == [
        {"currency": f.currency, "cost": plain(f.cost)} for f in last_trade.fees or ()
    ]


def test_tail_lines_show_iso_time_kind_asset_and_key_fields(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", str(run_trace), "-n", "3", "--kind", "trade_observed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with Trace.open(run_trace) as trace:
        trades = trace.tail(3, kinds=["trade_observed"])
    assert len(lines) == 3
    for line, trade in zip(lines, trades, strict=True):
        assert isinstance(trade, TradeObserved) and trade.ts is not None
        assert line.split()[:5] == [
            str(trade.seq),
            iso(trade.ts)[:-4] + "Z",  # milliseconds
            "trade_observed",
            trade.asset,
            trade.source,
        ]
        assert f"price={plain(trade.price)}" in line and f"amount={plain(trade.amount)}" in line
        assert f"trade_id={trade.trade_id}" in line
        assert "raw" not in line and "b'" not in line and "Decimal" not in line


def test_tail_filters_by_kind_asset_source_and_range(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Trace.open(run_trace) as trace:
        events = trace[:]
    t = str(run_trace)

    def seqs(*argv: str) -> list[int]:
        return [r["seq"] for r in run_lines(capsys, "tail", t, "-n", "1000", "--json", *argv)]

    kinds = {"ticker_observed", "trade_observed"}
    assert seqs("--kind", "ticker_observed", "--kind", "trade_observed", "--asset", "ETH/USDT") == [
        e.seq for e in events if e.kind in kinds and e.asset == "ETH/USDT"
    ]
    assert seqs("--source", "watch_orders", "--source", "create_order") == [
        e.seq for e in events if e.source in ("watch_orders", "create_order")
    ]
    assert seqs("--since", "20", "--until", "40") == list(range(20, 41))
    ts = events[60].ts
    assert ts is not None
    assert seqs("--since", iso(ts), "--kind", "order_observed") == [
        e.seq for e in events if (e.ts or 0) >= ts and e.kind == "order_observed"
    ]
    assert seqs("--until", iso(ts)) == [e.seq for e in events if (e.ts or 0) <= ts]
    # -n counts what passes the filters; 0 prints nothing.
    assert (
        seqs("--asset", "BTC/USDT", "-n", "4")
        == [e.seq for e in events if e.asset == "BTC/USDT"][-4:]
    )
    assert seqs("-n", "0") == []
    assert seqs("-n", str(10**20)) == [e.seq for e in events]  # more than there are: all
    # A kind eventsrc knows that this spot run never recorded: nothing, not an error.
    assert seqs("--kind", "position_observed") == []


def test_tail_refuses_unknown_names_and_suggests_the_known_ones(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t = str(run_trace)
    err = fails(capsys, "tail", t, "--kind", "tiker_observed")
    assert "no kind 'tiker_observed'" in err and "did you mean 'ticker_observed'" in err
    assert "its kinds: balance_observed, checkpoint," in err
    err = fails(capsys, "tail", t, "--asset", "BTC/USD")
    assert "did you mean 'BTC/USDT'" in err and "its assets: BTC/USDT, ETH/USDT" in err
    err = fails(capsys, "tail", t, "--source", "watch_order")
    assert "did you mean 'watch_orders'" in err and "create_order" in err
    assert "-n" in fails(capsys, "tail", t, "-n", "-1")
    assert "past the end" in fails(capsys, "tail", t, "--since", "100000")
    assert "is after --until" in fails(capsys, "tail", t, "--since", "9", "--until", "3")
    assert "no --until" in fails(capsys, "tail", t, "-f", "--until", "3")


def writer_thread(path: Path, stop: threading.Event) -> threading.Thread:
    """A live writer: appends notes (every other one of BTC/USDT) until told to stop."""

    def write() -> None:
        with Trace.open(path, "a") as trace:
            for i in range(20_000):
                if stop.is_set():
                    break
                trace.append(Note(f"live {i}", asset="BTC/USDT" if i % 2 else None))
                stop.wait(0.001)  # a writer's pace, not a synchronization

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_tail_follow_prints_what_a_live_writer_appends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "live"
    # Small units, so the writer seals several into the body (and drops their write-ahead
    # segments) while the reader follows.
    with Trace.open(path, "w", unit=64, record_chunk=16) as trace:
        trace.extend(Note(f"before {i}", asset="BTC/USDT") for i in range(5))
    stop = threading.Event()
    writer = writer_thread(path, stop)
    try:
        argv = ["tail", str(path), "-n", "2", "-f", "--asset", "BTC/USDT", "--json"]
        status = main([*argv, "--poll", "0.01", "--max-events", "80", "--max-seconds", "60"])
    finally:
        stop.set()
        writer.join()
    assert status == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 + 80  # the last two, then eighty appended after it opened
    # Together, consecutive events of the asset: none skipped between the tail and the follow.
    with Trace.open(path) as trace:
        matching = [e.seq for e in trace if e.asset == "BTC/USDT"]
        assert trace.committed >= 128
    seqs = [r["seq"] for r in rows]
    start = matching.index(seqs[0])
    assert seqs == matching[start : start + 82]
    live = rows[2:]
    assert all(r["asset"] == "BTC/USDT" and r["kind"] == "note" for r in live)
    # Every matching event the writer appended after the first one shown, none skipped:
    numbers = [int(r["text"].split()[1]) for r in live]
    assert numbers == list(range(numbers[0], numbers[0] + 160, 2))
    assert all(r["seq"] == 5 + n for r, n in zip(live, numbers, strict=True))


def read_lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def next_line(lines: queue.Queue[str], what: str) -> str:
    try:
        return lines.get(timeout=30)
    except queue.Empty:
        pytest.fail(f"no line from the follower: {what}")


def test_tail_follow_stops_on_ctrl_c_with_status_130_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "live"
    with Trace.open(path, "w") as trace:
        trace.append(Note("first"))
    argv = ["tail", str(path), "-f", "-n", "1", "--poll", "0.02"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=read_lines, args=(follower.stdout, lines), daemon=True).start()
        assert "first" in next_line(lines, "the last event")
        with Trace.open(path, "a") as trace:
            trace.append(Note("appended while followed"))
        line = next_line(lines, "the appended event")
        assert line.split()[0] == "1" and "appended while followed" in line
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 130
        assert follower.stderr is not None
        assert "Traceback" not in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


# -- show -------------------------------------------------------------------------------------


def test_show_prints_an_event_its_raw_payload_its_cause_and_its_effects(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Trace.open(run_trace) as trace:
        events = trace[:]
    ack = next(e for e in events if isinstance(e, OrderAcknowledged) and isinstance(e.cause, str))
    request = next(
        e
        for e in events
        if isinstance(e, OrderRequested) and e.client_order_id == ack.client_order_id
    )
    shown = run_json(capsys, "show", str(run_trace), str(ack.seq), "--json")
    assert shown["event"]["seq"] == ack.seq and shown["event"]["order_id"] == ack.order_id
    assert shown["raw"] == ack.info() and shown["raw"]["info"]["orderId"]
    assert shown["cause"]["seq"] == request.seq and shown["cause"]["kind"] == "order_requested"
    # The request's effects: every event that names it as its cause, by seq or client order id.
    assert request.seq is not None
    shown = run_json(capsys, "show", str(run_trace), str(request.seq), "--json")
    assert shown["raw"] is None and shown["cause"] is None
    assert [e["seq"] for e in shown["effects"]] == [
        e.seq for e in events if e.cause in (request.seq, request.client_order_id)
    ]
    assert ack.seq in [e["seq"] for e in shown["effects"]]
    # A cause by seq: the local check that refused the last request.
    refused = next(e for e in events if isinstance(e, LocalCheckFailed))
    shown = run_json(capsys, "show", str(run_trace), str(refused.seq), "--json")
    assert shown["cause"]["seq"] == refused.cause
    assert shown["event"]["reason"] == refused.reason
    # The text: fields, the raw payload verbatim and indented, the cause's one line.
    assert main(["show", str(run_trace), str(ack.seq)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"event {ack.seq}: order_acknowledged\n")
    assert re.search(rf"^  order_id\s+{ack.order_id}$", out, re.M)
    assert f'"orderId": {ack.info()["info"]["orderId"]}' in out
    assert re.search(rf"^caused by\n\s+{request.seq}\s+\S+\s+order_requested\s", out, re.M)


def test_show_refuses_a_seq_past_the_end_or_negative(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Trace.open(run_trace) as trace:
        n = len(trace)
    err = fails(capsys, "show", str(run_trace), str(n))
    assert f"seq {n} is past the end of the trace: its seqs are 0..{n - 1}" in err
    assert "0 or more" in fails(capsys, "show", str(run_trace), "-1")
    assert "not a whole number" in fails(capsys, "show", str(run_trace), "ten")


# -- stats and verify -------------------------------------------------------------------------


def test_stats_json_counts_what_the_trace_holds(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = run_json(capsys, "stats", str(run_trace), "--json")
    with Trace.open(run_trace) as trace:
        events = trace[:]
        committed = trace.committed
    assert stats["ok"] and stats["problems"] == [] and stats["recoveries"] == 0
    assert stats["events"] == len(events)
    assert (stats["committed"], stats["pending"]) == (committed, len(events) - committed)
    assert stats["kinds"] == Counter(e.kind for e in events)
    assert stats["assets"] == Counter(e.asset for e in events if e.asset is not None)
    assert stats["without_asset"] == sum(e.asset is None for e in events)
    assert stats["sources"] == Counter(e.source for e in events)
    first, last = min(e.ts or 0 for e in events), max(e.ts or 0 for e in events)
    assert (stats["first_ts"], stats["last_ts"]) == (first, last)
    assert (stats["first_time"], stats["last_time"]) == (iso(first), iso(last))
    assert stats["span_seconds"] == (last - first) / 1e9
    assert stats["events_per_second"] == pytest.approx(len(events) / ((last - first) / 1e9))
    on_disk = sum(f.stat().st_size for f in run_trace.rglob("*") if f.is_file())
    assert stats["bytes_on_disk"] == on_disk
    assert main(["stats", str(run_trace)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^events\s+{len(events)} \({committed} sealed", out, re.M)
    assert re.search(rf"^  ticker_observed\s+{stats['kinds']['ticker_observed']}$", out, re.M)


def test_verify_json_is_complete_and_agrees_on_a_live_run(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = run_json(capsys, "verify", str(run_trace), "--json")
    with Trace.open(run_trace) as trace:
        expected = verify(trace)
        n = len(trace)
    assert found == {
        "ok": True,
        "trace": str(run_trace),
        "events": n,
        **{k: v for k, v in attrs.asdict(expected).items() if k not in ("problems", "differs")},
        "problems": [],
        "differs": [],
    }
    assert found["checkpoints_checked"] >= 1 and found["seqs_checked"] == n


def test_verify_names_the_first_diverging_seq_and_what_differs(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "copy"
    shutil.copytree(run_trace, path)
    with Trace.open(path, "a") as trace:
        good = replay_from_trace(trace, until=30)
        # A checkpoint as if the live run had held other cash at seq 30.
        wrong = attrs.evolve(checkpoint(good), state_hash="0" * 64)
        parts = dict(wrong.parts)
        parts["cash"] = "f" * 16
        trace.append(attrs.evolve(wrong, parts=parts))
    found = run_json(capsys, "verify", str(path), "--json", status=1)
    assert (found["ok"], found["diverged_at"], found["differs"]) == (False, 30, ["cash"])
    assert main(["verify", str(path)]) == 1
    assert "diverges from the live run's checkpoint at seq 30 (differs: cash)" in (
        capsys.readouterr().out
    )


# -- export -----------------------------------------------------------------------------------


def test_export_csv_is_every_event_with_money_as_plain_strings(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.csv"
    assert main(["export", str(run_trace), "--format", "csv", "-o", str(out)]) == 0
    with Trace.open(run_trace) as trace:
        events = trace[:]
    assert f"wrote {len(events)} events to {out} (csv)" in capsys.readouterr().out
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["seq"]) for r in rows] == list(range(len(events)))
    assert list(rows[0])[:9] == [
        *("seq", "ts", "time", "exchange_ts", "exchange_time"),
        *("kind", "asset", "source", "cause"),
    ]
    for row, event in zip(rows, events, strict=True):
        assert row["kind"] == event.kind and row["asset"] == (event.asset or "")
        assert row["time"] == iso(event.ts or 0)
        if isinstance(event, (TradeObserved, OrderObserved)):
            assert row["price"] == (plain(event.price) or "")
            assert row["amount"] == (plain(event.amount) or "")
            assert json.loads(row["fees"] or "null") == (
                None
                if event.fees is None
                else [{"currency": f.currency, "cost": plain(f.cost)} for f in event.fees]
            )
        if isinstance(event, BalanceObserved):
            balances = json.loads(row["balances"])
            assert [b["total"] for b in balances] == [plain(b.total) for b in event.balances]
    assert "raw" not in rows[0]
    assert not any(re.fullmatch(r"-?\d+(\.\d+)?[eE][+-]?\d+", v) for r in rows for v in r.values())


def test_export_jsonl_to_stdout_filtered_by_kind(
    run_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = run_lines(
        capsys, "export", str(run_trace), "--format", "jsonl", "--kind", "trade_observed", "--raw"
    )
    with Trace.open(run_trace) as trace:
        trades = [e for e in trace[:] if isinstance(e, TradeObserved)]
    assert [r["seq"] for r in rows] == [t.seq for t in trades]
    for row, trade in zip(rows, trades, strict=True):
        assert (row["price"], row["cost"], row["trade_id"]) == (
            plain(trade.price),
            plain(trade.cost),
            trade.trade_id,
        )
        assert row["raw"] == trade.info()


def test_export_parquet_keeps_money_exact_as_decimal128(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    out = tmp_path / "events.parquet"
    argv = ["export", str(run_trace), "--format", "parquet", "-o", str(out)]
    assert main([*argv, "--kind", "order_observed", "--kind", "trade_observed"]) == 0
    table = pq.read_table(out)
    with Trace.open(run_trace) as trace:
        events = [e for e in trace[:] if isinstance(e, (OrderObserved, TradeObserved))]
    assert table.num_rows == len(events)
    for name in ("price", "amount", "cost"):
        assert pa.types.is_decimal(table.schema.field(name).type), name
    assert pa.types.is_timestamp(table.schema.field("time").type)
    rows = table.to_pylist()
    for row, event in zip(rows, events, strict=True):
        assert row["seq"] == event.seq and row["kind"] == event.kind
        assert row["price"] == event.price and row["amount"] == event.amount
        assert row["cost"] == event.cost
        assert int(row["time"].timestamp() * 1e6) == (event.ts or 0) // 1000


def test_export_parquet_without_pyarrow_says_to_install_the_extra(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    out = tmp_path / "events.parquet"
    err = fails(capsys, "export", str(run_trace), "--format", "parquet", "-o", str(out))
    assert "needs pyarrow" in err and "pip install 'eventsrc[analytics]'" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    err = fails(capsys, "export", str(run_trace), "--format", "parquet")
    assert "parquet is a binary format: name the file to write with -o FILE" in err


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory no file can be created in, even by root (who ignores mode bits): made
    immutable where chattr can, else read-only by its mode."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    try:
        (folder / "probe").touch()
    except PermissionError:
        pass
    else:
        (folder / "probe").unlink()
        chattr = shutil.which("chattr")
        done = chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True)
        if not done or done.returncode != 0:
            pytest.skip("no way to make a directory read-only for this user here")
        immutable = True
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_export_to_a_read_only_directory_is_one_line_and_leaves_nothing(
    run_trace: Path, read_only_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = read_only_dir / "events.csv"
    err = fails(capsys, "export", str(run_trace), "--format", "csv", "-o", str(out))
    assert f"cannot write {out}" in err
    assert list(read_only_dir.iterdir()) == []
    missing = read_only_dir.parent / "no-such-dir" / "events.jsonl"
    err = fails(capsys, "export", str(run_trace), "--format", "jsonl", "-o", str(missing))
    assert "No such file or directory" in err


# -- plot -------------------------------------------------------------------------------------


def test_plot_draws_the_equity_curve_and_fills_as_a_png(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "run.png"
    drawn = run_json(capsys, "plot", str(run_trace), "-o", str(out), "--json")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with Trace.open(run_trace) as trace:
        state = replay_from_trace(trace)
    fills = sum(1 for o in state.orders.values() for f in o.fills if f.amount)
    assert drawn["fills"] == fills and drawn["assets"] == ["BTC/USDT", "ETH/USDT"]
    assert D(drawn["final_equity"]) == valuation(state).equity


def test_plot_latency_draws_each_order_steps_latency(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "latency.png"
    drawn = run_json(capsys, "plot", str(run_trace), "--latency", "-o", str(out), "--json")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Trace.open(run_trace) as trace:
        found = lifecycles(trace)
    assert drawn["orders"] == len(found) > 0
    for step, counted in drawn["steps"].items():
        assert counted == sum(1 for life in found if getattr(life, f"{step}_ns") is not None)


def test_the_equity_history_ends_where_replay_does(run_trace: Path) -> None:
    with Trace.open(run_trace) as trace:
        found = history(trace)
        state = replay_from_trace(trace)
        ts = trace.column("ts")
    assert state_hash(found.state) == state_hash(state)
    assert found.equity[-1].equity == valuation(state).equity
    assert [p.seq for p in found.equity] == sorted(p.seq for p in found.equity)
    assert all(p.ts == ts[p.seq] for p in found.equity)
    assert all(p.ts == ts[p.seq] for p in found.prices)
    assert all(f.ts == ts[f.fill.seq] for f in found.fills)
    last = {p.symbol: p.price for p in found.prices}
    assert last == dict(state.last_price)


def test_plot_without_matplotlib_says_to_install_the_extra(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    err = fails(capsys, "plot", str(run_trace), "-o", str(tmp_path / "x.png"))
    assert "needs matplotlib" in err and "pip install 'eventsrc[analytics]'" in err
    assert list(tmp_path.iterdir()) == []


# -- every command: a live writer, bad paths, damage --------------------------------------------

READERS: list[tuple[list[str], str]] = [
    (["replay"], "replayed events 0..{last} of {n}"),
    (["verify"], "{n} seqs"),
    (["tail"], "written while held"),
    (["tail", "--kind", "note"], "written while held"),
    (["show", "{last}"], "event {last}: note"),
    (["stats"], "events     {n} ("),
    (["export", "--format", "csv"], "written while held"),
    (["export", "--format", "jsonl", "--kind", "note"], "written while held"),
]


def argv_for(command: list[str], path: Path, last: int = 0) -> list[str]:
    name, *rest = command
    return [name, str(path), *(a.format(last=last) for a in rest)]


def test_every_read_command_works_on_a_trace_a_live_writer_holds(
    run_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "held"
    shutil.copytree(run_trace, path)
    with Trace.open(path, "a") as writer:  # holds the lock, as a live engine does
        seq = writer.append(Note("written while held"))
        for command, expected in READERS:
            status = main(argv_for(command, path, last=seq))
            out, err = capsys.readouterr()
            assert status == 0 and err == "", (command, err)
            assert expected.format(last=seq, n=seq + 1) in out, (command, out)
        with pytest.raises(TraceLocked):
            Trace.open(path, "a")


@pytest.mark.parametrize("command", [c for c, _ in READERS] + [["plot"]], ids=lambda c: " ".join(c))
def test_a_path_that_holds_no_trace_is_one_line(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    err = fails(capsys, *argv_for(command, missing))
    assert err == f"eventsrc: error: no trace at {missing}\n"
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    (plain_dir / "notes.txt").write_text("not a trace")
    err = fails(capsys, *argv_for(command, plain_dir))
    assert err == f"eventsrc: error: {plain_dir} is not a trace (no zarr.json)\n"
    a_file = tmp_path / "file.txt"
    a_file.write_text("hello")
    err = fails(capsys, *argv_for(command, a_file))
    assert err == f"eventsrc: error: {a_file} is not a trace (not a directory)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "plain"]  # nothing written


def damaged_trace(path: Path) -> Path:
    """A trace whose sealed body has one damaged record chunk (events 16..31)."""
    with Trace.open(path, "w", unit=64, record_chunk=16) as trace:
        trace.append(StrategyStarted("USDT", SPOT))
        trace.extend(Note(f"{i}", asset="BTC/USDT") for i in range(99))
    chunk = path / "record" / "c" / "1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x40
    chunk.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["replay"],
        ["show", "20"],
        ["tail", "-n", "90"],
        ["tail", "--kind", "note", "-n", "90"],
        ["export", "--format", "jsonl"],
    ],
    ids=lambda c: " ".join(c),
)
def test_reading_a_damaged_trace_is_one_line_naming_the_chunk(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = damaged_trace(tmp_path / "damaged")
    err = fails(capsys, *argv_for(command, path))
    assert "record/c/1" in err and "checksum" in err


def test_verify_and_stats_report_the_damage_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = damaged_trace(tmp_path / "damaged")
    found = run_json(capsys, "verify", str(path), "--json", status=1)
    assert not found["ok"] and any("record/c/1" in p for p in found["problems"])
    stats = run_json(capsys, "stats", str(path), "--json", status=1)
    assert not stats["ok"] and any("record/c/1" in p for p in stats["problems"])
    assert stats["kinds"] == {"note": 99, "strategy_started": 1}  # the envelope is intact
    marker = path / "zarr.json"
    marker.write_bytes(marker.read_bytes()[:40])
    for command in (["verify"], ["stats"], ["tail"]):
        assert "is not a trace (unreadable zarr.json" in fails(capsys, *argv_for(command, path))


def test_a_kind_this_eventsrc_does_not_know_is_shown_from_its_payload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = EventRegistry()
    for info in REGISTRY.kinds():
        registry.kind(info.name, info.version, info.upgrades)(info.cls)

    @registry.kind("my_signal")
    @attrs.frozen
    class MySignal(Event):
        strength: Decimal
        label: str = ""

    path = tmp_path / "t"
    with Trace.open(path, "w", registry=registry) as trace:  # a user's kind, written elsewhere
        trace.append(MySignal(D("0.00001"), "go long", asset="BTC/USDT"))
    assert main(["tail", str(path), "--kind", "my_signal"]) == 0
    line = capsys.readouterr().out
    assert "my_signal" in line and 'label="go long"' in line and "strength=0.00001" in line
    shown = run_json(capsys, "show", str(path), "0", "--json")
    assert shown["event"]["data"] == {"label": "go long", "strength": "0.00001"}
    assert shown["event"]["kind"] == "my_signal" and shown["event"]["asset"] == "BTC/USDT"
    [row] = run_lines(capsys, "export", str(path), "--format", "jsonl")
    assert row == shown["event"]


def test_replay_of_a_margin_run_lists_its_positions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "margin"
    perp = "BTC/USDT:USDT"
    ex = SimExchange(seed=9)

    async def run() -> None:
        async with Engine.open(
            path, CcxtVenue(ex), universe=(perp,), main_currency="USDT", margin=True, clock=ex.clock
        ) as engine:
            await engine.create_order(perp, "buy", D("0.03"), type="market")
            await engine.fetch_positions()

    asyncio.run(run())
    with Trace.open(path) as trace:
        state = replay_from_trace(trace)
    [(key, position)] = state.positions.items()
    assert key == (perp, "long") and position.contracts == D("0.03")
    summary = run_json(capsys, "replay", str(path), "--json")
    assert summary["margin"] is True
    assert summary["positions"] == [
        {
            "symbol": perp,
            "side": "long",
            "contracts": plain(position.contracts),
            "entry_price": plain(position.entry_price),
            "mark_price": plain(position.mark_price),
            "unrealized_pnl": plain(position.unrealized_pnl),
            "leverage": plain(position.leverage),
            "liquidation_price": plain(position.liquidation_price),
        }
    ]
    assert main(["replay", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^  {re.escape(perp)}\s+long\s+0\.03\s", out, re.M)
