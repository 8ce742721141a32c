"""The engine under disk faults: the trace's file system fills up or turns read-only mid-run.

Faults come two ways. Injected (always): the os calls the trace writes with (``os.write``,
``os.writev``, ``os.fsync``, ``os.fdatasync``, ``os.open`` to write) refuse for files under the
trace, mid-append (a full disk's short write, leaving a torn frame), at fsync, mid-snapshot,
and in the trace's committer process mid-commit of a body unit (through
``tests/disk_hook/sitecustomize.py``). And for real where this container can mount a small
tmpfs: it fills up, and is remounted read-only while the engine has let go of its trace.

Every scenario runs an engine on the simulated exchange in virtual time, trading all along,
and checks: no order or cancel reaches the venue while the engine is degraded; the alert said
why (the errno's text and the trace's path); what the watchers saw meanwhile is recorded once
the disk takes writes again (or repaired by a sync); the final state equals the venue's truth
and the replay of the trace; the trace verifies, and (durability "sync") holds every event the
engine folded, byte for byte, at its seq — after a clean stop and after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from adapters.sim import SimExchange, VirtualClock
from adapters.venue import CcxtVenue
from eventsrc import (
    BalanceObserved,
    Decision,
    Engine,
    EngineError,
    Event,
    EventNotSerializable,
    Fill,
    OrderRequested,
    State,
    SyncStarted,
    Trace,
    TraceRecovered,
    WatcherReconnected,
    replay_from_trace,
    state_hash,
    verify,
)
from eventsrc.trace import Durability
from tests.test_engine import filled_by_order, totals, truth_filled_by_order, truth_totals

D = Decimal
SPOT = ("BTC/USDT", "ETH/USDT")
ROOT = Path(__file__).resolve().parents[1]
HOOK = Path(__file__).with_name("disk_hook")
CHILD = Path(__file__).with_name("disk_child.py")
T = TypeVar("T")
UNIT, RECORD_CHUNK = 128, 32  # small units: the committer seals one every 128 events


# -- the faults ---------------------------------------------------------------------------------


class Disk:
    """Makes the file system refuse the writes to files under ``root`` (what the trace writes,
    nothing else), at the lowest level the trace writes with: ``refuse(ENOSPC)`` fails writes
    (the first ``writev`` puts down half its bytes first and reports a short write, as a full
    disk does: a torn frame), ``refuse(EROFS)`` fails writes and opening to write, ``refuse(EIO,
    at="fsync")`` fails only fsyncs (the bytes are written, their durability fails); ``heal``.
    ``child_full`` does the ENOSPC in the trace's committer process (see disk_hook)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.root = str(root)
        self.error: int | None = None
        self.at = "write"
        self.under = self.root
        self.torn = False
        self.refused = 0
        self.flag = root.parent / f"{root.name}.disk-full"
        monkeypatch.setenv("EVENTSRC_TEST_DISK_FULL", str(self.flag))
        monkeypatch.setenv(
            "PYTHONPATH", os.pathsep.join([str(HOOK), os.environ.get("PYTHONPATH", "")])
        )
        real_write, real_writev, real_open = os.write, os.writev, os.open
        real_fsync, real_fdatasync = os.fsync, os.fdatasync

        def inside(path: str) -> bool:
            return path == self.under or path.startswith(self.under + os.sep)

        def path_of(fd: int) -> str:
            try:
                return os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return ""

        def refusing(fd: int, at: str) -> int | None:
            if self.error is None or (self.at != at and self.at != "write"):
                return None
            if at == "fsync" and self.at == "write" and self.error == errno.ENOSPC:
                return None  # a full disk fails writes; what is written fsyncs
            if not inside(path_of(fd)):
                return None
            self.refused += 1
            return self.error

        def write(fd: int, data: Any, /) -> int:
            error = refusing(fd, "write")
            if error is not None:
                raise OSError(error, os.strerror(error))
            return real_write(fd, data)

        def writev(fd: int, buffers: Any, /) -> int:
            error = refusing(fd, "write")
            if error is None:
                return real_writev(fd, buffers)
            data = b"".join(buffers)
            if error == errno.ENOSPC and not self.torn and len(data) > 1:
                self.torn = True  # the room left takes half: the rest fails (a torn frame)
                return real_write(fd, data[: len(data) // 2])
            raise OSError(error, os.strerror(error))

        def fsync(fd: int, /) -> None:
            error = refusing(fd, "fsync")
            if error is not None:
                raise OSError(error, os.strerror(error))
            real_fsync(fd)

        def fdatasync(fd: int, /) -> None:
            error = refusing(fd, "fsync")
            if error is not None:
                raise OSError(error, os.strerror(error))
            real_fdatasync(fd)

        def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if self.error == errno.EROFS and writing and inside(os.path.abspath(os.fspath(path))):
                self.refused += 1
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return real_open(path, flags, mode, dir_fd=dir_fd)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "writev", writev)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "fdatasync", fdatasync)
        monkeypatch.setattr(os, "open", open_)

    def refuse(self, error: int, at: str = "write", under: Path | None = None) -> None:
        self.error, self.at, self.torn = error, at, False
        self.under = self.root if under is None else str(under)

    def child_full(self) -> None:
        self.flag.write_text(self.root)

    def heal(self) -> None:
        self.error = None
        self.flag.unlink(missing_ok=True)


class Tmpfs:
    """A small tmpfs mounted at ``root`` (skips the test if this container cannot mount one):
    ``fill()`` takes every byte left, ``free()`` gives them back, ``read_only(flag)``
    remounts it read-only or writable."""

    def __init__(self, root: Path, size: str = "8m") -> None:
        root.mkdir()
        self.root = root
        if not shutil.which("mount"):
            pytest.skip("no mount command here")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
        self.filler = root / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        block = b"\0" * 65536
        try:
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    if len(block) == 1:
                        break
                    block = block[: len(block) // 2]
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, flag: bool) -> None:
        mode = "ro" if flag else "rw"
        done = subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(self.root)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.root)], capture_output=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    disk = Tmpfs(tmp_path / "tmpfs")
    try:
        yield disk
    finally:
        disk.unmount()


# -- an engine trading through it -------------------------------------------------------------


class Recorder:
    """A strategy that keeps every event it is told of (each folded) with its stored record:
    seq, ts, kind, bytes."""

    def __init__(self) -> None:
        self.folded: dict[int, tuple[int, str, bytes]] = {}
        self.told: list[Event] = []

    def on_event(self, engine: Engine, event: Event) -> None:
        assert event.seq is not None
        self.told.append(event)
        kinds = engine.trace.code_table("kind")
        for seq, ts, kind, payload in engine.trace.records(event.seq, event.seq + 1):
            self.folded[seq] = (ts, kinds[kind][0], bytes(payload))


class Trader(Recorder):
    """A Recorder that buys or sells a little BTC every 3 s, keeping each create's answer, when
    it was asked for, and why the engine was degraded then, if it was; and each time also asks
    for a post-only buy above the market, which the venue rejects (an answer that names its
    request by seq)."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[tuple[int, str | None, Any]] = []

    async def run(self, engine: Engine) -> None:
        side = "buy"
        while True:
            asked = engine.clock.now_ns()
            answer = await engine.create_order(
                "BTC/USDT", side, D("0.001"), type="market", waitfor=1.0
            )
            self.answers.append((asked, engine.degraded, answer))
            side = "sell" if side == "buy" else "buy"
            price = engine.state.last_price.get("BTC/USDT")
            if price is not None:
                high = (price * D("1.05")).quantize(D("0.1"))
                await engine.create_order(
                    "BTC/USDT", "buy", D("0.001"), high, post_only=True, waitfor=0.5
                )
            await engine.clock.sleep(3.0)


class Sent:
    """Every create and cancel the engine sends to the venue, with whether the engine was
    degraded when it did."""

    def __init__(self, venue: CcxtVenue) -> None:
        self.calls: list[tuple[str, str | None]] = []
        self.engine: Engine | None = None
        for name in ("create_order", "cancel_order"):
            real = getattr(venue, name)
            setattr(venue, name, self._spy(name, real))

    def _spy(self, name: str, real: Callable[..., Awaitable[Any]]) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            degraded = None if self.engine is None else self.engine.degraded
            self.calls.append((name, degraded))
            return await real(*args, **kwargs)

        return call

    def while_degraded(self) -> list[tuple[str, str | None]]:
        return [call for call in self.calls if call[1] is not None]


async def until(
    clock: VirtualClock, done: Callable[[], bool], what: str, seconds: float = 900.0
) -> None:
    """Wait (in virtual time, in steps of 0.5 s) until ``done()``; fail after ``seconds`` of
    it or 120 s of real time (the committer is a real process)."""
    deadline = time.monotonic() + 120
    waited = 0.0
    while not done():
        assert waited < seconds and time.monotonic() < deadline, f"timed out waiting: {what}"
        await clock.sleep(0.5)
        waited += 0.5


def run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(work())


def new_trace(path: Path) -> None:
    with Trace.open(path, "w", unit=UNIT, record_chunk=RECORD_CHUNK):
        pass


@contextlib.asynccontextmanager
async def trading(
    path: Path,
    ex: SimExchange,
    durability: Durability,
    alerts: list[str],
    strategy: Any = None,
    **options: Any,
) -> AsyncIterator[tuple[Engine, Sent]]:
    """An engine on ``ex`` (its alerts into ``alerts``), and what it sends."""
    venue = CcxtVenue(ex)
    sent = Sent(venue)

    def alert(what: str, message: str, event: Event | None) -> None:
        alerts.append(f"{what}: {message}")

    async with Engine.open(
        path,
        venue,
        universe=SPOT,
        main_currency="USDT",
        clock=ex.clock,
        durability=durability,
        strategy=strategy,
        alert=alert,
        ids="disk",
        **options,
    ) as engine:
        sent.engine = engine
        yield engine, sent


def sim() -> SimExchange:
    return SimExchange(seed=31, clock=VirtualClock(faithful=True), latency=0.02)


def someone_else_trades(ex: SimExchange) -> Awaitable[Any]:
    """An order on the account that the engine did not place (its watchers see it)."""
    return ex.create_order("ETH/USDT", "market", "buy", 0.05)


def fills(trader: Trader, after: int = 0) -> int:
    return sum(isinstance(a, Fill) for t, _, a in trader.answers if t > after)


async def ride_out(
    engine: Engine,
    ex: SimExchange,
    trader: Trader,
    fault: Callable[[], Any],
    heal: Callable[[], Any],
    seconds: float = 30.0,
    steady: bool = True,
) -> None:
    """Trade a while; start the fault; once the engine is degraded, trade on (the strategy,
    and someone else on the account) for ``seconds``; heal; wait until orders are accepted
    again and one more is filled. ``steady``: the fault keeps the engine degraded until it
    heals (a fault the trace only meets now and then lets it record in between)."""
    clock = ex.clock
    assert isinstance(clock, VirtualClock)
    await until(clock, lambda: fills(trader) >= 2, "two orders filled")
    fault()
    await until(clock, lambda: engine.degraded is not None, "the engine degraded")
    began = clock.now_ns()
    # Refused at once, sending and recording nothing (Sent checks the venue saw nothing).
    assert await engine.create_order("BTC/USDT", "buy", D("0.001"), type="market") is None
    assert await engine.cancel_order("no-such-order", "BTC/USDT") is False
    assert clock.now_ns() == began
    await someone_else_trades(ex)
    await clock.sleep(seconds)
    assert engine.degraded is not None or not steady, "the disk still refuses"
    refused = [a for t, why, a in trader.answers if t > began and why is not None]
    assert all(a is None for a in refused)  # (the strategy's, if it asked meanwhile)
    heal()
    await until(clock, lambda: engine.degraded is None, "the engine took its trace back")
    resumed = clock.now_ns()
    await until(clock, lambda: fills(trader, resumed) >= 1, "an order filled after")


def check_the_run(
    engine: Engine,
    sent: Sent,
    ex: SimExchange,
    alerts: list[str],
    path: Path,
    errno_text: str,
    told: str | None = None,
) -> list[Event]:
    """Inside the engine, after ``ride_out`` and a sync: its state is the venue's truth;
    nothing was sent while it was degraded; the alerts said why and that recording resumed;
    the trace recorded the outage (``told``: what the file system said last, if not
    ``errno_text``), and then what the watchers saw meanwhile. The events."""
    assert totals(engine.state) == truth_totals(ex)
    assert filled_by_order(engine.state) == truth_filled_by_order(ex)
    placed = [o.client_order_id for o in ex.venue.orders.values()]
    assert len(placed) == len(set(placed))  # no order twice
    assert sent.calls and sent.while_degraded() == []
    suspended = [a for a in alerts if "recording suspended" in a]
    assert suspended and errno_text in suspended[0] and str(path) in suspended[0], alerts
    assert any("recording resumed" in a for a in alerts), alerts
    events = engine.trace[:]
    outages = [e for e in events if isinstance(e, EngineError) and e.where == "trace"]
    assert outages and (told or errno_text) in outages[0].message, outages
    first = outages[0].seq
    assert first is not None
    # What the watchers saw while the trace took nothing is recorded after the outage's
    # note, before anything the test asked for since (or, if it was dropped, by the sync that
    # repairs it): the ETH someone else bought meanwhile is in a balance observed then.
    synced = next(
        (e.seq for e in events[first:] if isinstance(e, SyncStarted) and e.scope == "requested"),
        len(events),
    )
    eth = [
        b.total
        for e in events[first:synced]
        if isinstance(e, BalanceObserved)
        for b in e.balances
        if b.currency == "ETH" and b.total
    ]
    assert eth, "no balance the watchers saw during the outage was recorded"
    check_causes(events)
    return events


def what(event: Event) -> str:
    """An event but for where the trace put it (its seq, ts and the seq of its cause)."""
    cause = event.cause if type(event.cause) is str else None
    return repr(attrs.evolve(event, seq=None, ts=None, cause=cause))


def check_causes(events: list[Event]) -> None:
    """Every answer naming its order's request by seq (a rejection, a local refusal) names the
    request (also when the disk lost both and they were appended again, at other seqs)."""
    answers = 0
    for event in events:
        cid = getattr(event, "client_order_id", None)
        if cid is not None and type(event.cause) is int and event.kind != "order_requested":
            cause = events[event.cause]
            assert isinstance(cause, OrderRequested) and cause.client_order_id == cid, event
            answers += 1
    assert answers  # (the Trader's post-only orders are rejected)


def check_trace(path: Path, live: State, folded: dict[int, tuple[int, str, bytes]]) -> None:
    """The trace verifies, replays to ``live``, and holds every event in ``folded`` (what the
    engine folded: with durability "sync", each was on disk first) at its seq, byte for
    byte."""
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert state_hash(replay_from_trace(trace)) == state_hash(live)
        assert folded and max(folded) < len(trace)
        kinds = trace.code_table("kind")
        for seq, ts, kind, payload in trace.records():
            if seq in folded:
                assert folded[seq] == (ts, kinds[kind][0], bytes(payload)), f"event {seq} differs"


# -- injected faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("durability", "error", "at", "errno_text"),
    [
        ("sync", errno.ENOSPC, "write", "No space left on device"),
        ("group", errno.ENOSPC, "write", "No space left on device"),
        ("sync", errno.EROFS, "write", "Read-only file system"),
        ("sync", errno.EIO, "fsync", "Input/output error"),
    ],
    ids=["full-mid-append-sync", "full-mid-append-group", "read-only", "fsync-fails"],
)
def test_a_failing_disk_degrades_the_engine_and_it_takes_the_trace_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    durability: Durability,
    error: int,
    at: str,
    errno_text: str,
) -> None:
    path = tmp_path / "trace"
    new_trace(path)
    disk = Disk(monkeypatch, path)
    ex = sim()
    trader = Trader()
    alerts: list[str] = []

    async def main() -> tuple[State, list[Event]]:
        async with trading(path, ex, durability, alerts, trader) as (engine, sent):
            await ride_out(engine, ex, trader, lambda: disk.refuse(error, at), disk.heal)
            await engine.sync()
            events = check_the_run(engine, sent, ex, alerts, path, errno_text)
        return engine.state, events

    live, events = run(main)
    assert disk.refused > 0
    note = next(e for e in events if isinstance(e, EngineError) and e.where == "trace")
    if disk.torn:
        # A short write left a torn frame: reopening set it aside, and said so. (The first
        # write refused may instead have been a new segment's header: nothing torn then.)
        assert any(isinstance(e, TraceRecovered) and e.torn for e in events)
    if durability == "sync":
        assert "appended again" not in note.message  # every event folded was on disk
        check_trace(path, live, trader.folded)
    else:
        # "group" folds before fsyncing: the torn frame held events the engine had folded,
        # and they were appended again (with new seqs), so the trace still replays to it.
        assert "the disk lost were appended again" in note.message
        with Trace.open(path) as trace:
            assert verify(trace).ok
            assert state_hash(replay_from_trace(trace)) == state_hash(live)
            # Every event the engine folded is there, some at new seqs (naming their causes
            # by their new seqs too).
            stored = Counter(what(e) for e in trace)
            assert not Counter(what(e) for e in trader.told) - stored


def test_a_full_disk_in_the_committer_mid_commit_degrades_the_engine_until_it_has_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace"
    new_trace(path)
    disk = Disk(monkeypatch, path)
    ex = sim()
    trader = Trader()
    alerts: list[str] = []

    async def main() -> State:
        async with trading(path, ex, "sync", alerts, trader) as (engine, sent):
            committed = engine.trace.committed
            await ride_out(engine, ex, trader, disk.child_full, disk.heal, steady=False)
            await until(ex.clock, lambda: engine.trace.committed > committed, "a unit sealed")  # type: ignore[arg-type]
            await engine.sync()
            check_the_run(engine, sent, ex, alerts, path, "No space left on device")
        return engine.state

    live = run(main)
    check_trace(path, live, trader.folded)
    with Trace.open(path) as trace:
        assert trace.committed >= UNIT  # the body took its units once there was room


def test_an_overflowing_backlog_drops_observations_and_a_sync_repairs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace"
    new_trace(path)
    disk = Disk(monkeypatch, path)
    ex = sim()
    trader = Trader()
    alerts: list[str] = []

    async def main() -> State:
        async with trading(path, ex, "sync", alerts, trader, backlog=3) as (engine, sent):
            await ride_out(engine, ex, trader, lambda: disk.refuse(errno.ENOSPC), disk.heal)
            await until(ex.clock, lambda: engine.degraded is None, "the repairing sync")  # type: ignore[arg-type]
            # No engine.sync() here: the engine's own repair made it equal to the truth.
            events = check_the_run(engine, sent, ex, alerts, path, "No space left on device")
        note = next(e for e in events if isinstance(e, EngineError) and e.where == "trace")
        assert "observations dropped" in note.message
        gaps = [e for e in events if isinstance(e, WatcherReconnected) and e.source == "engine"]
        assert gaps and all(g.seq is not None and g.seq > (note.seq or 0) for g in gaps)
        assert {g.watcher for g in gaps} <= set(engine.state.watchers.keys())
        repaired = [e for e in events if e.kind == "sync_completed"]
        assert repaired and repaired[-1].seq > gaps[0].seq  # type: ignore[operator]
        assert any("observations are dropped" in a for a in alerts)
        return engine.state

    live = run(main)
    check_trace(path, live, trader.folded)


def test_an_event_that_cannot_be_encoded_is_refused_and_the_engine_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace"
    ex = sim()
    alerts: list[str] = []

    async def main() -> State:
        async with trading(path, ex, "sync", alerts) as (engine, _sent):
            with pytest.raises(EventNotSerializable):
                await engine.record(Decision("too big", {"n": 2**70}, source="strategy"))
            assert engine.failure is None and engine.degraded is None
            kept = await engine.record(Decision("fine", {"n": 1}, source="strategy"))
            assert kept.seq == engine.state.seq
            answer = await engine.create_order("BTC/USDT", "buy", D("0.001"), type="market")
            assert isinstance(answer, Fill)
        return engine.state

    live = run(main)
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert state_hash(replay_from_trace(trace)) == state_hash(live)
    assert not [a for a in alerts if a.startswith("trace")]


def test_a_full_disk_mid_snapshot_at_the_stop_loses_nothing_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace"
    new_trace(path)
    disk = Disk(monkeypatch, path)
    ex = sim()
    recorder = Recorder()
    alerts: list[str] = []

    async def main() -> State:
        async with trading(path, ex, "sync", alerts, recorder) as (engine, _sent):
            for side in ("buy", "sell"):
                answer = await engine.create_order("BTC/USDT", side, D("0.001"), type="market")
                assert isinstance(answer, Fill)
            await engine.sync()
            assert totals(engine.state) == truth_totals(ex)
            # The stop's snapshot is the one file written under snapshots/: its fsync fails.
            disk.refuse(errno.ENOSPC, at="fsync", under=path / "snapshots")
        return engine.state

    live = run(main)
    assert disk.refused == 1
    disk.heal()
    assert not list((path / "snapshots").iterdir())  # no snapshot, and no half of one
    check_trace(path, live, recorder.folded)
    with Trace.open(path) as trace:
        assert trace[-1].kind == "strategy_stopped"  # the stop itself was recorded


def test_stopping_while_the_disk_refuses_does_not_hang_and_keeps_every_acknowledged_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "trace"
    new_trace(path)
    disk = Disk(monkeypatch, path)
    ex = sim()
    trader = Trader()
    alerts: list[str] = []
    acknowledged: list[Event] = []

    async def main() -> State:
        async with trading(path, ex, "sync", alerts, trader) as (engine, sent):
            clock = ex.clock
            assert isinstance(clock, VirtualClock)
            await until(clock, lambda: fills(trader) >= 2, "two orders filled")
            acknowledged.append(await engine.record(Decision("before", {}, source="test")))
            disk.refuse(errno.EROFS)
            await until(clock, lambda: engine.degraded is not None, "the engine degraded")
            waiting = engine.spawn(engine.record(Decision("during", {}, source="test")))
            await clock.sleep(20.0)
            assert not waiting.done()  # held until the trace records again
            assert sent.while_degraded() == []
        return engine.state

    live = run(main)  # (the stop made one more attempt, and gave up: no hang)
    assert any("stopped while" in a and "Read-only file system" in a for a in alerts), alerts
    disk.heal()
    with Trace.open(path) as trace:  # a reader: the trace as the stop left it
        assert trace[-1].kind != "strategy_stopped"  # (it could not be recorded)
        assert acknowledged[0].seq is not None and trace[acknowledged[0].seq] == acknowledged[0]
        assert not any(isinstance(e, Decision) and e.name == "during" for e in trace)
    check_trace(path, live, trader.folded)

    # The next start takes over from the trace and the venue: equal to the truth again.
    async def again() -> State:
        async with trading(path, ex, "sync", alerts) as (engine, _sent):
            await engine.sync()
            assert totals(engine.state) == truth_totals(ex)
            assert filled_by_order(engine.state) == truth_filled_by_order(ex)
        return engine.state

    final = run(again)
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert state_hash(replay_from_trace(trace)) == state_hash(final)


# -- a real file system: a small tmpfs --------------------------------------------------------


def test_a_tmpfs_that_fills_up_then_turns_read_only_is_ridden_out(
    tmp_path: Path, tmpfs: Tmpfs
) -> None:
    path = tmpfs.root / "trace"
    new_trace(path)
    ex = sim()
    trader = Trader()
    alerts: list[str] = []

    async def main() -> State:
        async with trading(path, ex, "sync", alerts, trader) as (engine, sent):
            clock = ex.clock
            assert isinstance(clock, VirtualClock)

            def read_only_too() -> None:
                # The engine let go of its trace (it holds no file open to write: else no
                # remount could make it read-only): now its attempts meet EROFS.
                tmpfs.read_only(True)

            async def outage() -> None:
                await until(clock, lambda: engine.degraded is not None, "the engine degraded")
                read_only_too()
                await until(
                    clock,
                    lambda: any("Read-only file system" in a for a in alerts),
                    "an attempt met the read-only file system",
                )

            def heal() -> None:
                tmpfs.read_only(False)
                tmpfs.free()

            watcher = asyncio.ensure_future(outage())
            await ride_out(engine, ex, trader, tmpfs.fill, heal, seconds=40.0)
            await watcher
            await engine.sync()
            check_the_run(
                engine, sent, ex, alerts, path, "No space left on device", "Read-only file system"
            )
            assert any("still suspended" in a and "(EROFS)" in a for a in alerts), alerts
        return engine.state

    live = run(main)
    check_trace(path, live, trader.folded)


# -- a crash: the process dies, its trace never closed ---------------------------------------


def run_and_kill(path: Path, when: str, acks_after: int) -> tuple[list[list[str]], bool]:
    """Run disk_child.py on ``path``; SIGKILL it (and its committer) once it printed ``when``
    and ``acks_after`` more acknowledgements; the acknowledgements it printed, and whether a
    write it made was cut short."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    acks: list[list[str]] = []
    seen, after, torn = False, 0, False
    # (a real timeout, only for a child that hangs: the lines are read as they come)
    watchdog = threading.Timer(120, os.killpg, (child.pid, signal.SIGKILL))
    watchdog.start()
    try:
        for line in child.stdout:
            words = line.split()
            if words[0] == "ack":
                acks.append(words[1:])
                after += seen
            if words[0] == "waited":
                torn = words[1] == "1"
            seen = seen or words[0] == when
            if seen and after >= acks_after:
                break
        else:
            assert child.stderr is not None
            pytest.fail(f"the child ended before {when}: {child.stderr.read()}")
    finally:
        watchdog.cancel()
        os.killpg(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
    acks += [line.split()[1:] for line in rest.splitlines() if line.startswith("ack ")]
    return acks, torn


@pytest.mark.parametrize(("when", "acks_after"), [("waited", 0), ("resumed", 25)])
def test_a_crash_during_or_after_an_outage_loses_no_acknowledged_event(
    tmp_path: Path, when: str, acks_after: int
) -> None:
    path = tmp_path / "trace"
    new_trace(path)
    acks, torn = run_and_kill(path, when, acks_after)
    assert len(acks) > 10
    with Trace.open(path, "a") as trace:  # recovery: as the next start would run it
        # Killed mid-outage, the frame the full disk tore is still there: set aside now (a
        # kill mid-write can tear one too); cut short, never damaged.
        assert trace.recovery.dropped_frames <= 1
        assert all(tail.torn for tail in trace.recovery.tails)
        if when == "waited" and torn:
            assert trace.recovery.dropped_frames == 1
        kinds = trace.code_table("kind")
        stored = {
            seq: (str(ts), kinds[kind][0], bytes(payload).hex())
            for seq, ts, kind, payload in trace.records()
        }
        for seq, ts, kind, payload, _hash in acks:
            assert stored.get(int(seq)) == (ts, kind, payload), f"acknowledged event {seq}"
        assert verify(trace).ok
        last = acks[-1]
        # The replay up to the last event the engine folded is the state it had then.
        assert state_hash(replay_from_trace(trace, until=int(last[0]))) == last[4]
