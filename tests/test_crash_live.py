"""SIGKILL the live process, again and again, and restart it on the same trace.

The venue is the loopback Binance server (adapters/sim/server.py) in its own process, so it
lives on through every kill; the engine (tests/crash_live_child.py) talks to it over real HTTP
through an unmodified ccxt.binance, working through a fixed list of intents, each under its own
client order id. The kills land at random moments (seeded): during start-up and its sync, and
mid-command once it trades. After every kill: every event the child was told was recorded is in
the trace, byte for byte. After every restart's start-up sync: its state equals the server's
truth. At the end: the final state equals the truth, `verify` passes, and the server never
placed two orders for one intent.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.server import start_server
from eventsrc import Trace, replay_from_trace, verify
from tests.crash_live_child import RemoteTruth, digest
from tests.reliability import RunReport, placed_twice
from tests.test_server import engine_equals_truth

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("EVENTSRC_CRASH_KILLS", "22"))
INTENTS = 60


class Child:
    """One run of the live process, its stdout read line by line as it comes."""

    def __init__(self, trace: Path, url: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_live_child", str(trace), url, str(INTENTS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        self._buffer = b""
        self.facts: list[dict[str, Any]] = []

    def read(self) -> None:
        assert self.process.stdout is not None
        while True:
            try:
                chunk = os.read(self.process.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            self.facts += [json.loads(line) for line in lines if line]

    def has(self, key: str) -> bool:
        return any(key in fact for fact in self.facts)

    def wait_for(self, key: str, seconds: float) -> bool:
        """Until a fact with ``key`` is read, the child exits, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read()
            if self.has(key) or self.process.poll() is not None:
                self.read()
                return self.has(key)
            time.sleep(0.01)  # polling a pipe: nothing to wait on but time
        return False

    def kill(self) -> bool:
        """SIGKILL it; whether it was still running."""
        alive = self.process.poll() is None
        if alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.read()
        return alive


class Seen:
    """What the children said, over every run."""

    def __init__(self) -> None:
        self.acknowledged: dict[int, str] = {}
        self.unequal_syncs: list[str] = []
        self.syncs = 0

    def take(self, child: Child) -> None:
        for fact in child.facts:
            if "ack" in fact:
                self.acknowledged[fact["ack"]] = fact["digest"]
            if "synced" in fact:
                self.syncs += 1
                if not fact["equal"]:
                    self.unequal_syncs.append(fact["why"])
            assert "error" not in fact, fact["error"]


def recorded(trace: Trace, seq: int, expected: str) -> bool:
    return seq < len(trace) and digest(trace, seq) == expected


def test_sigkill_at_random_moments_loses_nothing_and_places_nothing_twice(
    tmp_path: Path,
) -> None:
    rng = random.Random(2026)
    trace_path = tmp_path / "trace"
    report = RunReport("crash: SIGKILL x restarts over HTTP")
    seen = Seen()
    acknowledged, unequal_syncs = seen.acknowledged, seen.unequal_syncs
    kills = restarts = 0
    with start_server(seed=5, tick_seconds=0.05) as server:
        truth = RemoteTruth(server.url)
        while kills < KILLS:
            child = Child(trace_path, server.url)
            restarts += 1
            if rng.random() < 0.3:  # during start-up: replay, markets, the sync
                time.sleep(rng.uniform(0.0, 2.0))
            else:  # once it trades
                child.wait_for("synced", 60.0)
                time.sleep(rng.uniform(0.0, 1.5))
            if child.kill():
                kills += 1
            seen.take(child)
            if not acknowledged:
                continue  # killed before it recorded anything (perhaps before the trace was)
            with Trace.open(trace_path) as trace:  # after the crash, as the next run finds it
                found = {seq for seq, d in acknowledged.items() if recorded(trace, seq, d)}
            lost = sorted(set(acknowledged) - found)
            assert not lost, f"acknowledged events lost after kill {kills}: {lost[:20]}"
        # The last run is left to finish every intent and stop cleanly.
        final = Child(trace_path, server.url)
        assert final.wait_for("done", 300.0), final.facts[-5:]
        assert final.process.wait(60) == 0
        restarts += 1
        final.read()
        seen.take(final)
        server_truth = truth.truth()
        with Trace.open(trace_path) as trace:
            live = replay_from_trace(trace)
            verification = verify(trace)
            report.events_found = sum(1 for s, d in acknowledged.items() if recorded(trace, s, d))
            report.anomalies = len(live.anomalies)
            report.notes["events in the trace"] = len(trace)
        try:
            engine_equals_truth(live, truth)
            report.equal = True
        except AssertionError as exc:
            report.problems.append(f"final state: {exc}")
        placed = server_truth.client_order_ids()
        report.faults = {"sigkill": kills, **{k: v for k, v in server_truth.faults.items() if v}}
        report.restarts = restarts
        report.orders_placed = len(placed)
        report.unique_intents = len(set(placed))
        report.events_acknowledged = len(acknowledged)
        report.notes["intents"] = INTENTS
        report.notes["fills"] = len(server_truth.fills)
        report.notes["start-up syncs equal to the truth"] = (
            f"{seen.syncs - len(unequal_syncs)} of {seen.syncs} (the other runs were killed before)"
        )
        if unequal_syncs:
            report.problems.append(f"a start-up sync differed from the truth: {unequal_syncs[0]}")
        if not verification.ok:
            report.problems.append(f"verify: {verification}")
        if placed_twice(placed):
            report.problems.append(f"placed twice: {placed_twice(placed)}")
        assert Counter(placed).keys() <= {f"crash-{k:04d}" for k in range(INTENTS)}
    report.finish()
