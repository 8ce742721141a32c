"""Crash test: SIGKILL a writing process at random moments; nothing acknowledged is ever lost.

A child appends (crash_child.py) and prints every seq acknowledged as durable. The test waits
until the child has acknowledged a random number of events (so the kill lands at a random point
of its loop: mid-append, mid-fsync, mid-rotation, mid-commit of a body unit), kills it with
SIGKILL, and checks the trace: it opens, its seqs are dense from 0, it holds every acknowledged
event exactly, and appending continues. Small units (128 events) make body commits frequent.
A kill mid-write leaves a torn frame: the next writer sets its bytes aside in the trace and
records a TraceRecovered event, so those events sit between the child's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import attrs
import pytest

from eventsrc import Event, Trace, TraceRecovered
from tests.crash_child import expected_event

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[1]


def content(event: Event) -> tuple[object, ...]:
    return (
        type(event),
        *(getattr(event, a.name) for a in attrs.fields(type(event)) if a.name not in ("seq", "ts")),
    )


def run_and_kill(
    path: Path, durability: str, acks_wanted: int, whole_group: bool
) -> tuple[int, int]:
    """Start a child, kill it after ``acks_wanted`` acknowledgements; (start len, last ack).

    ``whole_group``: kill the writer and its committer process together (a machine or
    container dying); otherwise only the writer, and its committer finishes on its own.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), durability, "128", "32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first.startswith("start "), child.stderr.read() if child.stderr else first
    start = int(first.split()[1])
    last_ack = start - 1
    for _ in range(acks_wanted):
        line = child.stdout.readline()
        if not line:
            break
        last_ack = int(line)
    if whole_group:
        os.killpg(child.pid, signal.SIGKILL)
    else:
        child.send_signal(signal.SIGKILL)
    rest, err = child.communicate(timeout=30)
    for line in rest.splitlines():  # acknowledged before the kill landed
        last_ack = int(line)
    assert child.returncode == -signal.SIGKILL, err
    return start, last_ack


def check(path: Path, last_ack: int, seen: Counter[str]) -> int:
    with Trace.open(path, "a") as trace:
        seen["resealed_units"] += trace.recovery.resealed_units
        seen["dropped_frames"] += trace.recovery.dropped_frames
        seen["kills"] += 1
        n = len(trace)
        assert n >= last_ack + 1, f"acknowledged seq {last_ack} lost (trace has {n})"
        for seq, event in enumerate(trace):
            assert event.seq == seq
            if isinstance(event, TraceRecovered):
                # A kill can only cut a write short: never a whole frame that fails its checks.
                assert event.torn, event
                assert (path / event.set_aside).stat().st_size == event.dropped_bytes
                continue
            assert content(event) == content(expected_event(seq)), f"seq {seq} differs"
        # appending continues on the recovered trace
        assert trace.append(expected_event(n)) == n
    return n + 1


def kill_loop(
    path: Path, durability: str, kills: int, seed: int, whole_group: bool
) -> Counter[str]:
    rng = random.Random(seed)
    length = 0
    seen: Counter[str] = Counter()
    for _ in range(kills):
        wanted = rng.choice([1, 3, 20, 150, 400])
        start, last_ack = run_and_kill(path, durability, wanted, whole_group)
        assert start == length
        length = check(path, last_ack, seen)
    print(dict(seen))
    return seen


@pytest.mark.slow
def test_sigkill_during_sync_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seen = kill_loop(tmp_path / "trace", "sync", kills=50, seed=2, whole_group=True)
    # The kills landed where it matters: some with complete units not yet sealed.
    assert seen["resealed_units"] > 0


@pytest.mark.slow
def test_sigkill_during_group_appends_loses_nothing_flushed(tmp_path: Path) -> None:
    kill_loop(tmp_path / "trace", "group", kills=12, seed=3, whole_group=False)


@pytest.mark.slow
def test_sigkill_of_the_writer_alone_lets_its_committer_finish(tmp_path: Path) -> None:
    kill_loop(tmp_path / "trace", "sync", kills=8, seed=4, whole_group=False)
