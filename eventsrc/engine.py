"""The live engine: one asyncio loop, one inbox, one writer, the same reducer as replay.

Every producer (watchers, commands, the strategy, start-up sync) hands events to the engine's
inbox (``record``); one writer task appends each to the trace, folds it as recorded (the event
read back from the trace, exactly what replay folds), then wakes whatever awaits it: the
producer, commands waiting for a fill, the strategy's ``on_event``. So ``engine.state`` is
always the fold of the trace, and ``replay_from_trace`` of the trace gives it back.

Commands mirror Planar's ``call!``. ``create_order`` records the request (with a client order
id) and answers with a ``Fill`` of the order folded within ``waitfor`` seconds, ``MISSING``
(created, not filled yet) or ``None`` (refused or failed; the reason is in the trace). Before
sending, local checks (market, precision, minimums, free cash, margin mode, risk limits)
refuse what the venue would. A create that gets no answer is never blindly sent again: the
engine first asks the venue for the order by its client order id and adopts it if it exists;
only if the venue says it has no such order is the same request (the same client order id)
sent again. So one intent never becomes two orders.

Watchers are event producers the venue provides (``Venue.watcher``): the balance always,
positions for a margin strategy, tickers of the universe, orders and trades of a market from
its first order until it has had no open order for ``idle_timeout`` seconds. The engine runs
each as a task, records why one dies and restarts it. Nothing outlives the engine: leaving
``async with`` cancels and awaits every task, folds what the inbox still holds, records a
checkpoint and StrategyStopped, saves a snapshot and closes the trace.

Start-up is crash recovery: replay the trace (from its newest trusted snapshot), record
StrategyStarted, then sync with the venue (orders and their trades first, then positions and
the balance) and record what it says; orders the trace holds open are looked up one by one
when the venue no longer lists them, and requests that never got an answer are looked up by
client order id.

A trace that stops taking events (a full or read-only disk, an I/O error: whatever
``Trace.append`` raises, but an event that cannot be encoded, which only its producer is told
of) degrades the engine instead of ending it (see outage.py). It alerts why (the errno's text
and the trace's path), and until the trace records again:

- it places nothing: ``create_order`` (and ``close_position``) answers None, ``cancel_order``
  and ``set_leverage`` False, ``cancel_all`` 0, sending nothing and recording nothing;
  ``engine.degraded`` says why. A create whose request was waiting to be recorded when the
  outage began is not sent either once it is recorded: a LocalCheckFailed says why. (A cancel
  whose request was waiting is sent once recorded: cancelling late only takes risk off);
- the watchers go on: their observations are held in order (``backlog`` of them at most; past
  that they are dropped, and a gap marker per watcher and a sync with the venue follow the
  recovery); every other ``record`` waits until its event is recorded;
- every ``disk_retry`` seconds of the clock it reopens the trace (recovery sets aside a write
  cut short), appends again the events it had folded that the disk lost, records an
  EngineError telling of the outage, then everything held, in order, and alerts that
  recording resumed. Orders are accepted again at once (after the repairing sync, if
  observations were dropped); to keep them refused until someone looks, halt the engine from
  the alert hook (``engine.spawn(engine.halt(why))``: it takes effect at once).

Stopping while the trace still refuses makes one more attempt, then stops without the final
checkpoint, StrategyStopped and snapshot; what is held is not recorded (its callers get
EngineClosed, and the alert says how much), and nothing acknowledged is lost: the next start
replays the trace and syncs with the venue.

Time is the clock's (``now_ns``, ``sleep``): with the simulated exchange's clock a test runs in
virtual time and never sleeps for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import enum
import hashlib
import itertools
import logging
import os
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import attrs

from eventsrc.clock import Clock, WallClock
from eventsrc.codec import Codec
from eventsrc.errors import EventNotSerializable, EventsrcError, UnknownEventKind
from eventsrc.events import (
    Balance,
    BalanceObserved,
    CancelRequested,
    Checkpoint,
    Decision,
    EngineError,
    Event,
    LocalCheckFailed,
    OrderRejected,
    OrderRequested,
    OrderRequestFailed,
    StrategyStarted,
    StrategyStopped,
    SyncCompleted,
    SyncStarted,
    WatcherError,
    WatcherReconnected,
    WatcherStopped,
)
from eventsrc.outage import Diverged, Outage, Pending, describe, read_unsure, reconcile
from eventsrc.reducer import DUPLICATE_ORDER, reduce
from eventsrc.replay import checkpoint, replay_from_trace
from eventsrc.snapshot import save_snapshot
from eventsrc.state import (
    ACKNOWLEDGED,
    EXACT,
    FAILED,
    OPEN,
    PARTIALLY_FILLED,
    REQUESTED,
    TERMINAL,
    ZERO,
    Fill,
    Order,
    State,
)
from eventsrc.trace import Durability, Trace
from eventsrc.venue import (
    Feed,
    Market,
    NotFound,
    Refused,
    Unreachable,
    Venue,
    VenueError,
    Watcher,
)

__all__ = ["MISSING", "Engine", "EngineClosed", "Limits", "Missing", "Strategy"]

log = logging.getLogger("eventsrc.engine")

_LIVE = frozenset({ACKNOWLEDGED, OPEN, PARTIALLY_FILLED})
"""Statuses of an order that may still fill."""
_UNSETTLED = frozenset({REQUESTED, FAILED, ACKNOWLEDGED})
"""Statuses of a request the venue has not named yet that may still become an order."""


class _Send(enum.Enum):
    SEND = "send"


_SEND = _Send.SEND
"""A known client order id's request the venue says it never received: send it."""


class Missing:
    """``create_order``'s answer for an order the venue created but has not filled yet."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = Missing()


class EngineClosed(EventsrcError):
    """The engine was used after it stopped (or before it started)."""


class Strategy(Protocol):
    """A user's strategy: the engine calls ``on_event`` after each fold (return quickly; to
    act, start a command with ``engine.spawn``). A strategy may also have an ``async
    run(engine)`` the engine supervises; both are optional."""

    def on_event(self, engine: Engine, event: Event) -> None: ...


Alert = Callable[[str, str, Event | None], None]
"""``alert(what, message, event)``: called on anomalies, halts and watcher trouble."""


@attrs.frozen
class Limits:
    """Risk limits, checked before any order is sent (a refusal is recorded as a decision).

    ``max_order_notional`` in the quote currency; ``max_position`` the most of a market the
    strategy may hold after an order (base amount for spot, contracts for a contract market);
    ``max_open_orders`` across the universe; ``max_daily_loss`` in the main currency, from the
    equity (cash valued at last prices) when the engine started or the day began (UTC)."""

    max_order_notional: Decimal | None = None
    max_position: Decimal | None = None
    max_open_orders: int | None = None
    max_daily_loss: Decimal | None = None


@attrs.define
class _Retry:
    """Capped exponential backoff with seeded jitter."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int = 4
    rng: random.Random = attrs.field(factory=lambda: random.Random(7))

    def delay(self, attempt: int, hint: float | None = None) -> float:
        wait = min(self.cap, self.base * 2 ** max(attempt - 1, 0))
        wait = wait * (0.5 + self.rng.random() / 2)
        return float(max(wait, hint or 0.0))


class Engine:
    """The live engine (see the module docstring). Open one with ``Engine.open``."""

    def __init__(
        self,
        trace: Trace,
        venue: Venue,
        *,
        universe: Sequence[str],
        main_currency: str,
        margin: bool,
        clock: Clock,
        strategy: Any = None,
        limits: Limits | None = None,
        alert: Alert | None = None,
        name: str = "",
        watchers: bool = True,
        tickers: bool = True,
        lookback: float = 86_400.0,
        idle_timeout: float = 300.0,
        checkpoint_every: int = 1_000,
        wait_step: float = 0.25,
        retry: _Retry | None = None,
        ids: str | None = None,
        disk_retry: float = 5.0,
        backlog: int = 10_000,
    ) -> None:
        if disk_retry <= 0:
            raise ValueError(f"disk_retry must be > 0 seconds, not {disk_retry}")
        if backlog < 0:
            raise ValueError(f"backlog must be >= 0 events, not {backlog}")
        self.trace = trace
        self.venue = venue
        self.universe = tuple(universe)
        self.main_currency = main_currency
        self.margin = margin
        self.clock = clock
        self.strategy = strategy
        self.limits = limits or Limits()
        self._alert = alert
        self._name = name or (type(strategy).__name__ if strategy is not None else "")
        self._run_watchers = watchers
        self._tickers = tickers
        self._lookback = lookback
        self._idle_timeout = idle_timeout
        self._checkpoint_every = checkpoint_every
        self._wait_step = wait_step
        self._retry = retry or _Retry()
        self._disk_retry = disk_retry
        self._backlog = backlog
        self._state = State()
        self._codec = Codec(trace.registry)  # (for debug log lines)
        self._inbox: asyncio.Queue[Pending] = asyncio.Queue()
        self._folded = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._tasks: dict[asyncio.Task[Any], None] = {}  # a set, in the order of creation
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._watched_since: dict[str, int] = {}
        self._markets: dict[str, Market] = {}
        self._running = False
        self._started = False
        """StrategyStarted is recorded: the run's end is recorded too."""
        self._halted: str | None = None
        self._outage: Outage | None = None
        """The trace is not taking events (see the module docstring)."""
        self._outages = 0
        """How many outages began: a command that sees this change while it waits did not
        decide under the conditions it is now in."""
        self._repairing: str | None = None
        """An outage dropped observations: why orders wait for the sync that repairs them."""
        self._moved: dict[int, int] = {}
        """Seqs of events appended again after an outage lost them: old seq -> new seq (a
        ``cause`` citing an old one is rewritten when it is recorded)."""
        self._since_checkpoint = 0
        self._cids = itertools.count(1)
        self._cid_prefix = ""  # set at start: unique per session of the trace
        self._ids = ids
        self._day: tuple[int, Decimal] | None = None

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str],
        venue: Venue,
        *,
        universe: Sequence[str],
        main_currency: str,
        margin: bool = False,
        clock: Clock | None = None,
        durability: Durability = "group",
        strategy: Any = None,
        limits: Limits | None = None,
        alert: Alert | None = None,
        **options: Any,
    ) -> AsyncIterator[Engine]:
        """Open (or create) the trace at ``path``, replay it, sync with ``venue`` and run;
        leaving the ``async with`` stops everything and closes the trace. ``options``: the
        keyword knobs of ``Engine`` (``tickers``, ``lookback``, ``idle_timeout``, ...)."""
        if not universe:
            raise ValueError("the universe is empty: name the markets the strategy trades")
        clock = clock or WallClock()
        trace = Trace.open(Path(path), "a", durability=durability, clock=clock)
        try:
            engine = cls(
                trace,
                venue,
                universe=universe,
                main_currency=main_currency,
                margin=margin,
                clock=clock,
                strategy=strategy,
                limits=limits,
                alert=alert,
                **options,
            )
        except BaseException:
            trace.close()
            raise
        reason = "stopped"
        try:
            await engine._start()
            yield engine
        except BaseException as exc:
            reason = (
                f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, asyncio.CancelledError)
                else "cancelled"
            )
            raise
        finally:
            await engine._stop(reason)

    async def _start(self) -> None:
        self._state = replay_from_trace(self.trace)
        # Client order ids must never repeat at the venue: not across restarts of this trace
        # (its next seq), nor across traces trading one account (a random part).
        # ``ids`` (a seed) makes them reproducible, for simulations run twice alike.
        session = self._state.seq + 1
        token = (
            secrets.token_hex(3)
            if self._ids is None
            else hashlib.sha256(f"{self._ids}:{session}".encode()).hexdigest()[:6]
        )
        self._cid_prefix = f"es{token}{session:x}"
        self._running = True
        self._writer = asyncio.ensure_future(self._write_loop())
        self._markets = dict(await self._call(self.venue.load_markets))
        unknown = [s for s in self.universe if s not in self._markets]
        if unknown:
            raise ValueError(
                f"the venue {self.venue.name} has no market {', '.join(map(repr, unknown))}"
                + _suggest(unknown[0], self._markets)
            )
        await self.record(
            StrategyStarted(
                self.main_currency,
                self.universe,
                margin=self.margin,
                exchange=self.venue.name,
                strategy=self._name,
                source="engine",
            )
        )
        self._started = True
        await self._sync("startup")
        self._daily_loss()  # the day's starting equity, if every price is known yet
        if self._run_watchers:
            self._start_watchers()
        run = getattr(self.strategy, "run", None)
        if run is not None:
            self._spawn(self._supervise_strategy(run), "strategy")

    async def _stop(self, reason: str) -> None:
        """Cancel and await every task, record what is queued and the end, close. While the
        trace refuses writes: one more attempt to reopen it, else stop without the end (see
        the module docstring); never waits for the disk."""
        if self._writer is None:
            self.trace.close()
            return
        tasks = [*self._tasks, *self._watchers.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await _end(task, self.clock, self._wait_step)
        self._watchers.clear()
        self._tasks.clear()
        if self._started:
            # Queued, not awaited: if the trace cannot take them, the stop goes on without.
            self._inbox.put_nowait(Pending(checkpoint(self._state, source="engine"), _unawaited()))
            self._inbox.put_nowait(Pending(StrategyStopped(reason, source="engine"), _unawaited()))
        self._running = False
        self._inbox.put_nowait(Pending(_STOP, _unawaited()))
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        outage = self._outage
        if outage is not None:
            self._abandon(outage)
            return
        try:
            if self._state.seq >= 0:
                save_snapshot(self.trace, self._state)
        except (EventsrcError, OSError) as exc:  # a snapshot is a cache: none is no loss
            log.warning("engine: no snapshot at stop: %s", exc)
        try:
            self.trace.close()
        except (EventsrcError, OSError) as exc:
            # Everything was made durable before (the writer's last act); what failed now
            # (the body's committer, say) reopening the trace recovers.
            message = f"the trace {self.trace.path} closed with an error: {exc}"
            self._alert_of("trace", message, None)

    def _abandon(self, outage: Outage) -> None:
        """Stopping while the trace still refuses: what is held is not recorded."""
        for item in outage.held:
            if not item.done.done():
                item.done.set_exception(EngineClosed(f"the engine stopped: {outage.reason}"))
        self._alert_of(
            "trace",
            f"stopped while {outage.reason}: {len(outage.held)} held events and "
            f"{outage.dropped_total()} dropped observations are not recorded, and the end of "
            "the run is not recorded (the next start syncs with the venue)",
            None,
        )

    # -- the writer: append, fold, wake -------------------------------------------------------

    @property
    def state(self) -> State:
        """The fold of every event recorded so far."""
        return self._state

    @property
    def failure(self) -> BaseException | None:
        """What the trace raised, while it is not taking events (None once it records again;
        see the module docstring)."""
        return None if self._outage is None else self._outage.error

    @property
    def degraded(self) -> str | None:
        """Why the engine places no order now, if it does not because of its trace: the trace
        cannot be written (the errno's text and its path), or the sync repairing what an
        outage dropped has not completed yet. None when orders are accepted (unless
        ``halted``)."""
        if self._outage is not None:
            return self._outage.stuck or self._outage.reason
        return self._repairing

    @property
    def halted(self) -> str | None:
        """Why the engine refuses new orders, if it was halted."""
        return self._halted

    async def record(self, event: Event) -> Event:
        """Append ``event``, fold it, and return it as recorded (with its seq and ts). The
        engine's one way in: watchers, commands and strategies all come through here. While
        the trace is not taking events it waits until the event is recorded (EngineClosed if
        the engine stops first); an event that cannot be encoded raises EventNotSerializable
        (or UnknownEventKind), and nothing is recorded."""
        return await self._enqueue(event, None)

    def _enqueue(self, event: Event, watcher: str | None) -> asyncio.Future[Event]:
        if not self._running or self._writer is None:
            raise EngineClosed("the engine is not running")
        if isinstance(event, BalanceObserved) and event.source == "fetch_balance":
            event = self._complete(event)
        done: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(Pending(event, done, watcher))
        return done

    def _complete(self, event: BalanceObserved) -> BalanceObserved:
        """A whole balance fetched (not a stream's update of what changed): a currency the
        strategy trades that it does not list is held at zero (venues leave zero balances
        out), so no cash is shown that the venue says is not there. Spot: every currency of
        the universe; margin: the settlement currencies. The raw payload stays as sent.
        One that lists no currency at all is left as it is: that is what a venue adapter
        makes of a body it could not read (ccxt's parser, of ``{}`` or a list), and zeros
        for every traded currency would be a guess."""
        if not event.balances:
            return event
        listed = {b.currency for b in event.balances}
        missing = sorted(self._currencies() - listed)
        if not missing:
            return event
        zero = Decimal(0)
        added = tuple(Balance(c, total=zero, free=zero, used=zero) for c in missing)
        return attrs.evolve(event, balances=(*event.balances, *added))

    def _currencies(self) -> set[str]:
        found = {self.main_currency}
        for symbol in self.universe:
            market = self._markets.get(symbol)
            if market is None:
                continue
            if market.contract:
                found.add(market.settle or self.main_currency)
            elif not self.margin:
                found.update(c for c in (market.base, market.quote) if c)
        return found

    async def put(self, event: Event) -> None:
        """``Feed.put``: how watchers hand over what they observe. Returns once the event is
        recorded, or, while the trace is not taking events, held (or dropped: see the module
        docstring)."""
        await self._enqueue(event, event.source or "engine")

    def feed(self, watcher: str) -> Feed:
        """The feed the engine gives the watcher named ``watcher``: ``put`` as above, its
        observations counted under that name if an outage must drop some."""
        return _WatcherFeed(self, watcher)

    async def _write_loop(self) -> None:
        """The one writer: append, fold, wake; through an outage, hold and retry."""
        while True:
            if self._outage is not None:
                if not await self._ride_out(self._outage):
                    return  # stopping
                continue
            item = await self._inbox.get()
            if item.event is _STOP:
                self._finish()
                return
            self._write(item)

    def _write(self, item: Pending) -> bool:
        """Append one event and fold it; False if the trace failed (the engine is in an
        outage then, and ``item`` is held first)."""
        event, done = item.event, item.done
        if self._moved and type(event.cause) is int and event.cause in self._moved:
            event = attrs.evolve(event, cause=self._moved[event.cause])
        try:
            seq = self.trace.append(event)
            recorded = self.trace[seq]
        except (EventNotSerializable, UnknownEventKind) as exc:
            # The event is at fault, not the trace: nothing was written; its producer is told.
            if not done.done():
                done.set_exception(exc)
            return True
        except BaseException as exc:
            self._suspend(exc, item)
            return False
        self._took(item, recorded)
        return True

    def _took(self, item: Pending, recorded: Event) -> None:
        if item.moved_from is None:
            self._fold(recorded, item.done)
            return
        # Appended again after an outage lost it: folded (and told of) before, under its old
        # seq; now only the state takes it, under the new one.
        assert recorded.seq is not None
        self._moved[item.moved_from] = recorded.seq
        self._state = reduce(self._state, recorded)
        if not item.done.done():
            item.done.set_result(recorded)
        self._folded.set()
        self._folded = asyncio.Event()

    def _fold(self, recorded: Event, done: asyncio.Future[Event]) -> None:
        """Fold an event as recorded, alert on what it shows, wake whoever waits for it."""
        before = self._state
        self._state = after = reduce(before, recorded)
        self._since_checkpoint += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("engine: %s", self._codec.to_builtins(recorded))
        if after.anomalies is not before.anomalies:
            for anomaly_seq in sorted(set(after.anomalies.keys()) - set(before.anomalies.keys())):
                anomaly = after.anomalies[anomaly_seq]
                self._alert_of("anomaly", f"{anomaly.kind}: {anomaly.reason}", recorded)
        if isinstance(recorded, WatcherError) and recorded.error == "Stalled":
            self._alert_of("watcher", f"{recorded.watcher}: {recorded.message}", recorded)
        if not done.done():
            done.set_result(recorded)
        self._folded.set()
        self._folded = asyncio.Event()
        self._tell_strategy(recorded)
        if self._since_checkpoint >= self._checkpoint_every:
            self._since_checkpoint = 0
            self._inbox.put_nowait(Pending(checkpoint(after, source="engine"), _unawaited()))

    def _finish(self) -> None:
        """The writer's last act: make everything recorded durable; if the trace fails, one
        more attempt to reopen it and record what is held."""
        for _attempt in range(2):
            if self._outage is not None and not self._resume(self._outage):
                return
            try:
                self.trace.flush()
                return
            except Exception as exc:
                self._suspend(exc, None)

    # -- outages: the trace is not taking events ----------------------------------------------

    def _suspend(self, exc: BaseException, item: Pending | None) -> None:
        """The trace failed: close it, keep what it took that may not be on disk, hold
        ``item`` first, refuse orders, alert."""
        failed = self.trace
        unsure = read_unsure(failed)
        with contextlib.suppress(EventsrcError, OSError):
            failed.close()
        code, what = describe(exc)
        outage = self._outage
        if outage is None:
            now = self.clock.now_ns()
            outage = Outage(exc, str(failed.path), what, code, now, unsure)
            self._outage = outage
            self._outages += 1
            log.error("engine: %s (%r); recording is suspended", outage.reason, exc)
            self._alert_of(
                "trace",
                f"recording suspended: {outage.reason} ({code}); new orders are refused, the "
                f"watchers go on, reopening is tried every {self._disk_retry:g} s",
                None,
            )
        else:  # it failed again while catching up
            outage.unsure = unsure
            self._still(outage, exc)
        if item is not None:
            outage.held.appendleft(item)
            if item.watcher is not None and not item.done.done():
                item.done.set_result(item.event)  # its watcher goes on

    def _still(self, outage: Outage, exc: BaseException) -> None:
        """Another attempt failed: said already, unless for another reason."""
        code, what = describe(exc)
        log.info("engine: the trace %s still cannot be written: %r", outage.path, exc)
        if what != outage.what:
            outage.error, outage.what, outage.code = exc, what, code
            self._alert_of("trace", f"recording still suspended: {outage.reason} ({code})", None)

    def _hold(self, outage: Outage, item: Pending) -> None:
        dropping = not outage.dropped
        if not outage.hold(item, self._backlog, self.clock.now_ns()) and dropping:
            self._alert_of(
                "trace",
                f"{self._backlog} events are held while {outage.reason}: the watchers' "
                "observations are dropped from now on (a sync repairs them once the trace "
                "records again)",
                None,
            )
        if item.watcher is not None and not item.done.done():
            item.done.set_result(item.event)  # its watcher goes on

    async def _ride_out(self, outage: Outage) -> bool:
        """Hold what comes in and try to reopen the trace every ``disk_retry`` seconds of the
        clock until it records again (True) or the engine stops (False)."""
        sleeper: asyncio.Future[None] | None = None
        getter: asyncio.Future[Pending] | None = None
        try:
            while True:
                while not self._inbox.empty():
                    item = self._inbox.get_nowait()
                    if item.event is _STOP:
                        self._finish()
                        return False
                    self._hold(outage, item)
                if outage.stuck is None and sleeper is None:
                    sleeper = asyncio.ensure_future(self.clock.sleep(self._disk_retry))
                getter = asyncio.ensure_future(self._inbox.get())
                waiting: set[asyncio.Future[Any]] = {getter}
                if sleeper is not None:
                    waiting.add(sleeper)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    item = getter.result()
                    if item.event is _STOP:
                        self._finish()
                        return False
                    self._hold(outage, item)
                else:
                    getter.cancel()  # (an item it was about to take stays in the queue)
                getter = None
                if sleeper is not None and sleeper.done():
                    sleeper = None
                    if self._resume(outage):
                        return True
        finally:
            for task in (getter, sleeper):
                if task is not None:
                    task.cancel()

    def _resume(self, outage: Outage) -> bool:
        """Reopen the trace, take it over, record the outage and everything held, in order;
        whether the engine records again."""
        if outage.stuck is not None:
            return False
        try:
            trace = self.trace.reopen()
        except Exception as exc:
            log.info("engine: the trace cannot be reopened yet: %s", exc)
            self._still(outage, exc)
            return False
        try:
            waiting = [item.event for item in outage.held]
            settled = reconcile(trace, outage.unsure, self._state.seq, waiting)
            # Folded, then lost by the disk: the state is folded afresh from what the trace
            # holds (the state keys some things by seq: they must carry the new seqs), and
            # they are appended again, first.
            refolded = replay_from_trace(trace) if settled.lost else None
        except Exception as exc:
            with contextlib.suppress(EventsrcError, OSError):
                trace.close()
            if not isinstance(exc, Diverged):
                log.info("engine: the reopened trace cannot be read yet: %s", exc)
                return False
            outage.stuck = f"{outage.reason}, and it cannot be taken back: {exc}"
            log.error("engine: %s", outage.stuck)
            self._alert_of("trace", f"recording cannot resume: {exc}", None)
            return False
        self.trace = trace
        for recorded in settled.landed:  # handed to the failed trace, never folded
            self._took(outage.held.popleft(), recorded)
        if refolded is not None:
            self._state = refolded
            outage.lost += len(settled.lost)
            log.warning("engine: %d events the disk lost are appended again", len(settled.lost))
            # Checkpoints made meanwhile name states at seqs that have moved: new ones follow.
            kept = [item for item in outage.held if not isinstance(item.event, Checkpoint)]
            outage.held.clear()
            outage.held.extend(kept)
        else:
            for recorded in settled.recovered:
                self._fold(recorded, _unawaited())
        again = [
            Pending(attrs.evolve(event, seq=None, ts=None), _unawaited(), moved_from=event.seq)
            for event in settled.lost
            if not isinstance(event, Checkpoint)  # (they name the state at old seqs)
        ]
        outage.held.extendleft(reversed(again))
        # The outage itself, told after what it lost and before what it held; a note of an
        # earlier attempt that failed is replaced by this one (told anew, with the counts).
        held = outage.held
        summary = outage.summary(self.clock.now_ns())
        if outage.note is None or not outage.note.done.done():  # (else it is recorded)
            if outage.note is not None:
                for i, item in enumerate(held):
                    if item is outage.note:
                        del held[i]
                        break
            note = EngineError("trace", outage.code, summary)
            lead = next((i for i, item in enumerate(held) if item.moved_from is None), len(held))
            outage.note = Pending(note, _unawaited())
            held.insert(lead, outage.note)
        # Observations were dropped: a gap marker per watcher (then a sync) repairs that.
        for watcher, (first_ns, _count) in sorted(outage.dropped.items()):
            gap = WatcherReconnected(watcher, gap_start_ts=first_ns, source="engine")
            held.append(Pending(gap, _unawaited()))
        outage.dropped.clear()
        if not self._catch_up(outage):
            return False
        self._outage = None
        log.warning("engine: recording resumed: %s", summary)
        self._alert_of("trace", f"recording resumed: {summary}", None)
        if outage.repair:
            self._repairing = f"syncing with the venue after {outage.reason}"
            self._spawn(self._repair(), "repair")
        return True

    def _catch_up(self, outage: Outage) -> bool:
        """Append everything held, make it durable, and only then fold it (so an attempt
        that fails leaves nothing folded that the disk may lose: what it kept of it, the next
        attempt finds). Whether it all went."""
        trace = self.trace
        appended: list[tuple[Pending, int]] = []
        refused: list[Pending] = []
        try:
            for item in outage.held:
                event = item.event
                if self._moved and type(event.cause) is int and event.cause in self._moved:
                    event = attrs.evolve(event, cause=self._moved[event.cause])
                try:
                    seq = trace.append(event)
                except (EventNotSerializable, UnknownEventKind) as exc:
                    if not item.done.done():
                        item.done.set_exception(exc)  # (its producer is told; nothing written)
                    refused.append(item)
                    continue
                appended.append((item, seq))
                if item.moved_from is not None:  # (a later one may cite it)
                    self._moved[item.moved_from] = seq
            trace.flush()
            recorded = [trace[seq] for _, seq in appended]
        except BaseException as exc:
            for item in refused:
                outage.held.remove(item)
            self._suspend(exc, None)
            return False
        outage.held.clear()
        for (item, _), event in zip(appended, recorded, strict=True):
            self._took(item, event)
        return True

    async def _repair(self) -> None:
        try:
            await self._sync("recording resumed")
        finally:
            self._repairing = None

    def _tell_strategy(self, event: Event) -> None:
        on_event = getattr(self.strategy, "on_event", None)
        if on_event is None or isinstance(event, EngineError):
            return
        try:
            on_event(self, event)
        except Exception as exc:
            log.exception("engine: the strategy failed on seq %s", event.seq)
            self._inbox.put_nowait(
                Pending(
                    EngineError("strategy", type(exc).__name__, str(exc), cause=event.seq),
                    _unawaited(),
                )
            )

    def _alert_of(self, what: str, message: str, event: Event | None) -> None:
        log.warning("engine alert: %s: %s", what, message)
        if self._alert is not None:
            try:
                self._alert(what, message, event)
            except Exception:
                log.exception("engine: the alert hook failed")

    # -- tasks --------------------------------------------------------------------------------

    def spawn(self, work: Awaitable[Any], name: str = "task") -> asyncio.Task[Any]:
        """Run ``work`` (a command, say) as a task the engine owns: cancelled when it stops, and
        its failure recorded."""
        return self._spawn(self._guarded(work, name), name)

    def _spawn(self, work: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks[task] = None
        task.add_done_callback(lambda done: self._tasks.pop(done, None))
        return task

    async def _guarded(self, work: Awaitable[Any], name: str) -> Any:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except EngineClosed:
            return None
        except Exception as exc:
            log.exception("engine: %s failed", name)
            await self.record(EngineError(name, type(exc).__name__, str(exc), source="engine"))
            return None

    async def _supervise_strategy(self, run: Callable[[Engine], Awaitable[Any]]) -> None:
        try:
            await run(self)
        except asyncio.CancelledError:
            raise
        except EngineClosed:
            pass
        except Exception as exc:
            log.exception("engine: the strategy's run failed")
            await self.record(EngineError("strategy", type(exc).__name__, str(exc)))

    # -- waiting ------------------------------------------------------------------------------

    async def _wait_for(self, done: Callable[[], bool], seconds: float) -> bool:
        """Wait until ``done()`` (checked after every fold) or ``seconds`` of the clock's time
        have passed; whether it is done."""
        deadline = self.clock.now_ns() + round(seconds * 1_000_000_000)
        while not done():
            left = (deadline - self.clock.now_ns()) / 1_000_000_000
            if left <= 0:
                return False
            folded = self._folded
            waiter = asyncio.ensure_future(folded.wait())
            sleeper = asyncio.ensure_future(self.clock.sleep(min(left, self._wait_step)))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()
        return True

    # -- calling the venue --------------------------------------------------------------------

    async def _call(self, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """A venue call retried on Unreachable with capped, jittered backoff; the last
        Unreachable is raised. For calls that change nothing (fetches) or are idempotent.
        Each attempt retried is recorded (an EngineError at ``venue:<call>``): an answer the
        venue adapter could not take is never only in a log, even when a retry works."""
        attempt = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except Unreachable as exc:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise
                delay = self._retry.delay(attempt, exc.retry_after)
                where = f"venue:{getattr(call, '__name__', 'call')}"
                message = f"attempt {attempt}, retried in {delay:.3g} s: {exc.message}"
                await self.record(EngineError(where, exc.error, message, source="engine"))
                await self.clock.sleep(delay)

    async def _record_all(self, events: Iterable[Event], cause: int | str | None = None) -> None:
        for event in events:
            if cause is not None and event.cause is None:
                event = attrs.evolve(event, cause=cause)
            await self.record(event)

    async def _fetch(
        self,
        what: str,
        call: Callable[..., Awaitable[list[Event]]],
        *args: Any,
        news_only: bool = False,
    ) -> bool:
        """Fetch and record; a failure is recorded, not raised. Whether it answered.
        ``news_only``: record only what changes the state (a sync's look back over closed
        orders and trades would otherwise record again everything the trace holds)."""
        try:
            events = await self._call(call, *args)
        except VenueError as exc:
            await self.record(EngineError(what, exc.error, exc.message, source="engine"))
            return False
        if news_only:
            events = [e for e in events if _changes(self._state, reduce(self._state, e))]
        await self._record_all(events)
        return True

    # -- commands -----------------------------------------------------------------------------

    @staticmethod
    def ours(order: Order) -> bool:
        """Whether an engine placed ``order`` (its client order id is one an engine issues):
        a strategy must leave the orders someone else placed on the account alone."""
        return (
            order.client_order_id is not None
            and _ISSUED.fullmatch(order.client_order_id) is not None
        )

    def _new_cid(self) -> str:
        return f"{self._cid_prefix}-{next(self._cids)}"

    async def create_order(
        self,
        symbol: str,
        side: str,
        amount: Decimal,
        price: Decimal | None = None,
        *,
        type: str = "limit",
        waitfor: float = 5.0,
        synced: bool = True,
        time_in_force: str | None = None,
        post_only: bool = False,
        reduce_only: bool = False,
        client_order_id: str | None = None,
    ) -> Fill | Missing | None:
        """Place an order (see the module docstring): a Fill of it folded within ``waitfor``
        seconds, MISSING if it is created but not filled yet, None if it failed (the reason
        is recorded) or if the trace is not taking events (nothing is recorded or sent then:
        ``degraded`` says why). ``synced``: if nothing was observed in time, fetch the order
        and its trades once before answering."""
        market = self._arguments(symbol, side, amount, price, type)
        if self._refusing():
            return None
        if client_order_id is not None and self._state.order(client_order_id) is not None:
            known = await self._known_intent(symbol, client_order_id)
            if known is not _SEND:
                return known
        outages = self._outages
        cid = client_order_id or self._new_cid()
        sent = market.amount_to_precision(amount)
        if price is not None:
            price = market.price_to_precision(price)
        request = OrderRequested(
            cid,
            side,
            type,
            sent if sent > 0 else amount,  # what is asked, if nothing of it can be sent
            price,
            time_in_force,
            post_only,
            reduce_only,
            asset=symbol,
            source="engine",
        )
        problem = self._check(attrs.evolve(request, amount=sent), market)
        requested = await self.record(request)
        if problem is None:
            problem = self._since(outages)
        if problem is not None:
            if problem.startswith("risk: "):
                await self.record(
                    Decision(
                        "risk_refused",
                        {"client_order_id": cid, "reason": problem},
                        asset=symbol,
                        source="engine",
                        cause=requested.seq,
                    )
                )
            await self.record(
                LocalCheckFailed(problem, cid, asset=symbol, cause=requested.seq, source="engine")
            )
            return None
        self._watch_orders_of(symbol)
        assert requested.seq is not None
        if not await self._place(request, requested.seq, outages):
            return None
        order_filled = self._fill_of(cid)
        if not await self._wait_for(lambda: order_filled() is not None, waitfor) and synced:
            await self._sync_order(symbol, cid)
        fill = order_filled()
        if fill is not None:
            return fill
        order = self._state.order(cid)
        if order is None or order.status in TERMINAL:
            return None
        return MISSING

    async def _known_intent(self, symbol: str, cid: str) -> Fill | Missing | _Send | None:
        """``create_order`` with a client order id the trace knows (an intent retried after
        a restart, say) never places a second order: a request the venue never answered is
        looked up first, and sent again (``_SEND``) only if the venue has no order under
        it; else the order is answered as a create would (its first fill, MISSING while
        live, None once over or when the venue cannot say), the decision recorded."""
        order = self._state.order(cid)
        assert order is not None
        if order.order_id is None and order.status in _UNSETTLED:
            found = await self._look_up(symbol, cid)
            request = self._state.order(cid)
            if found is False and request is not None and request.order_id is None:
                return _SEND
        order = self._state.order(cid)
        assert order is not None
        status = "unknown" if order.order_id is None else order.status
        await self.record(
            Decision(
                "known_client_order_id",
                {"client_order_id": cid, "status": status},
                asset=symbol,
                source="engine",
            )
        )
        fill = self._fill_of(cid)()
        if fill is not None:
            return fill
        if order.order_id is None or order.status in TERMINAL:
            return None
        return MISSING

    def _fill_of(self, cid: str) -> Callable[[], Fill | None]:
        def first_fill() -> Fill | None:
            order = self._state.order(cid)
            if order is None or not order.fills:
                return None
            return next((f for f in order.fills if f.amount), order.fills[0])

        return first_fill

    def _refusing(self) -> bool:
        """Whether the trace's state refuses orders and cancels now (counted if so)."""
        if self.degraded is None:
            return False
        if self._outage is not None:
            self._outage.refused += 1
        return True

    def _since(self, outages: int) -> str | None:
        """Why an order decided before the latest outage (or during one) must not be sent."""
        if self._outages == outages and self.degraded is None:
            return None
        why = self.degraded or "the trace stopped taking events meanwhile"
        return f"not sent: recording was suspended after it was asked for ({why})"

    async def _place(self, request: OrderRequested, seq: int, outages: int) -> bool:
        """Send a create, never twice: after no answer, look the order up by its client id
        and adopt it; send again only if the venue says it has none (and no outage of the
        trace came meanwhile). Whether the venue has it."""
        symbol, cid = request.asset, request.client_order_id
        assert symbol is not None
        attempt = 0
        no_answer = False
        while True:
            try:
                answer = await self.venue.create_order(request)
            except Refused as exc:
                await self.record(
                    OrderRejected(
                        client_order_id=cid,
                        error=exc.error,
                        message=exc.message,
                        asset=symbol,
                        cause=seq,
                        source="create_order",
                    )
                )
                if exc.error == DUPLICATE_ORDER or no_answer:
                    return await self._adopt(symbol, cid)  # an earlier attempt may have placed it
                return False
            except Unreachable as exc:
                no_answer = True
                attempt += 1
                await self.record(
                    OrderRequestFailed(
                        client_order_id=cid,
                        error=exc.error,
                        message=exc.message,
                        asset=symbol,
                        cause=seq,
                        source="create_order",
                    )
                )
                await self.clock.sleep(self._retry.delay(attempt, exc.retry_after))
                found = await self._look_up(symbol, cid)
                if found is True:
                    return True
                if found is None or attempt >= self._retry.attempts:
                    # The venue cannot say: the order may exist; start-up sync settles it.
                    self._alert_of("order", f"{cid}: no answer from the venue", None)
                    return False
                retried = await self.record(attrs.evolve(request, source="engine:retry"))
                problem = self._since(outages)
                if problem is not None:
                    await self.record(
                        LocalCheckFailed(
                            problem, cid, asset=symbol, cause=retried.seq, source="engine"
                        )
                    )
                    return False
                continue
            await self._record_all(answer, cause=seq)
            return True

    async def _look_up(self, symbol: str, cid: str) -> bool | None:
        """Ask the venue for an order by client id: True (found, recorded), False (it has
        none), None (it did not answer)."""
        try:
            events = await self._call(self.venue.fetch_order, symbol, None, cid)
        except NotFound:
            return False
        except VenueError:
            return None
        await self._record_all(events)
        return True

    async def _adopt(self, symbol: str, cid: str) -> bool:
        return await self._look_up(symbol, cid) is True

    async def _sync_order(self, symbol: str, key: str) -> None:
        """Fetch an order (by id or client id) and its trades once, and record them."""
        order = self._state.order(key)
        order_id = order.order_id if order is not None else None
        try:
            if order_id is not None:
                events = await self._call(self.venue.fetch_order, symbol, order_id, None)
            else:
                events = await self._call(self.venue.fetch_order, symbol, None, key)
        except VenueError as exc:
            await self.record(EngineError("sync_order", exc.error, exc.message, asset=symbol))
            return
        await self._record_all(events)
        order = self._state.order(key)
        if order is not None and order.order_id is not None and self.venue.can_fetch_trades():
            await self._fetch("sync_order", self.venue.fetch_order_trades, symbol, order.order_id)

    async def cancel_order(self, order_id: str, symbol: str, *, waitfor: float = 5.0) -> bool:
        """Cancel an order; whether it is over (canceled, or filled meanwhile) when this
        returns. Retried on no answer (a cancel is idempotent). False at once, with nothing
        recorded or sent, while the trace is not taking events (``degraded`` says why)."""
        if self._refusing():
            return False
        order = self._state.orders.get(order_id)
        requested = await self.record(
            CancelRequested(
                order_id=order_id,
                client_order_id=order.client_order_id if order is not None else None,
                asset=symbol,
                source="engine",
            )
        )
        try:
            events = await self._call(self.venue.cancel_order, symbol, order_id)
        except NotFound:
            events = []
        except VenueError as exc:
            await self.record(
                EngineError(
                    "cancel_order", exc.error, exc.message, asset=symbol, cause=requested.seq
                )
            )
            events = []
        await self._record_all(events, cause=requested.seq)

        def over() -> bool:
            found = self._state.orders.get(order_id)
            return found is not None and found.status in TERMINAL

        if not await self._wait_for(over, waitfor):
            await self._sync_order(symbol, order_id)
        return over()

    async def cancel_all(self, symbol: str | None = None) -> int:
        """Cancel every open order (of ``symbol``); how many are over afterwards."""
        live = [
            o
            for _, o in sorted(self._state.orders.items())
            if o.status in _LIVE and (symbol is None or o.symbol == symbol)
        ]
        done = await asyncio.gather(
            *(self.cancel_order(o.order_id, o.symbol) for o in live if o.order_id is not None)
        )
        return sum(done)

    async def close_position(self, symbol: str, *, waitfor: float = 5.0) -> Fill | Missing | None:
        """Close the strategy's position in a contract market with a reduce-only market
        order; None if there is none (or it failed)."""
        for side in ("long", "short"):
            position = self._state.positions.get((symbol, side))
            if position is not None and position.contracts:
                return await self.create_order(
                    symbol,
                    "sell" if side == "long" else "buy",
                    position.contracts,
                    type="market",
                    reduce_only=True,
                    waitfor=waitfor,
                )
        return None

    async def set_leverage(self, symbol: str, leverage: Decimal) -> bool:
        """Set a contract market's leverage; the decision and any failure are recorded. False
        at once while the trace is not taking events."""
        if self._refusing():
            return False
        await self.record(
            Decision("set_leverage", {"leverage": str(leverage)}, asset=symbol, source="engine")
        )
        try:
            await self._call(self.venue.set_leverage, symbol, leverage)
        except VenueError as exc:
            await self.record(EngineError("set_leverage", exc.error, exc.message, asset=symbol))
            return False
        return True

    async def fetch_balance(self) -> State:
        """Fetch the balance and record it; the state after."""
        await self._fetch("fetch_balance", self.venue.fetch_balance)
        return self._state

    async def fetch_positions(self) -> State:
        await self._fetch("fetch_positions", self.venue.fetch_positions, self._contracts())
        return self._state

    async def fetch_open_orders(self, symbol: str | None = None) -> State:
        await self._fetch("fetch_open_orders", self.venue.fetch_open_orders, symbol)
        return self._state

    async def sync(self) -> State:
        """Record what the venue says now (orders, trades, positions, balance), as at start-up;
        the state after."""
        await self._sync("requested")
        return self._state

    async def halt(self, reason: str, flatten: bool = False) -> None:
        """Refuse new orders from now on, cancel every open order and, with ``flatten``,
        close every position; all of it recorded."""
        self._halted = reason
        await self.record(Decision("halt", {"reason": reason, "flatten": flatten}, source="engine"))
        self._alert_of("halt", reason, None)
        await self.cancel_all()
        if flatten and self._contracts():
            await self.fetch_positions()  # what is held now, not what was last reported
            for symbol in sorted({symbol for symbol, _side in self._state.positions}):
                await self.close_position(symbol)
            await self.fetch_positions()

    # -- local checks -------------------------------------------------------------------------

    def _arguments(
        self, symbol: str, side: str, amount: Decimal, price: Decimal | None, type: str
    ) -> Market:
        """Refuse arguments no order can have (a bug in the caller, not a market condition):
        ValueError, and nothing recorded. The market traded."""
        if symbol not in self.universe:
            raise ValueError(
                f"{symbol!r} is not in the strategy's universe ({', '.join(self.universe)})"
            )
        market = self._markets.get(symbol)
        if market is None:
            raise ValueError(f"the venue {self.venue.name} has no market {symbol!r}")
        if side not in ("buy", "sell"):
            raise ValueError(f"side is {side!r}: 'buy' or 'sell'")
        if type not in ("limit", "market"):
            raise ValueError(f"order type is {type!r}: 'limit' or 'market'")
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise ValueError(f"amount is {amount!r}: a Decimal > 0")
        if price is not None and (
            not isinstance(price, Decimal) or not price.is_finite() or price <= 0
        ):
            raise ValueError(f"price is {price!r}: a Decimal > 0, or None")
        if type == "limit" and price is None:
            raise ValueError("a limit order needs a price")
        return market

    def _check(self, request: OrderRequested, market: Market) -> str | None:
        """Why the venue would refuse ``request`` (or a risk limit does), if it would."""
        symbol = request.asset or ""
        amount, price = request.amount, request.price
        if self._halted is not None and not request.reduce_only:
            return f"halted: {self._halted}"  # closing what is held is still allowed
        if amount <= 0:
            return f"the amount rounds to nothing at the market's step {market.amount_step}"
        if market.contract and not self.margin:
            return f"{symbol} is a contract market and the strategy trades spot"
        if market.min_amount is not None and amount < market.min_amount:
            return f"amount {amount} is below the market's minimum {market.min_amount}"
        reference = price if price is not None else self._state.last_price.get(symbol)
        cost = EXACT.multiply(amount, reference) if reference is not None else None
        if market.min_cost is not None and cost is not None and cost < market.min_cost:
            return f"cost {cost} is below the market's minimum {market.min_cost}"
        if not request.reduce_only:
            short_of = self._short_of(request, market, cost)
            if short_of is not None:
                return short_of
        return self._risk(request, market, cost)

    def _short_of(
        self, request: OrderRequested, market: Market, cost: Decimal | None
    ) -> str | None:
        """Not enough free cash for the order, if so."""
        cash = self._state.cash
        if market.contract:
            currency = market.settle or self.main_currency
            needed = cost  # leverage 1 unless the venue's position says more
            for side in ("long", "short"):
                position = self._state.positions.get((request.asset or "", side))
                if position is not None and position.leverage and needed is not None:
                    needed = EXACT.divide(needed, position.leverage)
        elif request.side == "buy":
            currency, needed = market.quote, cost
        else:
            currency, needed = market.base, request.amount
        if needed is None:
            return None  # a market buy with no price known yet: the venue will say
        free = cash[currency].free if currency in cash else ZERO
        if free < needed:
            return f"not enough {currency}: {needed} needed, {free} free"
        return None

    def _risk(self, request: OrderRequested, market: Market, cost: Decimal | None) -> str | None:
        limits = self.limits
        if (
            limits.max_order_notional is not None
            and cost is not None
            and cost > limits.max_order_notional
        ):
            return f"risk: notional {cost} over the limit {limits.max_order_notional}"
        if limits.max_open_orders is not None:
            live = sum(1 for o in self._state.orders.values() if o.status in _LIVE)
            live += sum(1 for o in self._state.requests.values() if o.status == "requested")
            if live >= limits.max_open_orders:
                return f"risk: {live} open orders, the limit is {limits.max_open_orders}"
        if limits.max_position is not None:
            held = self._held(request.asset or "", market)
            signed = request.amount if request.side == "buy" else -request.amount
            after = abs(EXACT.add(held, signed))
            if after > limits.max_position and after > abs(held):
                return f"risk: position {after} over the limit {limits.max_position}"
        if limits.max_daily_loss is not None:
            loss = self._daily_loss()
            if loss is not None and loss >= limits.max_daily_loss:
                return (
                    f"risk: lost {loss} {self.main_currency} today, the limit is "
                    f"{limits.max_daily_loss}"
                )
        return None

    def _held(self, symbol: str, market: Market) -> Decimal:
        if market.contract:
            long = self._state.positions.get((symbol, "long"))
            short = self._state.positions.get((symbol, "short"))
            return EXACT.subtract(
                long.contracts if long else ZERO, short.contracts if short else ZERO
            )
        base = market.base
        return self._state.cash[base].total if base in self._state.cash else ZERO

    def _equity(self) -> Decimal | None:
        """Cash valued in the main currency at the last prices (None if one is unknown)."""
        total = ZERO
        for currency, cash in self._state.cash.items():
            if not cash.total:
                continue
            if currency == self.main_currency:
                total = EXACT.add(total, cash.total)
                continue
            price = self._state.last_price.get(f"{currency}/{self.main_currency}")
            if price is None:
                return None
            total = EXACT.add(total, EXACT.multiply(cash.total, price))
        return total

    def _daily_loss(self) -> Decimal | None:
        equity = self._equity()
        if equity is None:
            return None
        day = self.clock.now_ns() // 86_400_000_000_000
        if self._day is None or self._day[0] != day:
            self._day = (day, equity)
        return EXACT.subtract(self._day[1], equity)

    # -- watchers -----------------------------------------------------------------------------

    def _contracts(self) -> list[str]:
        return [s for s in self.universe if (m := self._markets.get(s)) is not None and m.contract]

    def _start_watchers(self) -> None:
        self._watch(self.venue.watcher("balance"))
        if self.margin and self._contracts():
            self._watch(self.venue.watcher("positions"))
        if self._tickers:
            for symbol in self.universe:
                self._watch(self.venue.watcher("ticker", symbol))
        for order in [*_by_key(self._state.orders), *_by_key(self._state.requests)]:
            if order.status in _LIVE or order.status in _UNSETTLED:
                self._watch_orders_of(order.symbol)
        self._spawn(self._retire_idle_watchers(), "watchers")

    def watch(self, watcher: Watcher) -> None:
        """Run a user's watcher (any event producer, e.g. funding rates), supervised like the
        engine's own."""
        self._watch(watcher)

    def _watch(self, watcher: Watcher) -> None:
        if watcher.name in self._watchers or not self._running:
            return
        self._watchers[watcher.name] = asyncio.ensure_future(self._supervise(watcher))

    def _watch_orders_of(self, symbol: str) -> None:
        if not self._run_watchers:
            return
        self._watched_since[symbol] = self.clock.now_ns()
        self._watch(self.venue.watcher("orders", symbol))
        if self.venue.can_fetch_trades():
            self._watch(self.venue.watcher("trades", symbol))

    async def _supervise(self, watcher: Watcher) -> None:
        """Run a watcher until cancelled; record why it died and restart it."""
        attempt = 0
        feed = self.feed(watcher.name)
        while True:
            try:
                await watcher.run(feed)
                await feed.put(WatcherStopped(watcher.name, "returned", source="engine"))
                return
            except asyncio.CancelledError:
                raise
            except EngineClosed:
                return
            except Exception as exc:
                attempt += 1
                log.warning("engine: watcher %s died: %r", watcher.name, exc)
                self._alert_of("watcher", f"{watcher.name}: {exc!r}", None)
                await feed.put(
                    WatcherError(watcher.name, type(exc).__name__, str(exc), source="engine")
                )
                await self.clock.sleep(self._retry.delay(attempt))

    async def _retire_idle_watchers(self) -> None:
        """Stop a market's order and trade watchers once it has had no open order for the
        idle timeout."""
        while True:
            await self.clock.sleep(max(self._idle_timeout / 4, self._wait_step))
            now = self.clock.now_ns()
            for symbol, since in list(self._watched_since.items()):
                if any(
                    o.symbol == symbol and o.status in _LIVE for o in self._state.orders.values()
                ) or any(
                    o.symbol == symbol and o.status in _UNSETTLED
                    for o in self._state.requests.values()
                ):
                    self._watched_since[symbol] = now
                    continue
                if now - since < self._idle_timeout * 1_000_000_000:
                    continue
                del self._watched_since[symbol]
                for stream in ("orders", "trades"):
                    task = self._watchers.pop(f"{stream}:{symbol}", None)
                    if task is not None:
                        await _end(task, self.clock, self._wait_step)
                        await self.record(
                            WatcherStopped(f"{stream}:{symbol}", "idle", source="engine")
                        )

    # -- start-up sync ------------------------------------------------------------------------

    async def _sync(self, scope: str) -> None:
        """Record what the venue says now (see the module docstring)."""
        await self.record(SyncStarted(scope, source="engine"))
        before = self._state
        venue = self.venue
        listed: set[str] = set()
        since = self.clock.now_ns() // 1_000_000 - round(self._lookback * 1000)
        for symbol in self.universe:
            try:
                open_orders = await self._call(venue.fetch_open_orders, symbol)
            except VenueError as exc:
                await self.record(EngineError("sync", exc.error, exc.message, asset=symbol))
                continue
            await self._record_all(open_orders)
            listed.update(e.order_id for e in open_orders if getattr(e, "order_id", None))
            await self._fetch("sync", venue.fetch_closed_orders, symbol, since, news_only=True)
            if venue.can_fetch_trades():
                await self._fetch("sync", venue.fetch_my_trades, symbol, since, news_only=True)
        for order in _by_key(self._state.orders):
            if order.status in _LIVE and order.order_id not in listed:
                await self._sync_order(order.symbol, order.order_id or "")
        for request in _by_key(self._state.requests):
            if request.status in _UNSETTLED and request.client_order_id:
                await self._look_up(request.symbol, request.client_order_id)
        if self.margin and self._contracts():
            await self._fetch("sync", venue.fetch_positions, self._contracts())
        await self._fetch("sync", venue.fetch_balance)
        differences = _differences(before, self._state)
        await self.record(SyncCompleted(scope, differences, source="engine"))

    @property
    def markets(self) -> dict[str, Market]:
        return dict(self._markets)


_ISSUED = re.compile(r"es[0-9a-f]{6}[0-9a-f]+-[0-9]+")
"""The client order ids engines issue (``_new_cid``)."""


class _WatcherFeed:
    """``Engine.feed``: a watcher's way into the engine, under its name."""

    __slots__ = ("_engine", "_watcher")

    def __init__(self, engine: Engine, watcher: str) -> None:
        self._engine = engine
        self._watcher = watcher

    @property
    def clock(self) -> Clock:
        return self._engine.clock

    async def put(self, event: Event) -> None:
        await self._engine._enqueue(event, self._watcher)


def _unawaited() -> asyncio.Future[Event]:
    """The future of an event the engine queues itself, which nobody awaits: its failure (the
    trace's, recorded and alerted already) is not reported again as never retrieved."""
    done: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    done.add_done_callback(lambda f: f.cancelled() or f.exception())
    return done


def _changes(before: State, after: State) -> bool:
    """Whether folding an event changed more than the seq (an event that changes nothing
    leaves every part of the state the very same object)."""
    return not (
        after.config is before.config
        and after.last_price is before.last_price
        and after.account is before.account
        and after.book is before.book
        and after.health is before.health
    )


def _by_key(orders: Mapping[str, Order]) -> list[Order]:
    """``orders`` in the order of their keys: a persistent map iterates in the order of its
    keys' hashes, which differ from process to process, and the engine must act the same way
    on the same trace whatever the process (a demo run twice must record the same trace)."""
    return [order for _, order in sorted(orders.items())]


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


async def _end(task: asyncio.Task[Any], clock: Clock, step: float) -> None:
    """Cancel ``task`` (unless it is being cancelled) and wait for it to end. A cancellation
    can be lost on its way: aiohttp (under ccxt) turns one that meets its own timeout into a
    TimeoutError and uncancels the task (aio-libs/aiohttp#5979), and a watcher takes that for
    a venue failure and polls on. So every ``step`` seconds of the clock, a task that is still
    running but no longer being cancelled is cancelled again (one that is, is left to finish
    its cleanup). Its cancellation (or failure: a supervised task records its own) is not ours:
    only a cancellation of the caller propagates."""
    if not task.cancelling():
        task.cancel()
    while not task.done():
        sleeper = asyncio.ensure_future(clock.sleep(step))
        try:
            await asyncio.wait({task, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
        if not task.done() and not task.cancelling():
            task.cancel()
    if not task.cancelled():
        task.exception()  # retrieved (asyncio must not report it as never retrieved)


def _differences(before: State, after: State) -> int:
    """How many orders, balances and positions the sync changed."""
    changed = 0
    for key, order in after.orders.items():
        if before.orders.get(key) != order:
            changed += 1
    for currency, cash in after.cash.items():
        if before.cash.get(currency) != cash:
            changed += 1
    for where, position in after.positions.items():
        if before.positions.get(where) != position:
            changed += 1
    changed += len(set(before.positions.keys()) - set(after.positions.keys()))
    return changed


_STOP: Any = EngineError("engine", "stop")
"""Put in the inbox to end the writer (never recorded)."""
