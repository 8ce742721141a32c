"""Soak test: the sample strategy (``Ladder``) trades for a bounded wall time over real HTTP,
through an unmodified ``ccxt.binance``, against the simulated Binance server in a subprocess
with every fault kind on; at the end the engine's state equals the server's truth, the trace
verifies and replays to the live state, no intent became two orders, and nothing the engine
acknowledged is missing from the trace once it is reopened. The run ends with a summary table
(``tests/reliability.RunReport``, printed at the end of the pytest session).

``EVENTSRC_SOAK_SECONDS`` (60 by default: the test takes ~70 s in all) makes the trading part
longer; ``EVENTSRC_SOAK_SEED`` picks another server seed (another fault schedule and price path);
``EVENTSRC_SOAK_FAULTS`` other faults (``ServerFaults.parse``'s spec: the test still wants every
kind injected at least once).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import math
import os
import time
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.sim.server import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    ServerFaults,
    ServerProcess,
    ServerTruth,
    binance_client,
    start_server,
)
from adapters.strategies import Ladder
from adapters.venue import CcxtVenue
from adapters.watchers import WatcherSettings
from eventsrc import (
    Codec,
    Engine,
    EngineError,
    Event,
    State,
    Trace,
    verify,
)
from eventsrc.clock import WallClock
from eventsrc.state import TERMINAL
from eventsrc.venue import Feed, Watcher
from tests.reliability import RunReport, placed_twice
from tests.test_engine import real_trades, replays_to, totals, truth_totals
from tests.test_server import engine_equals_truth

D = Decimal
SOAK_SECONDS = float(os.environ.get("EVENTSRC_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("EVENTSRC_SOAK_SEED", "11"))
AMOUNTS = {"BTC/USDT": D("0.002"), "ETH/USDT": D("0.05")}
TIMEOUT_MS = 1_500
FAULTS = ServerFaults.parse(
    os.environ.get("EVENTSRC_SOAK_FAULTS", "all=0.03,slow_after=0.15,reset_after=0.15,delay=2.5")
)
"""Every kind that strikes before the venue at 3% of requests: at ~20 requests a second, each
is met dozens of times a minute. The ``*_after`` kinds are drawn for every request but applied
to creates and cancels only (~40 a minute, the strategy's pace through these faults): at 15%
each they strike ~6 times a minute, so a run that meets neither is improbable (~0.2%), not a
matter of luck as at 3% (~1 each). ``delay`` is above the client's timeout: a slow answer is
no answer."""
TICK = 0.05
"""Seconds a price tick: rungs 0.1% from the price fill within seconds."""
WATCHING = WatcherSettings(poll_interval=0.5, backoff_cap=4.0)
STUCK_AFTER = 20.0
"""Seconds without a venue call ending (answered or failed) after which a polling watcher is
stuck: a poll is at most a few calls of at most ``TIMEOUT_MS`` each, then a sleep of at most
``backoff_cap`` (or the server's Retry-After, 1 s). Measured over eight seeds: at most 5.2 s."""
STRATEGY_STUCK_AFTER = 40.0
"""Seconds without a round of the strategy (over every market) ending after which it is stuck:
a round is a cancel and two creates a market, each retried (with look-ups) through faults.
Measured over eight seeds: at most 16 s."""
SETTLE_TRIES = 10
HANG_AFTER = SOAK_SECONDS + 240
"""Seconds after which the run has hung (the soak itself, its wind-down, and far more)."""


_WATCHER: contextvars.ContextVar[str | None] = contextvars.ContextVar("watcher", default=None)
"""The watcher whose task makes a venue call (None: a command, the strategy, a sync)."""


class Beats:
    """When something last made progress, and the longest it went without."""

    def __init__(self) -> None:
        self.count = 0
        self.last: float | None = None
        self.longest = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
        self.last = now
        self.count += 1

    def quiet(self, now: float) -> float:
        """The longest it went without progress up to ``now`` (inf: it never made any)."""
        return math.inf if self.last is None else max(self.longest, now - self.last)


class _Named:
    """A watcher that names itself, for the venue calls it makes."""

    def __init__(self, inner: Watcher) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    async def run(self, feed: Feed) -> None:
        _WATCHER.set(self.inner.name)  # the supervising task's own context: this watcher's
        await self.inner.run(feed)


class TimedVenue(CcxtVenue):
    """``CcxtVenue`` noting, per watcher, when each of its venue calls ended (answered or
    failed): a watcher whose last call ended long ago is stuck, whatever it recorded (a poll
    that finds nothing new records nothing)."""

    def __init__(self, exchange: Any, **options: Any) -> None:
        super().__init__(exchange, **options)
        self.beats: dict[str, Beats] = {}

    def watcher(self, stream: str, symbol: str | None = None) -> Watcher:
        return _Named(super().watcher(stream, symbol))

    async def _timed(self, call: Awaitable[list[Event]]) -> list[Event]:
        try:
            return await call
        finally:
            name = _WATCHER.get()
            if name is not None:
                self.beats.setdefault(name, Beats()).beat()

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Event]:
        return await self._timed(super().fetch_open_orders(symbol))

    async def fetch_closed_orders(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        return await self._timed(super().fetch_closed_orders(symbol, since_ms))

    async def fetch_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> list[Event]:
        return await self._timed(super().fetch_order(symbol, order_id, client_order_id))

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        return await self._timed(super().fetch_my_trades(symbol, since_ms))

    async def fetch_balance(self) -> list[Event]:
        return await self._timed(super().fetch_balance())

    async def fetch_ticker(self, symbol: str) -> list[Event]:
        return await self._timed(super().fetch_ticker(symbol))


class AcknowledgingEngine(Engine):
    """The engine, keeping every event whose ``record`` returned. That return is the engine's
    acknowledgement to whoever handed the event over (a watcher, a command, the strategy):
    appended to the trace and folded. (Durable then too in a soak: nothing crashes, and the
    engine's clean stop closes the trace.) The only events not acknowledged to anyone are the
    periodic checkpoints the writer queues itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acknowledged: dict[int, Event] = {}

    async def record(self, event: Event) -> Event:
        recorded = await super().record(event)
        assert recorded.seq is not None
        self.acknowledged[recorded.seq] = recorded
        return recorded


class TimedLadder(Ladder):
    """The sample strategy, noting when each round over its markets ended, and whether its
    ``run`` ever returned (it loops until cancelled: returning, or raising, is dying)."""

    def __init__(self, amounts: dict[str, Decimal], **options: Any) -> None:
        super().__init__(amounts, **options)
        self.rounds = Beats()
        self.returned = False
        self.raised: str | None = None

    async def tend(self, engine: Engine, symbol: str) -> None:
        await super().tend(engine, symbol)
        if symbol == next(reversed(self.amounts)):
            self.rounds.beat()

    async def run(self, engine: Engine) -> None:
        self.rounds.beat()  # the first round is timed from here
        try:
            await super().run(engine)
        except Exception as exc:
            self.raised = repr(exc)
            raise  # the engine records it (EngineError "strategy"), checked in the trace too
        self.returned = True


class _Seen:
    """One answer of ``/_sim/truth``, as the comparison helpers take a venue's truth."""

    def __init__(self, truth: ServerTruth) -> None:
        self._truth = truth

    def truth(self) -> ServerTruth:
        return self._truth


def _settled(state: State, truth: ServerTruth) -> bool:
    """Nothing open anywhere, and the engine has seen every balance and every trade."""
    live = [o for o in state.orders.values() if o.status not in TERMINAL]
    return (
        not truth.open_orders
        and not live
        and totals(state) == truth_totals(_Seen(truth))
        and real_trades(state) == {f.id for f in truth.fills}
    )


def died(report: RunReport, engine: Engine, ladder: TimedLadder) -> None:
    """The engine's trace failed (it records, so does, nothing more), or the strategy's run
    ended (it raised, recorded as EngineError("strategy", ...), or returned)."""
    found = []
    if engine.failure is not None:
        found.append(f"the engine died: {engine.failure!r}")
    if ladder.returned or ladder.raised is not None:
        found.append(f"the strategy's run ended: {ladder.raised or 'returned'}")
    report.problems += [p for p in found if p not in report.problems]


async def soak(server: ServerProcess, path: Path, report: RunReport) -> AcknowledgingEngine:
    exchange = binance_client(server.url, timeout_ms=TIMEOUT_MS)
    venue = TimedVenue(exchange, watcher_settings=WATCHING)
    ladder = TimedLadder(AMOUNTS, every=1.0)
    try:
        async with AcknowledgingEngine.open(
            path,
            venue,
            universe=list(AMOUNTS),
            main_currency="USDT",
            clock=WallClock(),
            strategy=ladder,
        ) as opened:
            assert isinstance(opened, AcknowledgingEngine)
            engine = opened
            # The run is a bounded stretch of wall time: that is what a soak is (the engine
            # and its strategy wait on their own conditions meanwhile).
            end = time.monotonic() + SOAK_SECONDS
            while time.monotonic() < end and engine.failure is None and not ladder.returned:
                await asyncio.sleep(0.5)
            now = time.monotonic()
            # Nothing died or is stuck at the end of the trading: the strategy still tends its
            # markets, every watcher still gets answers (or errors) from the venue. (Problems,
            # not asserts: the run goes on to its summary table, which fails it.)
            died(report, engine, ladder)
            slowest = ladder.rounds.quiet(now)
            if ladder.rounds.count <= 3 or slowest >= STRATEGY_STUCK_AFTER:
                report.problems.append(
                    f"the strategy is stuck: {ladder.rounds.count - 1} rounds, the longest "
                    f"{slowest:.0f} s"
                )
            watchers = dict(engine.state.health.watchers.items())
            expected = {"balance"} | {
                f"{stream}:{symbol}"
                for stream in ("ticker", "orders", "trades")
                for symbol in AMOUNTS
            }
            stopped = sorted(n for n, h in watchers.items() if h.status == "stopped")
            if set(watchers) != expected or stopped:
                report.problems.append(f"watchers {sorted(watchers)}, stopped: {stopped}")
            quiet = {name: venue.beats.get(name, Beats()).quiet(now) for name in expected}
            stuck = {name: round(s, 1) for name, s in quiet.items() if s > STUCK_AFTER}
            if stuck:
                report.problems.append(f"watchers stuck, no venue call ending for (s): {stuck}")
            report.notes["strategy rounds (longest, s)"] = (
                f"{ladder.rounds.count - 1} ({slowest:.1f})"
            )
            report.notes["watcher venue calls (longest silence, s)"] = (
                f"{sum(b.count for b in venue.beats.values())} ({max(quiet.values()):.1f})"
            )
            report.notes["watcher errors"] = sum(h.errors for h in watchers.values())

            # Wind down: refuse new orders and cancel every open one (the strategy goes on,
            # its orders refused locally), then sync until the venue and the engine agree.
            await engine.halt("the soak is over")
            syncs = 0
            while syncs < SETTLE_TRIES:
                syncs += 1
                await engine.cancel_all()
                await engine.sync()
                if _settled(engine.state, await server.truth_async()):
                    break
            report.notes["final syncs"] = syncs
            died(report, engine, ladder)
    finally:
        await exchange.close()
    return engine


async def watched(run: Awaitable[AcknowledgingEngine], report: RunReport) -> AcknowledgingEngine:
    """``run``, or, if it hangs, a failure that shows every task's stack (a hung run must say
    what it hangs on, not block the suite)."""
    task = asyncio.ensure_future(run)
    await asyncio.wait({task}, timeout=HANG_AFTER)
    if task.done():
        return task.result()
    stacks = []
    for other in asyncio.all_tasks() - {asyncio.current_task()}:
        where = io.StringIO()
        other.print_stack(file=where)
        stacks.append(where.getvalue())
    task.cancel()
    await asyncio.wait({task}, timeout=30)
    report.problems.append(f"the run hung for {HANG_AFTER:g} s; its tasks:\n" + "\n".join(stacks))
    report.finish()
    raise AssertionError("unreachable: finish() fails on a problem")


@pytest.mark.slow
def test_the_ladder_with_every_fault_on_ends_equal_to_the_truth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = tmp_path / "trace"
    report = RunReport("soak: Ladder over HTTP, every fault on")
    report.notes["seconds trading"] = f"{SOAK_SECONDS:g}"
    report.notes["server seed"] = SEED
    started = time.monotonic()
    with start_server(
        seed=SEED, faults=FAULTS, tick_seconds=TICK, log=tmp_path / "server.log"
    ) as server:
        engine = asyncio.run(watched(soak(server, path, report), report))
        live = engine.state
        truth = server.truth()
        try:
            engine_equals_truth(live, server)
            report.equal = True
        except AssertionError as exc:
            report.problems.append(f"state vs truth: {exc}")
    report.notes["wall seconds"] = round(time.monotonic() - started)

    # faults: every kind, at least once
    report.faults = dict(truth.faults)
    missing = [k for k in ServerFaults.KINDS if truth.faults.get(k, 0) < 1]
    if missing:
        report.problems.append(f"fault kinds never injected: {', '.join(missing)}")

    # orders: one per intent (the engine gives every order a client order id)
    placed = truth.client_order_ids()
    report.orders_placed = len(placed)
    report.unique_intents = len(set(placed))
    if len(truth.orders) != len(placed):
        report.problems.append(f"{len(truth.orders) - len(placed)} order(s) with no client id")
    if placed_twice(placed):
        report.problems.append(f"placed twice: {placed_twice(placed)}")
    report.notes["orders placed"] = len(truth.orders)
    report.notes["fills"] = len(truth.fills)
    report.notes["requests"] = truth.requests
    report.anomalies = len(live.anomalies)

    # events: every acknowledged one is in the reopened trace, as acknowledged
    report.events_acknowledged = len(engine.acknowledged)
    with Trace.open(path) as trace:
        codec = Codec(trace.registry)
        report.notes["events in the trace"] = len(trace)
        in_trace = trace[:]
        report.events_found = sum(
            1
            for seq, event in engine.acknowledged.items()
            if seq < len(in_trace)
            and type(in_trace[seq]) is type(event)
            and (in_trace[seq].seq, in_trace[seq].ts) == (event.seq, event.ts)
            and codec.encode(in_trace[seq]) == codec.encode(event)
        )
        checked = verify(trace)
        if not checked.ok:
            report.problems.append(f"verify: {checked}")
        errors = [e for e in in_trace if isinstance(e, EngineError)]
        report.notes["engine errors (venue calls that failed)"] = len(errors)
        failed = [e for e in errors if e.where == "strategy"]
        if failed:
            report.problems.append(f"the strategy failed: {failed[0]}")
        leaked = [
            e.seq
            for e in in_trace
            if any(s.encode() in codec.encode(e) for s in (DEFAULT_API_KEY, DEFAULT_SECRET))
        ]
        if leaked:
            report.problems.append(f"credentials in events {leaked[:5]}")
    try:
        replays_to(path, live)
    except AssertionError as exc:
        report.problems.append(f"replay_from_trace differs from the live state: {exc}")
    if DEFAULT_SECRET in caplog.text or DEFAULT_API_KEY in caplog.text:
        report.problems.append("credentials in a log line")
    report.finish()
