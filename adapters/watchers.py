"""Watchers: the event producers that keep one of a venue's streams (the orders or the trades
of a market, the balance, the positions, a market's ticker) in the trace, streaming where the
venue can and polling where it cannot, and never losing a fill to a dropped stream.

A watcher (``eventsrc.venue.Watcher``) is run by the engine with a ``Feed``; it puts events and
nothing else. Its life, in events:

- ``WatcherStarted(streaming=...)`` first; then a REST snapshot of what happened since
  ``lookback`` seconds before it started (what it was started for may have happened already).
- Streaming (ccxt's ``watch_*``, where ``Venue.can_watch`` says so): every update, de-duplicated.
  It subscribes *before* each REST snapshot, and takes one more snapshot after a new
  subscription's first update, so nothing falls between the snapshot and the stream. A
  snapshot the venue refuses (``Refused``: it will refuse again, e.g. ``NotSupported``) is
  recorded as a ``WatcherError`` and the stream goes on without it; one that gets no answer
  (``Unreachable``) drops the subscription and is tried again after a backoff.
- Polling (``fetch_*``) every ``poll_interval`` seconds otherwise.
- A dropped stream (``Unreachable`` from a watch): ``WatcherError``, a backoff, the gap marker
  ``WatcherReconnected(gap_start_ts)`` (the clock's ns at the last update the stream
  delivered, or at the last REST snapshot since, if later: what came after may be lost, as
  ccxt's streams do not replay), then a REST backfill of the gap and the stream again.
  Orders: the open orders, the orders closed since the gap began, and each order the watcher
  last saw open that is in neither (ccxt lists closed orders by when they were *placed*, so an
  order placed before the gap and filled in it would be in no list). Such an order that the
  venue does not know (``NotFound``) or will not tell of (``Refused``: asking again will not
  help) is a ``WatcherError`` and forgotten; one it cannot fetch for now (``Unreachable``) is a
  ``WatcherError`` and asked for again at the next backfill; neither holds up the rest of the
  backfill. Trades: the account's trades since the gap began (if the venue reports trades).
  Balance, positions, ticker: their current state (a position last seen held that it no longer
  lists is reported flat; in hedge mode, a side of a market whose other side it still lists is
  reported closed). Every "since" reaches ``backfill_margin`` seconds further back, because the
  venue dates by its own clock.
- Backoff after failures in a row: ``d = min(backoff_cap, backoff_base * 2**(n-1))``, then
  a delay drawn from ``[d/2, d]`` by a ``random.Random`` seeded with the watcher's name
  (deterministic), and never less than the venue's ``retry_after``.
- A stalled stream (no update for ``stall_after`` seconds): one REST poll; if it brings
  something the stream did not deliver (an order's progress, a trade, another balance, a
  position's size, a ticker), ``WatcherError(error="Stalled")`` and polling for ``poll_for``
  seconds before subscribing again.
- De-duplication: an update identical to the last one put under its key (order id, trade id,
  set of currencies, position's market, ticker's market) is not put again. Position and ticker
  updates older than the last one put for their market are not put at all (the fold keeps
  whichever position report it folds last); orders, trades and balances go to the fold, which
  keeps the furthest order report and the newest balance whatever the order.
- It never dies of a venue's answer: every ``VenueError`` (a malformed payload is
  ``Unreachable("BadResponse")``) and every other exception from a venue call is recorded as
  a ``WatcherError`` and the loop goes on; a report the fold cannot use becomes an anomaly
  there. The watcher's own cancellation always propagates (that is how the engine stops it),
  as does a failure of ``feed.put`` (the engine's own). A venue call that ends in
  ``asyncio.CancelledError`` while the watcher is not being cancelled (ccxt cancels every
  pending watch of a connection it closes) is a venue failure like any other
  (``Unreachable("CancelledError")``): it must not end the watcher as if the engine had.

Time is the feed's clock only: a watcher waits through ``feed.clock.sleep`` and reads
``feed.clock.now_ns``, so on a virtual clock it never sleeps for real.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, Protocol

import attrs

from eventsrc.clock import Clock
from eventsrc.events import (
    BalanceObserved,
    Event,
    OrderObserved,
    PositionObserved,
    TickerObserved,
    TradeObserved,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    WatcherStopped,
)
from eventsrc.venue import STREAMS, Feed, NotFound, Refused, Unreachable, Venue, VenueError

__all__ = [
    "BalanceWatcher",
    "OrdersWatcher",
    "PositionsWatcher",
    "StreamWatcher",
    "StreamingVenue",
    "TickerWatcher",
    "TradesWatcher",
    "WatcherSettings",
    "watcher_for",
]

_log = logging.getLogger(__name__)
_NS = 1_000_000_000
_TERMINAL = frozenset({"closed", "canceled", "expired", "rejected"})


def _ns(seconds: float) -> int:
    return round(seconds * _NS)


@attrs.frozen
class WatcherSettings:
    """A watcher's knobs, in seconds (see the module docstring)."""

    poll_interval: float = 5.0
    """Between two polls, when the venue cannot stream (or a stalled stream is polled)."""
    stall_after: float | None = 60.0
    """No update for this long: check by REST whether the stream stalled (None: never)."""
    poll_for: float = 300.0
    """How long a stalled stream is replaced by polling before it is tried again."""
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    backfill_margin: float = 60.0
    """How much further back than the gap a backfill reaches (the venue's clock may differ)."""
    lookback: float = 60.0
    """How far back the first snapshot reaches."""
    memory: int = 10_000
    """How many keys (order ids, trade ids, ...) de-duplication remembers."""


class StreamingVenue(Venue, Protocol):
    """A venue whose streams a watcher can read (``adapters.venue.CcxtVenue`` is one)."""

    async def watch(self, stream: str, symbol: str | None = None) -> list[Event]:
        """The next update(s) of ``stream``, as events."""


class _Seen(NamedTuple):
    identity: tuple[Any, ...]
    material: tuple[Any, ...]
    exchange_ts: int | None


class _Dropped(Exception):
    """The stream failed (as opposed to a REST call)."""

    def __init__(self, error: VenueError) -> None:
        super().__init__(str(error))
        self.error = error


_ENVELOPE = frozenset({"seq", "ts", "exchange_ts", "source", "cause", "raw"})
_FIELDS: dict[type[Event], tuple[str, ...]] = {}


def _identity(event: Event) -> tuple[Any, ...]:
    """What an update says, its envelope (times, source, raw payload) left out."""
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(a.name for a in attrs.fields(cls) if a.name not in _ENVELOPE)
    return tuple(getattr(event, name) for name in names)


def _venue_failure(exc: Exception) -> VenueError:
    """What a venue call raised, as a VenueError (a venue should raise nothing else)."""
    if isinstance(exc, VenueError):
        return exc
    return Unreachable(type(exc).__name__, str(exc))


def _being_cancelled() -> bool:
    """Whether the current task is being cancelled (rather than having awaited something
    that ended cancelled on its own)."""
    current = asyncio.current_task()
    return current is None or current.cancelling() > 0


def _cancelled_call() -> VenueError:
    return Unreachable("CancelledError", "the venue's call was cancelled (not by the watcher)")


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` and wait for it to end; our own cancellation still propagates."""
    if task is None:
        return
    if task.done():
        if not task.cancelled():
            task.exception()  # retrieved: asyncio must not report it as never retrieved
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        pass  # it failed while being abandoned: nothing to record


class StreamWatcher:
    """One stream of one venue (see the module docstring); a subclass per stream says how
    to snapshot it by REST and what identifies an update."""

    stream: ClassVar[str] = ""
    per_symbol: ClassVar[bool] = False
    ordered: ClassVar[bool] = False
    """Updates older than the last one put are dropped (the fold keeps the last it folds)."""

    def __init__(
        self,
        venue: StreamingVenue,
        symbol: str | None = None,
        settings: WatcherSettings | None = None,
    ) -> None:
        if self.per_symbol and not symbol:
            raise ValueError(f"a {self.stream} watcher watches one market: give its symbol")
        self.venue = venue
        self.symbol = symbol
        self.settings = settings or WatcherSettings()
        self._name = f"{self.stream}:{symbol}" if symbol else self.stream
        self._jitter = random.Random(self._name)
        self._seen: OrderedDict[Hashable, _Seen] = OrderedDict()

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} of {self.venue.name}>"

    # -- what each stream says --------------------------------------------------------------

    async def snapshot(self, since_ms: int) -> list[Event]:
        """The stream's state by REST, and what it may have missed since ``since_ms``."""
        raise NotImplementedError

    def key(self, event: Event) -> Hashable | None:
        """What an update is an update of (None: put it whatever came before)."""
        return None

    def material(self, event: Event) -> tuple[Any, ...]:
        """The part of an update a stream that works would have delivered (a stall check
        that finds a new one of these has found a stalled stream)."""
        return _identity(event)

    def track(self, event: Event) -> None:
        """Take note of an update put (what a backfill must look at again)."""

    def available(self) -> str | None:
        """Why the venue cannot give this stream at all (None: it can)."""
        return None

    # -- the loop ---------------------------------------------------------------------------

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """The delay after ``failures`` failures in a row (see the module docstring)."""
        s = self.settings
        ceiling = min(s.backoff_cap, s.backoff_base * 2.0 ** min(max(failures, 1) - 1, 60))
        delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        return max(delay, retry_after or 0.0)

    async def run(self, feed: Feed) -> None:
        clock = feed.clock
        streaming = self.venue.can_watch(self.stream)
        await feed.put(WatcherStarted(self._name, streaming=streaming, source=self._name))
        unavailable = self.available()
        if unavailable is not None:
            await feed.put(WatcherStopped(self._name, reason=unavailable, source=self._name))
            await asyncio.Event().wait()  # nothing to watch: wait to be cancelled
        covered = clock.now_ns() - _ns(self.settings.lookback)
        if streaming:
            await self._stream(feed, covered)
        else:
            await self._poll(feed, covered, until_ns=None)

    async def _error(self, feed: Feed, error: VenueError) -> None:
        _log.warning("watcher %s: %s", self._name, error)
        await feed.put(WatcherError(self._name, error.error, error.message, source=self._name))

    async def _put_new(self, feed: Feed, events: Sequence[Event]) -> int:
        """Put the updates not put already; how many were news (``material``)."""
        if self.ordered:
            events = sorted(events, key=lambda e: (e.exchange_ts is not None, e.exchange_ts or 0))
        news = 0
        for event in events:
            key = self.key(event)
            if key is not None:
                seen = self._seen.get(key)
                identity = _identity(event)
                if seen is not None and seen.identity == identity:
                    self._seen.move_to_end(key)
                    continue
                stamp = event.exchange_ts
                if (
                    self.ordered
                    and seen is not None
                    and stamp is not None
                    and seen.exchange_ts is not None
                    and stamp < seen.exchange_ts
                ):
                    continue  # older than the update put already
                material = self.material(event)
                if seen is None or seen.material != material:
                    news += 1
                self._seen[key] = _Seen(identity, material, stamp)
                self._seen.move_to_end(key)
                while len(self._seen) > self.settings.memory:
                    self._seen.popitem(last=False)
            self.track(event)
            await feed.put(event)
        return news

    async def _sync(self, feed: Feed, covered_ns: int) -> int:
        """A REST snapshot since ``covered_ns`` (less the margin), put; how many were news."""
        since_ms = (covered_ns - _ns(self.settings.backfill_margin)) // 1_000_000
        try:
            events = await self.snapshot(since_ms)
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            error = _cancelled_call()
        except Exception as exc:
            error = _venue_failure(exc)
        else:
            return await self._put_new(feed, events)
        raise error

    async def _backfill(self, feed: Feed, covered_ns: int) -> int | None:
        """``_sync`` while streaming: how many were news, or None if the venue refused it
        (``Refused``: it will refuse again, so the stream goes on without it, the refusal
        recorded; retrying would drop the stream's updates forever). No answer
        (``Unreachable``) still raises: the stream is started again once it answers."""
        try:
            return await self._sync(feed, covered_ns)
        except Refused as error:
            await self._error(feed, error)
            return None

    def _subscribe(self) -> asyncio.Future[list[Event]]:
        return asyncio.ensure_future(self.venue.watch(self.stream, self.symbol))

    async def _next(
        self, task: asyncio.Future[list[Event]], clock: Clock, quiet_since: int
    ) -> list[Event] | None:
        """The stream's next update, or None once it has been quiet for ``stall_after``."""
        stall_after = self.settings.stall_after
        while not task.done():
            if stall_after is None:
                await asyncio.wait((task,))
                break
            remaining = quiet_since + _ns(stall_after) - clock.now_ns()
            if remaining <= 0:
                return None
            timer = asyncio.ensure_future(clock.sleep(remaining / _NS))
            try:
                await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
            finally:
                await _cancel(timer)
        if task.cancelled():  # not by this watcher: it never awaits a watch it cancelled
            raise _Dropped(_cancelled_call())
        try:
            return task.result()
        except Exception as exc:
            raise _Dropped(_venue_failure(exc)) from None

    async def _stream(self, feed: Feed, covered: int) -> None:
        """Stream (with backfills, stall checks and polling spells) until cancelled.
        ``covered``: the clock's ns up to which everything is known to be put."""
        clock = feed.clock
        failures = 0
        task: asyncio.Future[list[Event]] | None = None
        try:
            while True:
                task = self._subscribe()
                subscribed = clock.now_ns()
                await asyncio.sleep(0)  # the subscription goes out before the snapshot
                try:
                    if await self._backfill(feed, covered) is not None:
                        covered = subscribed  # else nothing could be fetched: the gap stays
                    quiet_since = subscribed
                    first = True
                    while True:
                        batch = await self._next(task, clock, quiet_since)
                        if batch is None:  # quiet for stall_after: stalled, or just quiet?
                            checked = clock.now_ns()
                            news = await self._backfill(feed, covered)
                            if news is not None:
                                covered = checked
                            quiet_since = checked
                            if news:
                                await self._error(
                                    feed,
                                    VenueError(
                                        "Stalled",
                                        f"no update for {self.settings.stall_after} s, but a "
                                        f"poll found {news} the stream had not delivered",
                                    ),
                                )
                                await _cancel(task)
                                task = None
                                until = clock.now_ns() + _ns(self.settings.poll_for)
                                covered = await self._poll(feed, covered, until_ns=until)
                                break
                            continue
                        delivered = clock.now_ns()
                        task = self._subscribe()
                        failures = 0
                        await self._put_new(feed, batch)
                        if first:  # the subscription is live now: what came before it?
                            first = False
                            await self._backfill(feed, subscribed)
                        covered = quiet_since = delivered
                except _Dropped as dropped:
                    await _cancel(task)
                    task = None
                    failures += 1
                    await self._error(feed, dropped.error)
                    await clock.sleep(self.backoff(failures, dropped.error.retry_after))
                    await feed.put(
                        WatcherReconnected(self._name, gap_start_ts=covered, source=self._name)
                    )
                except VenueError as error:  # a REST snapshot failed: the gap stays open
                    await _cancel(task)
                    task = None
                    failures += 1
                    await self._error(feed, error)
                    await clock.sleep(self.backoff(failures, error.retry_after))
        finally:
            await _cancel(task)

    async def _poll(self, feed: Feed, covered: int, until_ns: int | None) -> int:
        """Poll until the clock reaches ``until_ns`` (None: until cancelled); returns the
        clock's ns up to which everything is known to be put."""
        clock = feed.clock
        failures = 0
        while until_ns is None or clock.now_ns() < until_ns:
            started = clock.now_ns()
            try:
                await self._sync(feed, covered)
            except VenueError as error:
                failures += 1
                await self._error(feed, error)
                delay = self.backoff(failures, error.retry_after)
                await clock.sleep(max(self.settings.poll_interval, delay))
                continue
            covered, failures = started, 0
            await clock.sleep(self.settings.poll_interval)
        return covered


class OrdersWatcher(StreamWatcher):
    """A market's orders: every report of each, as the venue gives it."""

    stream = "orders"
    per_symbol = True

    def __init__(
        self,
        venue: StreamingVenue,
        symbol: str | None = None,
        settings: WatcherSettings | None = None,
    ) -> None:
        super().__init__(venue, symbol, settings)
        self._open: dict[str, int | None] = {}
        """The orders last seen open (and when placed): a backfill looks at each again."""

    def key(self, event: Event) -> Hashable | None:
        if isinstance(event, OrderObserved) and (event.order_id or event.client_order_id):
            return (event.order_id, event.client_order_id if not event.order_id else None)
        return None

    def material(self, event: Event) -> tuple[Any, ...]:
        if isinstance(event, OrderObserved):
            return (event.status, event.filled)
        return _identity(event)

    def track(self, event: Event) -> None:
        if isinstance(event, OrderObserved) and event.order_id:
            if event.status == "open":
                self._open.setdefault(event.order_id, event.exchange_ts)
            elif event.status in _TERMINAL:
                self._open.pop(event.order_id, None)

    async def snapshot(self, since_ms: int) -> list[Event]:
        symbol = self.symbol
        assert symbol is not None
        events = await self.venue.fetch_open_orders(symbol)
        events += await self.venue.fetch_closed_orders(symbol, since_ms)
        listed = {e.order_id for e in events if isinstance(e, OrderObserved)}
        for order_id in [o for o in self._open if o not in listed]:
            # open when last seen, in neither list now: closed, but placed before `since`
            try:
                events += await self.venue.fetch_order(symbol, order_id)
                continue
            except Exception as exc:
                # one order's answer must not keep the others' reports out of the trace
                error = _venue_failure(exc)
            if isinstance(error, NotFound):
                self._open.pop(order_id, None)
                fate = "is unknown to the venue now"
            elif isinstance(error, Refused):
                self._open.pop(order_id, None)
                fate = "cannot be fetched: the venue refused"
            else:
                fate = "could not be fetched (it is asked for again at the next backfill)"
            events.append(
                WatcherError(
                    self._name,
                    error.error,
                    f"order {order_id}, last seen open, {fate}: {error.message}",
                    source=self._name,
                )
            )
        return events


class TradesWatcher(StreamWatcher):
    """A market's trades (the account's fills)."""

    stream = "trades"
    per_symbol = True

    def key(self, event: Event) -> Hashable | None:
        if isinstance(event, TradeObserved) and event.trade_id:
            return event.trade_id
        return None

    def material(self, event: Event) -> tuple[Any, ...]:
        return ()  # a trade is news once: a second report of it only fills in details

    def available(self) -> str | None:
        if self.venue.can_watch("trades") or self.venue.can_fetch_trades():
            return None
        return "the venue reports no trades: fills are emulated from the orders"

    async def snapshot(self, since_ms: int) -> list[Event]:
        if not self.venue.can_fetch_trades():
            return []
        assert self.symbol is not None
        return await self.venue.fetch_my_trades(self.symbol, since_ms)


class BalanceWatcher(StreamWatcher):
    """The account's balance, every currency."""

    stream = "balance"

    def key(self, event: Event) -> Hashable | None:
        if isinstance(event, BalanceObserved):
            return frozenset(b.currency for b in event.balances)
        return None

    async def snapshot(self, since_ms: int) -> list[Event]:
        return await self.venue.fetch_balance()


class PositionsWatcher(StreamWatcher):
    """The account's positions (of one market, or of every market)."""

    stream = "positions"
    ordered = True

    def __init__(
        self,
        venue: StreamingVenue,
        symbol: str | None = None,
        settings: WatcherSettings | None = None,
    ) -> None:
        super().__init__(venue, symbol, settings)
        self._held: set[tuple[str, str | None]] = set()
        """The positions last seen held, as (market, side if hedged else None): one a poll no
        longer lists was closed."""

    def key(self, event: Event) -> Hashable | None:
        if isinstance(event, PositionObserved) and event.asset:
            # one key per market: a flat report, then the same position again, is news
            return (event.asset, event.side if event.hedged else None)
        return None

    def material(self, event: Event) -> tuple[Any, ...]:
        if isinstance(event, PositionObserved):
            return (event.side, event.contracts, event.entry_price)
        return _identity(event)

    def track(self, event: Event) -> None:
        if not isinstance(event, PositionObserved) or not event.asset:
            return
        market = event.asset
        if event.hedged and event.side:  # one side of a hedged market: the other stays
            if event.contracts:
                self._held.add((market, event.side))
            else:
                self._held.discard((market, event.side))
            return
        # the market's whole position (one-way, or flat): the fold drops whatever it held
        self._held = {held for held in self._held if held[0] != market}
        if event.side and event.contracts:
            self._held.add((market, None))

    async def snapshot(self, since_ms: int) -> list[Event]:
        events = await self.venue.fetch_positions([self.symbol] if self.symbol else [])
        reported = [e for e in events if isinstance(e, PositionObserved) and e.asset]
        markets = {e.asset for e in reported}
        whole = {e.asset for e in reported if not (e.hedged and e.side)}
        sides = {(e.asset, e.side) for e in reported if e.hedged and e.side}
        # a market the poll no longer lists is flat; a hedged side it no longer lists (the
        # other side listed) is closed, which only a report of that side says to the fold
        closed: list[Event] = [
            PositionObserved(
                side=None, contracts=Decimal(0), asset=market, source="fetch_positions"
            )
            for market in sorted({market for market, _ in self._held} - markets)
        ]
        closed += [
            PositionObserved(
                side=side,
                contracts=Decimal(0),
                hedged=True,
                asset=market,
                source="fetch_positions",
            )
            for market, side in sorted(
                (market, side)
                for market, side in self._held
                if side is not None and market in markets - whole and (market, side) not in sides
            )
        ]
        return [*events, *closed]


class TickerWatcher(StreamWatcher):
    """A market's ticker (its last price, bid and ask)."""

    stream = "ticker"
    per_symbol = True
    ordered = True

    def key(self, event: Event) -> Hashable | None:
        return event.asset if isinstance(event, TickerObserved) else None

    async def snapshot(self, since_ms: int) -> list[Event]:
        assert self.symbol is not None
        return await self.venue.fetch_ticker(self.symbol)


_WATCHERS: dict[str, type[StreamWatcher]] = {
    w.stream: w
    for w in (OrdersWatcher, TradesWatcher, BalanceWatcher, PositionsWatcher, TickerWatcher)
}
assert set(_WATCHERS) == set(STREAMS)


def watcher_for(
    venue: StreamingVenue,
    stream: str,
    symbol: str | None = None,
    settings: WatcherSettings | None = None,
) -> StreamWatcher:
    """The watcher of ``stream`` (one of ``eventsrc.venue.STREAMS``) of ``venue``."""
    cls = _WATCHERS.get(stream)
    if cls is None:
        raise ValueError(f"no stream {stream!r}: one of {', '.join(STREAMS)}")
    return cls(venue, symbol, settings)
