"""``eventsrc demo``: the main job. The README's command in a fresh directory, twice; the same
seed gives the same trace; every fault on, it ends equal to the venue's truth; Ctrl-C stops it
cleanly; bad input is one line."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main
from adapters.cli.run import MARGIN, SPOT, venue_file
from adapters.sim import SimExchange
from adapters.venue import CcxtVenue
from eventsrc import Codec, Engine, State, Trace, replay_from_trace, verify

ROOT = Path(__file__).resolve().parents[1]
EVENTSRC = Path(sys.executable).with_name("eventsrc")


def demo_command() -> list[str]:
    """What the README's main command (``make demo``) runs: the Makefile's recipe."""
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make demo\b", readme, flags=re.M), "the README's main command"
    recipe = re.search(r"^demo:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), flags=re.M)
    assert recipe is not None
    words = shlex.split(recipe.group(1))
    assert words[0] == "$(BIN)/eventsrc" and words[1] == "demo"
    return [str(EVENTSRC), *words[1:]]


def run(args: list[str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


def test_the_readme_main_command_runs_in_a_fresh_directory_and_a_second_run_continues(
    tmp_path: Path,
) -> None:
    first = run(demo_command(), tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("recording demo-trace")
    assert "verified    the trace is sound" in first.stdout
    assert "next, try:" in first.stdout and "eventsrc replay demo-trace" in first.stdout
    assert first.stderr == ""  # no log line, no traceback
    # The README shows what it prints, exactly (one seed, one run).
    shown = re.search(
        r"```text\n(recording demo-trace.*?)```", (ROOT / "README.md").read_text(), re.S
    )
    assert shown is not None and first.stdout == shown.group(1)
    path = tmp_path / "demo-trace"
    with Trace.open(path) as trace:
        found = verify(trace)
        assert found.ok and found.checkpoints_checked >= 2
        state = replay_from_trace(trace)
        after_first = len(trace)
    assert state.orders and any(o.fills for o in state.orders.values())
    assert not state.anomalies

    second = run(demo_command(), tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("continuing demo-trace")
    assert "anomalies   0" in second.stdout
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert len(trace) > after_first
        again = replay_from_trace(trace)
    assert not again.anomalies
    # It continued: the orders of the first run are still there, and it went on trading.
    assert set(state.orders) < set(again.orders)
    assert run([str(EVENTSRC), "verify", "demo-trace"], tmp_path).returncode == 0


def events_of(path: Path) -> list[dict[str, Any]]:
    codec = Codec()
    with Trace.open(path) as trace:
        found = []
        for event in trace[:]:
            data = codec.to_builtins(event)
            data.pop("ts")
            found.append(data)
        return found


def test_the_same_seed_twice_gives_the_same_trace_event_for_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two processes, hashing strings differently (a state's maps iterate in hash order)
    for name, hashing in (("a", "1"), ("b", "2")):
        args = [str(EVENTSRC), "demo", "--trace", name, "--seconds", "300", "--faults", "harsh"]
        done = run(args, tmp_path, env={**os.environ, "PYTHONHASHSEED": hashing})
        assert done.returncode == 0, done.stderr
    a, b = events_of(tmp_path / "a"), events_of(tmp_path / "b")
    assert len(a) > 500 and a == b
    assert main(["demo", "--trace", str(tmp_path / "c"), "--seconds", "300", "--seed", "8"]) == 0
    assert events_of(tmp_path / "c") != a


@pytest.mark.parametrize("margin", [False, True], ids=["spot", "margin"])
def test_with_every_fault_on_the_demo_ends_equal_to_the_venues_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], margin: bool
) -> None:
    path = tmp_path / "trace"
    args = ["demo", "--trace", str(path), "--seconds", "900", "--faults", "harsh", "--json"]
    assert main([*args, *(["--margin"] if margin else [])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verified"] and summary["replay_equals_live"] and summary["anomalies"] == []
    assert summary["watchers"]["errors"] > 0 and summary["fills"] > 0  # faults did happen
    # The venue traded on while the run wound down: a restart on the trace, after its
    # start-up sync, holds what the venue holds.
    venue = SimExchange(seed=7)
    venue.resume(venue_file(path))
    truth = venue.truth()
    state = asyncio.run(restart(path, venue, margin))
    # ccxt hands balances over as floats: the venue's exact decimals, as a float says them
    assert {c: v.total for c, v in state.cash.items() if v.total} == {
        c: Decimal(repr(float(b["total"]))) for c, b in truth.balances.items() if b["total"]
    }
    filled: dict[str, Any] = {}
    for fill in truth.fills:
        filled[fill.order_id] = filled.get(fill.order_id, 0) + fill.amount
    assert {o: v.filled for o, v in state.orders.items() if v.filled} == filled
    open_ids = {o["id"] for o in truth.open_orders}
    assert {o for o, v in state.orders.items() if v.status in ("open", "partially_filled")} == (
        open_ids
    )
    if margin:
        held = {s: p.contracts for (s, _), p in state.positions.items() if p.contracts}
        assert held == {s: abs(p["contracts"] or 0) for s, p in truth.positions.items()}


async def restart(path: Path, venue: SimExchange, margin: bool) -> State:
    async with Engine.open(
        path,
        CcxtVenue(venue),
        universe=list(MARGIN if margin else SPOT),
        main_currency="USDT",
        margin=margin,
        clock=venue.clock,
        watchers=False,
    ) as engine:
        assert not engine.state.anomalies
        return engine.state


@pytest.fixture
def long_demo(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    demo = subprocess.Popen(
        [str(EVENTSRC), "demo", "--seconds", "2000000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield demo
    if demo.poll() is None:
        demo.kill()
        demo.wait()


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_cleanly_and_the_next_run_continues(
    tmp_path: Path, long_demo: subprocess.Popen[str]
) -> None:
    path = tmp_path / "demo-trace"
    deadline = time.monotonic() + 60
    while True:  # until it has traded a while (the trace opens read-only while it writes)
        assert long_demo.poll() is None, long_demo.communicate()
        assert time.monotonic() < deadline, "the demo recorded nothing in 60 s"
        if path.exists():
            with Trace.open(path) as trace:
                if len(trace) > 2000:
                    break
        time.sleep(0.05)  # polling a subprocess: nothing to synchronise on but its output
    long_demo.send_signal(signal.SIGINT)
    out, err = long_demo.communicate(timeout=60)
    assert long_demo.returncode == 130, err
    assert "Traceback" not in err and out.startswith("recording")
    assert "interrupted: demo-trace" in out and "verified    the trace is sound" in out
    with Trace.open(path) as trace:
        assert verify(trace).ok
        events = len(trace)
        assert trace[events - 1].kind == "strategy_stopped"
    again = run([str(EVENTSRC), "demo", "--seconds", "60"], tmp_path)
    assert again.returncode == 0 and "anomalies   0" in again.stdout, again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seconds", "0"], "--seconds must be more than 0"),
        (["--seconds", "-5"], "--seconds must be more than 0"),
        (["--seconds", "1e12"], "at most"),
        (["--seconds", "soon"], "'soon' is not a number of seconds"),
        (["--seconds", "nan"], "--seconds must be"),
        (["--faults", "awful"], "invalid choice: 'awful'"),
        (["--seed", "x"], "'x' is not a whole number"),
    ],
)
def test_bad_arguments_are_one_line_and_record_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = tmp_path / "trace"
    assert main(["demo", "--trace", str(path), *args]) == 2
    _out, err = capsys.readouterr()
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not path.exists() and not venue_file(path).exists()


def test_a_trace_the_demo_did_not_record_or_a_damaged_venue_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    with Trace.open(other, "w"):
        pass
    assert main(["demo", "--trace", str(other), "--seconds", "10"]) == 2
    assert "was not recorded by the demo" in capsys.readouterr().err
    with Trace.open(other) as trace:
        assert len(trace) == 0  # untouched
    path = tmp_path / "trace"
    assert main(["demo", "--trace", str(path), "--seconds", "10"]) == 0
    venue_file(path).write_bytes(b"not a pickle")
    capsys.readouterr()
    assert main(["demo", "--trace", str(path), "--seconds", "10"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read back" in err and len(err.strip().splitlines()) == 1


def filling_after(monkeypatch: pytest.MonkeyPatch, taken: int, refused: int | None) -> None:
    """Every trace's append takes ``taken`` events, then raises ENOSPC (``refused`` times, then
    takes events again; None: for good)."""
    append = Trace.append
    counts = {"taken": 0, "refused": 0}

    def filling(self: Trace, event: Any) -> int:
        if counts["taken"] >= taken and (refused is None or counts["refused"] < refused):
            counts["refused"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        counts["taken"] += 1
        return append(self, event)

    monkeypatch.setattr(Trace, "append", filling)


def test_a_disk_that_stays_full_stops_the_demo_after_the_grace_with_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace"
    filling_after(monkeypatch, 3000, None)
    status = main(["demo", "--trace", str(path), "--seconds", "3600", "--disk-grace", "30"])
    monkeypatch.undo()
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    # Warnings as it happens (recording suspended; stopped with what was held), then the error.
    assert lines[-1].startswith("eventsrc: error:"), lines
    assert "No space left on device" in lines[-1] and "for 30 s" in lines[-1], lines
    assert all(line.startswith("eventsrc: warning:") for line in lines[:-1]), lines
    assert "recording suspended" in lines[0] and "(ENOSPC)" in lines[0], lines
    with Trace.open(path) as trace:
        assert len(trace) == 3000 and verify(trace).ok  # every event it took is there


def test_a_disk_full_for_a_while_is_ridden_out_and_the_demo_ends_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace"
    filling_after(monkeypatch, 2000, 4)  # four attempts refused: some 20 s of the run's time
    status = main(["demo", "--trace", str(path), "--seconds", "1800", "--json"])
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "recording suspended" in lines[0], lines
    assert "recording resumed" in lines[1] and "events were held" in lines[1], lines
    summary = json.loads(out)
    assert summary["verified"] and summary["replay_equals_live"]
    with Trace.open(path) as trace:
        assert verify(trace).ok
        outages = [e for e in trace if e.kind == "engine_error" and e.where == "trace"]  # type: ignore[attr-defined]
        assert len(outages) == 1 and outages[0].error == "ENOSPC"  # type: ignore[attr-defined]


def test_a_demo_on_a_trace_another_writer_holds_is_one_line_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace"
    assert main(["demo", "--trace", str(path), "--seconds", "30"]) == 0
    kept = venue_file(path).read_bytes()
    capsys.readouterr()
    with Trace.open(path, "a") as holder:
        before = len(holder)
        assert main(["demo", "--trace", str(path), "--seconds", "30"]) == 2
        err = capsys.readouterr().err
        assert "already open for writing" in err and len(err.strip().splitlines()) == 1, err
        assert len(holder) == before
    assert venue_file(path).read_bytes() == kept  # its copy of the venue was not saved over
