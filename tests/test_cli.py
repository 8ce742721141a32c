"""The command line's read-only commands; errors are one line, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters import synthetic
from adapters.cli import main
from eventsrc import Note, Trace


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
