"""The watchers (``adapters.watchers``): what each puts in its feed, in what order, on a
scripted venue and a manual clock (no real sleep, no network), and end to end over the
simulated exchange.

Every test runs its watcher as a task and drives it step by step: the fake venue records each
call and answers it with the next answer the test queued for that call (events, or an error
to raise), waiting for one if none is queued; ``until`` lets the watcher run until a
condition holds. At the end the watcher is cancelled, and must end by that cancellation,
leaving no task behind.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import attrs
import pytest

from adapters.sim import SimExchange
from adapters.venue import CcxtVenue
from adapters.watchers import (
    BalanceWatcher,
    OrdersWatcher,
    PositionsWatcher,
    StreamWatcher,
    TickerWatcher,
    TradesWatcher,
    WatcherSettings,
    watcher_for,
)
from eventsrc import fold
from eventsrc.clock import Clock, ManualClock
from eventsrc.engine import EngineClosed
from eventsrc.events import (
    Balance,
    BalanceObserved,
    Event,
    OrderObserved,
    OrderRequested,
    PositionObserved,
    StrategyStarted,
    TickerObserved,
    TradeObserved,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    WatcherStopped,
)
from eventsrc.venue import Market, NotFound, Refused, Unreachable, Watcher

T = TypeVar("T")
E = TypeVar("E", bound=Event)
D = Decimal
S = 1_000_000_000  # ns in a second
MS = 1_000_000  # ns in a millisecond
START = 1_700_000_000_000_000_000
SYMBOL = "BTC/USDT"

SETTINGS = WatcherSettings(
    poll_interval=5.0,
    stall_after=None,  # a manual clock jumps to any timer: stalls only where a test wants one
    poll_for=10.0,
    backoff_base=1.0,
    backoff_cap=60.0,
    backfill_margin=60.0,
    lookback=60.0,
)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# -- the scripted venue and the recording feed -------------------------------------------------

Answer = Sequence[Event] | BaseException


class Call(NamedTuple):
    method: str
    args: tuple[Any, ...]
    at: int
    """The clock's ns when the call was made."""


class FakeVenue:
    """A ``StreamingVenue`` whose every answer the test scripts (see the module docstring)."""

    def __init__(
        self, clock: Clock, *, streams: Sequence[str] = (), fetch_trades: bool = True
    ) -> None:
        self.clock = clock
        self.streams = set(streams)
        self.fetch_trades = fetch_trades
        self.calls: list[Call] = []
        self.cancelled_watches = 0
        self._answers: defaultdict[str, asyncio.Queue[Answer]] = defaultdict(asyncio.Queue)

    @property
    def name(self) -> str:
        return "fake"

    def answer(self, method: str, *answers: Answer) -> None:
        """Queue the answers of the next calls of ``method``, in order."""
        for answer in answers:
            self._answers[method].put_nowait(answer)

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def _call(self, method: str, *args: Any) -> list[Event]:
        self.calls.append(Call(method, args, self.clock.now_ns()))
        answer = await self._answers[method].get()
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)

    # -- what the watchers call -------------------------------------------------------------

    def can_watch(self, stream: str) -> bool:
        return stream in self.streams

    def can_fetch_trades(self) -> bool:
        return self.fetch_trades

    async def watch(self, stream: str, symbol: str | None = None) -> list[Event]:
        try:
            return await self._call("watch", stream, symbol)
        except asyncio.CancelledError:
            self.cancelled_watches += 1
            raise

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Event]:
        return await self._call("fetch_open_orders", symbol)

    async def fetch_closed_orders(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        return await self._call("fetch_closed_orders", symbol, since_ms)

    async def fetch_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> list[Event]:
        return await self._call("fetch_order", symbol, order_id)

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        return await self._call("fetch_my_trades", symbol, since_ms)

    async def fetch_balance(self) -> list[Event]:
        return await self._call("fetch_balance")

    async def fetch_positions(self, symbols: Sequence[str]) -> list[Event]:
        return await self._call("fetch_positions", tuple(symbols))

    async def fetch_ticker(self, symbol: str) -> list[Event]:
        return await self._call("fetch_ticker", symbol)

    # -- the rest of the Venue protocol, which no watcher calls -----------------------------

    async def load_markets(self) -> dict[str, Market]:
        raise AssertionError("a watcher does not load markets")

    async def create_order(self, request: OrderRequested) -> list[Event]:
        raise AssertionError("a watcher places no order")

    async def cancel_order(self, symbol: str, order_id: str) -> list[Event]:
        raise AssertionError("a watcher cancels no order")

    async def fetch_order_trades(self, symbol: str, order_id: str) -> list[Event]:
        raise AssertionError("a watcher does not fetch an order's trades")

    async def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        raise AssertionError("a watcher sets no leverage")

    def watcher(self, stream: str, symbol: str | None = None) -> Watcher:
        return watcher_for(self, stream, symbol, SETTINGS)


class Put(NamedTuple):
    event: Event
    at: int
    """The clock's ns when it was put."""


class RecordingFeed:
    """A ``Feed`` that keeps what it is given; ``fail`` makes a put fail as the engine's would."""

    def __init__(self, clock: Clock, fail: Callable[[Event], bool] | None = None) -> None:
        self._clock = clock
        self.fail = fail
        self.puts: list[Put] = []

    @property
    def clock(self) -> Clock:
        return self._clock

    async def put(self, event: Event) -> None:
        if self.fail is not None and self.fail(event):
            raise EngineClosed("the engine stopped recording: the disk is full")
        self.puts.append(Put(event, self._clock.now_ns()))

    @property
    def events(self) -> list[Event]:
        return [p.event for p in self.puts]

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    def at(self, event: Event) -> int:
        """When ``event`` (this very object) was put."""
        return next(p.at for p in self.puts if p.event is event)


async def until(condition: Callable[[], bool], what: str, steps: int = 1_000) -> None:
    """Let the other tasks run until ``condition`` holds (fail if it never does)."""
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    pytest.fail(f"never happened: {what}")


async def settle(steps: int = 200) -> None:
    """Let the other tasks run until they all wait for something the test must do."""
    for _ in range(steps):
        await asyncio.sleep(0)


def start(watcher: StreamWatcher, feed: RecordingFeed) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(watcher.run(feed))


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a watcher: it ends by that cancellation and leaves no task behind."""
    assert not task.done(), "the watcher ended before it was cancelled"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert left == []


def clock() -> ManualClock:
    return ManualClock(start_ns=START)


def order(
    order_id: str, status: str = "open", filled: str = "0", ts: int = 1_000, **kw: Any
) -> OrderObserved:
    return OrderObserved(
        order_id=order_id,
        status=status,
        amount=D(1),
        filled=D(filled),
        asset=SYMBOL,
        exchange_ts=ts,
        source=kw.pop("source", "watch_orders"),
        **kw,
    )


def trade(trade_id: str, order_id: str = "o1", ts: int = 1_000, **kw: Any) -> TradeObserved:
    return TradeObserved(
        trade_id=trade_id,
        order_id=order_id,
        side="buy",
        price=D(100),
        amount=D("0.5"),
        asset=SYMBOL,
        exchange_ts=ts,
        source=kw.pop("source", "watch_my_trades"),
        **kw,
    )


def balance(usdt: str) -> BalanceObserved:
    return BalanceObserved(balances=(Balance("USDT", total=D(usdt)),), source="fetch_balance")


def ticker(last: str, ts: int, symbol: str = SYMBOL) -> TickerObserved:
    return TickerObserved(last=D(last), asset=symbol, exchange_ts=ts, source="watch_ticker")


def position(
    side: str | None, contracts: str, ts: int | None = None, *, hedged: bool | None = None
) -> PositionObserved:
    return PositionObserved(
        side=side,
        contracts=D(contracts),
        asset="BTC/USDT:USDT",
        hedged=hedged,
        exchange_ts=ts,
        source="fetch_positions",
    )


def since_ms(ns: int, margin: float = SETTINGS.backfill_margin) -> int:
    """The ``since`` a snapshot covering everything from ``ns`` on asks for."""
    return (ns - round(margin * S)) // MS


# -- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [True, False])
def test_it_starts_with_watcher_started_then_a_snapshot_reaching_lookback_and_margin_back(
    streaming: bool,
) -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["orders"] if streaming else [])
        feed = RecordingFeed(time)
        placed_before, closed_before = order("o1"), order("o2", "closed", "1", source="closed")
        venue.answer("fetch_open_orders", [placed_before])
        venue.answer("fetch_closed_orders", [closed_before])
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        await until(lambda: len(feed.events) == 3, "the snapshot is put")

        assert feed.events == [
            WatcherStarted("orders:BTC/USDT", streaming=streaming, source="orders:BTC/USDT"),
            placed_before,
            closed_before,
        ]
        (closed_call, *_) = venue.called("fetch_closed_orders")
        lookback_and_margin = round((SETTINGS.lookback + SETTINGS.backfill_margin) * S)
        assert closed_call.args == (SYMBOL, (START - lookback_and_margin) // MS)
        assert bool(venue.called("watch")) is streaming
        await stop(task)

    run(scenario())


# -- streaming --------------------------------------------------------------------------------


def test_stream_updates_are_put_in_order_an_identical_repeat_once_and_a_change_again() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["orders"])
        feed = RecordingFeed(time)
        a, b = order("a"), order("b")
        a_again = order("a", source="watch_orders_again", raw=b'{"again": true}')
        a_filled = order("a", filled="0.5", ts=2_000)
        # the first snapshot finds nothing; the one after the first update finds a and b
        venue.answer("fetch_open_orders", [], [a, b])
        venue.answer("fetch_closed_orders", [], [])
        venue.answer("watch", [a, b], [a_again], [a_filled])
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        await until(lambda: len(venue.called("watch")) == 4, "every update is taken")
        await settle()

        assert feed.events[1:] == [a, b, a_filled]
        # what differs is the envelope only: the source and the raw payload
        assert a_again != a and attrs.evolve(a_again, source=a.source, raw=a.raw) == a
        await stop(task)

    run(scenario())


def test_it_subscribes_before_snapshotting_and_snapshots_again_after_the_first_update() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time)
        watcher = TradesWatcher(venue, SYMBOL, SETTINGS)
        task = start(watcher, feed)
        await until(lambda: bool(venue.called("fetch_my_trades")), "the first snapshot")
        assert [c.method for c in venue.calls] == ["watch", "fetch_my_trades"]
        subscribed = venue.calls[0].at

        # t1 happens after the first snapshot, before the subscription is live: the stream
        # never delivers it; the snapshot after the first update does
        venue.answer("fetch_my_trades", [])
        time.advance(3 * S)
        t1, t2 = trade("t1", ts=1_500), trade("t2", ts=2_000)
        venue.answer("watch", [t2])
        await until(lambda: len(venue.called("fetch_my_trades")) == 2, "a second snapshot")
        second = venue.called("fetch_my_trades")[1]
        assert second.args == (SYMBOL, since_ms(subscribed))
        assert feed.events[-1] == t2  # taken after the first update was put
        venue.answer("fetch_my_trades", [t1, t2])
        await until(lambda: t1 in feed.events, "the trade only the second snapshot has")

        assert feed.events[1:] == [t2, t1]
        await settle()
        assert len(venue.called("fetch_my_trades")) == 2  # once per subscription
        time.advance(S)
        venue.answer("watch", [trade("t3")])
        await until(lambda: len(feed.events) == 4, "a later update")
        await settle()
        assert len(venue.called("fetch_my_trades")) == 2
        await stop(task)

    run(scenario())


# -- a dropped stream -------------------------------------------------------------------------


def test_a_dropped_stream_is_an_error_a_backoff_a_gap_marker_and_a_backfill_of_the_gap() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time)
        task = start(TradesWatcher(venue, SYMBOL, SETTINGS), feed)
        venue.answer("fetch_my_trades", [], [])
        await until(lambda: bool(venue.called("fetch_my_trades")), "the first snapshot")
        time.advance(10 * S)
        t1 = trade("t1", ts=1_000)
        venue.answer("watch", [t1])
        await until(lambda: len(venue.called("fetch_my_trades")) == 2, "the first update")
        delivered = feed.at(t1)
        assert delivered == START + 10 * S

        time.advance(5 * S)
        t2 = trade("t2", ts=1_200)  # filled while the stream was down: only REST has it
        venue.answer("fetch_my_trades", [t1, t2])
        venue.answer("watch", Unreachable("NetworkError", "sim: watchMyTrades connection closed"))
        await until(lambda: t2 in feed.events, "the fill the stream missed")

        error, marker, backfilled = feed.events[2:]
        assert isinstance(error, WatcherError)
        assert (error.watcher, error.error) == ("trades:BTC/USDT", "NetworkError")
        assert "connection closed" in error.message
        assert marker == WatcherReconnected(
            "trades:BTC/USDT", gap_start_ts=delivered, source="trades:BTC/USDT"
        )
        assert backfilled == t2  # t1, put already, is not put again
        waited = feed.at(marker) - feed.at(error)
        assert 0.5 * S <= waited <= 1.0 * S  # d = backoff_base after one failure
        backfill = venue.called("fetch_my_trades")[2]
        assert backfill.args == (SYMBOL, since_ms(delivered))
        assert backfill.at >= feed.at(marker)
        assert len(venue.called("watch")) == 3  # and streaming again
        await stop(task)

    run(scenario())


def test_consecutive_drops_grow_the_backoff_to_its_cap_and_a_delivered_update_resets_it() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time)
        settings = WatcherSettings(stall_after=None, backoff_base=2.0, backoff_cap=5.0)
        task = start(TradesWatcher(venue, SYMBOL, settings), feed)
        venue.answer("fetch_my_trades", *[[]] * 20)
        drop = Unreachable("RequestTimeout", "timed out")
        venue.answer("watch", [trade("t1")], drop, drop, drop, [trade("t2")], drop)
        await until(lambda: len(venue.called("watch")) == 7, "every answer is taken")

        errors, markers = feed.of(WatcherError), feed.of(WatcherReconnected)
        assert len(errors) == len(markers) == 4
        waited = [(feed.at(m) - feed.at(e)) / S for e, m in zip(errors, markers, strict=True)]
        ceilings = [2.0, 4.0, 5.0, 2.0]  # min(cap, base * 2**(n-1)), n reset by t2
        for delay, ceiling in zip(waited, ceilings, strict=True):
            assert ceiling / 2 <= delay <= ceiling
        await stop(task)

    run(scenario())


def test_a_drop_with_the_venues_retry_after_waits_at_least_that_long() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["balance"])
        feed = RecordingFeed(time)
        task = start(BalanceWatcher(venue, None, SETTINGS), feed)
        venue.answer("fetch_balance", [], [], [])
        venue.answer("watch", [balance("1")], Unreachable("RateLimitExceeded", retry_after=42.5))
        await until(lambda: bool(feed.of(WatcherReconnected)), "the gap marker")

        (error,), (marker,) = feed.of(WatcherError), feed.of(WatcherReconnected)
        assert error.error == "RateLimitExceeded"
        assert feed.at(marker) - feed.at(error) == round(42.5 * S)
        await stop(task)

    run(scenario())


def test_the_backoff_jitter_is_the_same_for_one_watcher_name_and_another_for_another() -> None:
    venue = FakeVenue(clock())
    settings = WatcherSettings(backoff_base=1.0, backoff_cap=60.0)

    def delays(symbol: str) -> list[float]:
        watcher = TradesWatcher(venue, symbol, settings)
        return [watcher.backoff(n) for n in range(1, 9)]

    first, again, other = delays(SYMBOL), delays(SYMBOL), delays("ETH/USDT")
    assert first == again
    assert first != other
    for n, delay in enumerate(first, start=1):
        ceiling = min(60.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert TradesWatcher(venue, SYMBOL, settings).backoff(1, retry_after=30.0) == 30.0


def test_a_watch_the_venues_library_cancels_is_a_dropped_stream_not_the_watchers_end() -> None:
    # ccxt's Client.close() cancels every pending watch future of the connection: the watch
    # ends in CancelledError though nobody cancelled the watcher
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["orders"])
        feed = RecordingFeed(time)
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        venue.answer("fetch_open_orders", [], [order("a")], [])
        venue.answer("fetch_closed_orders", [], [], [order("a", "closed", "1")])
        venue.answer("watch", [order("a")], asyncio.CancelledError())
        await until(lambda: len(venue.called("watch")) == 3, "a new subscription")

        (error,) = feed.of(WatcherError)
        assert error.error == "CancelledError"
        assert isinstance(feed.events[-2], WatcherReconnected)
        assert feed.events[-1] == order("a", "closed", "1")  # the backfill
        await stop(task)

    run(scenario())


def test_a_poll_the_venues_library_cancels_is_a_failed_poll_not_the_watchers_end() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        task = start(BalanceWatcher(venue, None, SETTINGS), feed)
        venue.answer("fetch_balance", asyncio.CancelledError(), [balance("1")])
        await until(lambda: len(venue.called("fetch_balance")) == 3, "two polls more")

        (error,) = feed.of(WatcherError)
        assert error.error == "CancelledError"
        assert feed.events[-1] == balance("1")
        await stop(task)

    run(scenario())


# -- the orders' backfill ---------------------------------------------------------------------


def test_a_backfill_fetches_the_order_last_seen_open_that_is_in_neither_list() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["orders"])
        feed = RecordingFeed(time)
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        old, new = order("old", ts=1), order("new")  # old: placed long before any "since"
        venue.answer("fetch_open_orders", [old], [old, new])
        venue.answer("fetch_closed_orders", [], [])
        venue.answer("watch", [new])
        await until(lambda: len(venue.called("fetch_open_orders")) == 2, "streaming")

        # it fills while the stream is down: in neither the open list nor the closed-since one
        filled = order("old", "closed", "1", ts=1, source="fetch_order")
        venue.answer("fetch_open_orders", [new])
        venue.answer("fetch_closed_orders", [])
        venue.answer("fetch_order", [filled])
        venue.answer("watch", Unreachable("NetworkError", "closed"))
        await until(lambda: filled in feed.events, "the order's fill")

        assert [c.args for c in venue.called("fetch_order")] == [(SYMBOL, "old")]
        assert feed.events[-1] == filled
        await stop(task)

    run(scenario())


def test_an_order_last_seen_open_the_venue_no_longer_knows_is_an_error_and_forgotten() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)  # polling: every poll is a backfill
        feed = RecordingFeed(time)
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        venue.answer("fetch_open_orders", [order("gone")], [], [])
        venue.answer("fetch_closed_orders", [], [], [])
        venue.answer("fetch_order", NotFound("OrderNotFound", "order gone does not exist"))
        await until(lambda: len(venue.called("fetch_open_orders")) == 4, "three polls")

        (error,) = feed.of(WatcherError)
        assert error.watcher == "orders:BTC/USDT" and error.error == "OrderNotFound"
        assert "gone" in error.message and "last seen open" in error.message
        assert len(venue.called("fetch_order")) == 1  # the third poll does not ask again
        await stop(task)

    run(scenario())


def test_an_order_the_venue_refuses_to_fetch_is_an_error_and_forgotten_the_rest_is_put() -> None:
    # bybit's fetchOrder refuses every order (ArgumentsRequired) unless acknowledged: one such
    # order must not keep every other report of the market out of the trace
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        b_filled = order("b", "closed", "1", ts=2_000, source="fetch_closed_orders")
        venue.answer("fetch_open_orders", [order("a"), order("b", ts=2_000)], [], [])
        venue.answer("fetch_closed_orders", [], [b_filled], [b_filled])
        refused = Refused("ArgumentsRequired", "fetchOrder() can only access the last 500 orders")
        venue.answer("fetch_order", refused)
        await until(lambda: len(venue.called("fetch_open_orders")) == 4, "three polls")

        (error,) = feed.of(WatcherError)
        assert error.error == "ArgumentsRequired" and "order a, last seen open" in error.message
        assert b_filled in feed.events  # the rest of that poll
        assert feed.at(b_filled) == venue.called("fetch_open_orders")[1].at
        assert len(venue.called("fetch_order")) == 1  # asking again will not help
        await stop(task)

    run(scenario())


def test_an_order_that_cannot_be_fetched_for_now_is_asked_for_again_the_rest_is_put() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        b_filled = order("b", "closed", "1", ts=2_000, source="fetch_closed_orders")
        a_filled = order("a", "closed", "1", source="fetch_order")
        venue.answer("fetch_open_orders", [order("a"), order("b", ts=2_000)], [], [])
        venue.answer("fetch_closed_orders", [], [b_filled], [b_filled])
        venue.answer("fetch_order", Unreachable("RequestTimeout", "timed out"), [a_filled])
        await until(lambda: len(venue.called("fetch_open_orders")) == 4, "three polls")

        (error,) = feed.of(WatcherError)
        assert error.error == "RequestTimeout" and "order a, last seen open" in error.message
        polls = [c.at for c in venue.called("fetch_open_orders")]
        assert feed.at(b_filled) == polls[1]  # not held up by a
        assert feed.at(a_filled) == polls[2]  # a, asked for again at the next poll
        assert polls[2] - polls[1] == 5 * S  # and that poll came after poll_interval
        assert len(venue.called("fetch_order")) == 2
        await stop(task)

    run(scenario())


# -- polling ----------------------------------------------------------------------------------


def test_without_streaming_it_polls_every_poll_interval_of_virtual_time() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        task = start(BalanceWatcher(venue, None, SETTINGS), feed)
        venue.answer("fetch_balance", [balance("1")], [balance("1")], [balance("2")])
        await until(lambda: len(venue.called("fetch_balance")) == 4, "three polls")

        assert [c.at for c in venue.called("fetch_balance")] == [
            START + i * 5 * S for i in range(4)
        ]
        assert feed.events == [
            WatcherStarted("balance", streaming=False, source="balance"),
            balance("1"),
            balance("2"),
        ]
        assert venue.called("watch") == []
        await stop(task)

    run(scenario())


def test_a_failing_poll_is_a_watcher_error_and_a_backoff_and_the_polling_goes_on() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        settings = WatcherSettings(poll_interval=1.0, backoff_base=4.0, backoff_cap=60.0)
        task = start(TradesWatcher(venue, SYMBOL, settings), feed)
        venue.answer(
            "fetch_my_trades",
            Unreachable("ExchangeNotAvailable", "503"),
            KeyError("fee"),  # not a VenueError: a bug deep in a library
            Unreachable("RateLimitExceeded", "429", retry_after=30.0),
            [trade("t1")],
            [trade("t1")],
        )
        await until(lambda: len(venue.called("fetch_my_trades")) == 6, "five polls")

        errors = feed.of(WatcherError)
        assert [e.error for e in errors] == [
            "ExchangeNotAvailable",
            "KeyError",
            "RateLimitExceeded",
        ]
        assert "fee" in errors[1].message
        assert feed.events[-1] == trade("t1")
        gaps = [(b.at - a.at) / S for a, b in zip(venue.calls, venue.calls[1:], strict=False)]
        assert 2.0 <= gaps[0] <= 4.0  # max(poll_interval, d/2..d for d = 4)
        assert 4.0 <= gaps[1] <= 8.0  # two in a row: d = 8
        assert gaps[2] == 30.0  # the venue's retry_after
        assert gaps[3:] == [1.0, 1.0]  # a poll that works: back to poll_interval
        # the poll after failed ones reaches back to the last poll that worked: the first
        assert venue.called("fetch_my_trades")[3].args == (SYMBOL, since_ms(START - 60 * S))
        await stop(task)

    run(scenario())


# -- stall detection --------------------------------------------------------------------------


def test_a_quiet_stream_is_checked_by_one_poll_and_if_nothing_is_new_it_streams_on() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time)
        settings = WatcherSettings(stall_after=60.0, backfill_margin=60.0)
        task = start(TradesWatcher(venue, SYMBOL, settings), feed)
        t0 = trade("t0")
        venue.answer("fetch_my_trades", [t0], [t0])  # the snapshot, then the stall check
        await until(lambda: len(venue.called("fetch_my_trades")) == 3, "a stall check")

        _, check, _ = venue.called("fetch_my_trades")
        assert check.at == START + 60 * S  # quiet for stall_after
        assert check.args == (SYMBOL, since_ms(START))
        assert feed.events[1:] == [t0]
        assert feed.of(WatcherError) == []
        assert len(venue.called("watch")) == 1 and venue.cancelled_watches == 0

        venue.answer("fetch_my_trades", [t0], [t0])  # quiet again: the next check
        venue.answer("watch", [trade("t1")])
        await until(lambda: trade("t1") in feed.events, "the stream's next update")
        assert feed.of(WatcherError) == []
        assert venue.cancelled_watches == 0
        await stop(task)

    run(scenario())


def test_after_a_stall_check_that_found_nothing_missing_a_gap_starts_at_that_check() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time)
        settings = WatcherSettings(stall_after=60.0, backfill_margin=60.0)
        task = start(TradesWatcher(venue, SYMBOL, settings), feed)
        venue.answer("fetch_my_trades", [], [])  # the snapshot, then a stall check
        await until(lambda: len(venue.called("fetch_my_trades")) == 3, "a stall check")
        check = venue.called("fetch_my_trades")[1]

        venue.answer("watch", Unreachable("NetworkError", "closed"))
        venue.answer("fetch_my_trades", [], [])  # the second stall check, then the backfill
        await until(lambda: bool(feed.of(WatcherReconnected)), "the gap marker")
        (marker,) = feed.of(WatcherReconnected)
        second_check = venue.called("fetch_my_trades")[2]
        assert check.at < second_check.at == marker.gap_start_ts  # all before it is put
        await until(lambda: len(venue.called("fetch_my_trades")) == 4, "the backfill")
        assert venue.called("fetch_my_trades")[3].args == (SYMBOL, since_ms(second_check.at))
        await stop(task)

    run(scenario())


def test_a_stall_check_finding_news_is_a_stalled_error_then_polling_then_the_stream() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time)
        settings = WatcherSettings(stall_after=60.0, poll_for=10.0, poll_interval=5.0)
        task = start(TradesWatcher(venue, SYMBOL, settings), feed)
        missed = trade("t1")  # the stream never delivered it
        venue.answer("fetch_my_trades", [], [missed], [missed], [missed], [missed])
        await until(lambda: len(venue.called("watch")) == 2, "a new subscription")

        (error,) = feed.of(WatcherError)
        assert error.error == "Stalled"
        assert feed.events[1:] == [missed, error]
        assert venue.cancelled_watches == 1
        assert [(c.method, (c.at - START) / S) for c in venue.calls] == [
            ("watch", 0),
            ("fetch_my_trades", 0),
            ("fetch_my_trades", 60),  # the stall check
            ("fetch_my_trades", 60),  # polling for poll_for ...
            ("fetch_my_trades", 65),
            ("watch", 70),  # ... then the stream again
            ("fetch_my_trades", 70),
        ]
        await stop(task)

    run(scenario())


# -- positions and tickers --------------------------------------------------------------------


def test_a_ticker_older_than_the_last_one_put_for_its_market_is_dropped() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["ticker"])
        feed = RecordingFeed(time)
        task = start(TickerWatcher(venue, SYMBOL, SETTINGS), feed)
        venue.answer("fetch_ticker", [ticker("100", 100)], [ticker("100", 100)])
        venue.answer(
            "watch",
            [ticker("102", 200)],
            [ticker("101", 150)],  # older than 200: the fold would go back in time
            [ticker("105", 500), ticker("104", 400)],  # a batch arriving reversed
        )
        await until(lambda: len(venue.called("watch")) == 4, "every update is taken")
        await settle()

        assert [t.exchange_ts for t in feed.of(TickerObserved)] == [100, 200, 400, 500]
        await stop(task)

    run(scenario())


def test_a_position_update_older_than_the_last_one_put_is_dropped() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["positions"])
        feed = RecordingFeed(time)
        task = start(PositionsWatcher(venue, None, SETTINGS), feed)
        newer, older = position("long", "2", ts=2_000), position("long", "1", ts=1_000)
        venue.answer("fetch_positions", [], [newer])
        venue.answer("watch", [newer], [older])
        await until(lambda: len(venue.called("watch")) == 3, "every update is taken")
        await settle()

        assert feed.of(PositionObserved) == [newer]
        await stop(task)

    run(scenario())


def test_a_position_that_disappears_from_a_poll_is_reported_flat() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        task = start(PositionsWatcher(venue, None, SETTINGS), feed)
        held = position("long", "2", ts=1_000)
        venue.answer("fetch_positions", [held], [], [])
        await until(lambda: len(venue.called("fetch_positions")) == 4, "three polls")

        assert venue.called("fetch_positions")[0].args == ((),)  # every market's
        (reported, flat) = feed.of(PositionObserved)
        assert reported == held
        assert (flat.asset, flat.side, flat.contracts) == ("BTC/USDT:USDT", None, D(0))
        await stop(task)

    run(scenario())


def test_a_hedged_side_that_disappears_from_a_poll_is_reported_flat_and_the_other_kept() -> None:
    # in hedge mode the fold closes one side on a report of that side with no contracts; a
    # report of the other side leaves it open
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time)
        feed = RecordingFeed(time)
        task = start(PositionsWatcher(venue, None, SETTINGS), feed)
        long, short = position("long", "1", hedged=True), position("short", "2", hedged=True)
        venue.answer("fetch_positions", [long, short], [short], [short], [])
        await until(lambda: len(venue.called("fetch_positions")) == 5, "four polls")

        reported = feed.of(PositionObserved)
        assert reported[:3] == [long, short, position("long", "0", hedged=True)]
        assert [(p.side, p.contracts, p.hedged) for p in reported[3:]] == [(None, D(0), None)]
        margin = StrategyStarted("USDT", ("BTC/USDT:USDT",), margin=True)
        assert set(fold([margin, *reported[:3]]).positions) == {("BTC/USDT:USDT", "short")}
        assert not fold([margin, *reported]).positions
        await stop(task)

    run(scenario())


# -- a venue without trades -------------------------------------------------------------------


def test_a_trades_watcher_with_no_trades_to_watch_says_why_and_waits_to_be_cancelled() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, fetch_trades=False)
        feed = RecordingFeed(time)
        task = start(TradesWatcher(venue, SYMBOL, SETTINGS), feed)
        await settle()

        started, stopped = feed.events
        assert started == WatcherStarted(
            "trades:BTC/USDT", streaming=False, source="trades:BTC/USDT"
        )
        assert isinstance(stopped, WatcherStopped) and stopped.watcher == "trades:BTC/USDT"
        assert "no trades" in stopped.reason
        assert venue.calls == []
        assert time.now_ns() == START  # it waits, not polls
        await stop(task)

    run(scenario())


# -- the feed's own failure -------------------------------------------------------------------


@pytest.mark.parametrize(
    "failing",
    [
        pytest.param(WatcherStarted, id="the-start"),
        pytest.param(OrderObserved, id="a-snapshot"),
        pytest.param(WatcherError, id="a-watcher-error"),
        pytest.param(WatcherReconnected, id="the-gap-marker"),
    ],
)
def test_a_failing_feed_put_propagates_out_of_run_it_is_no_watcher_error(
    failing: type[Event],
) -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["orders"])
        feed = RecordingFeed(time, fail=lambda e: isinstance(e, failing))
        venue.answer("fetch_open_orders", [order("a")], [order("a")], [order("a")])
        venue.answer("fetch_closed_orders", [], [], [])
        venue.answer("watch", [order("a", "open", "0.5")], Unreachable("NetworkError"))
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)

        with pytest.raises(EngineClosed, match="disk is full"):
            await asyncio.wait_for(task, timeout=10)  # a real timeout: only if it hangs
        assert not any(isinstance(e, failing) for e in feed.events)
        assert not any(
            isinstance(e, WatcherError) and e.error == "EngineClosed" for e in feed.events
        )
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    run(scenario())


def test_a_failing_feed_put_of_a_stream_update_propagates_and_ends_the_subscription() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["trades"])
        feed = RecordingFeed(time, fail=lambda e: isinstance(e, TradeObserved))
        venue.answer("fetch_my_trades", [])
        venue.answer("watch", [trade("t1")])
        task = start(TradesWatcher(venue, SYMBOL, SETTINGS), feed)

        with pytest.raises(EngineClosed):
            await asyncio.wait_for(task, timeout=10)
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    run(scenario())


# -- watcher_for ------------------------------------------------------------------------------


def test_watcher_for_makes_each_streams_watcher_and_refuses_what_cannot_be_watched() -> None:
    venue = FakeVenue(clock())
    kinds = {
        "orders": OrdersWatcher,
        "trades": TradesWatcher,
        "balance": BalanceWatcher,
        "positions": PositionsWatcher,
        "ticker": TickerWatcher,
    }
    for stream, cls in kinds.items():
        symbol = None if stream in ("balance", "positions") else SYMBOL
        made = watcher_for(venue, stream, symbol)
        assert type(made) is cls
        assert made.name == (f"{stream}:{symbol}" if symbol else stream)
    with pytest.raises(ValueError, match="no stream"):
        watcher_for(venue, "candles", SYMBOL)
    with pytest.raises(ValueError, match="give its symbol"):
        watcher_for(venue, "orders")


# -- end to end over the simulated exchange ---------------------------------------------------


@pytest.mark.parametrize("websocket", [True, False], ids=["streaming", "polling"])
def test_an_order_placed_on_the_sim_shows_up_filled_as_order_and_trade_events(
    websocket: bool,
) -> None:
    async def scenario() -> None:
        exchange = SimExchange(seed=4, partial_fills=False, websocket=websocket)
        venue = CcxtVenue(exchange, watcher_settings=WatcherSettings(stall_after=None))
        assert venue.can_watch("orders") is websocket and venue.can_fetch_trades()
        bid = (await exchange.fetch_ticker(SYMBOL))["bid"]
        placed = await exchange.create_order(SYMBOL, "limit", "buy", 0.01, round(bid * 0.999, 2))
        assert placed["status"] == "open"  # it rests, and fills while it is watched

        feed = RecordingFeed(exchange.clock)
        watchers = [venue.watcher("orders", SYMBOL), venue.watcher("trades", SYMBOL)]
        tasks = [asyncio.get_running_loop().create_task(w.run(feed)) for w in watchers]

        def filled() -> bool:
            closed = [o for o in feed.of(OrderObserved) if o.status == "closed"]
            return bool(closed) and bool(feed.of(TradeObserved))

        await until(filled, "the order's fill", steps=5_000)
        started = feed.of(WatcherStarted)
        assert {(s.watcher, s.streaming) for s in started} == {
            ("orders:BTC/USDT", websocket),
            ("trades:BTC/USDT", websocket),
        }
        reports = [o for o in feed.of(OrderObserved) if o.order_id == placed["id"]]
        assert [(o.status, o.filled) for o in reports] == [("open", 0), ("closed", D("0.01"))]
        (fill,) = exchange.truth().fills
        (traded,) = feed.of(TradeObserved)
        assert (traded.trade_id, traded.order_id, traded.amount) == (
            fill.id,
            placed["id"],
            D("0.01"),
        )
        assert feed.of(WatcherError) == []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    run(scenario())


def test_a_snapshot_the_venue_refuses_is_recorded_and_the_stream_goes_on_without_it() -> None:
    async def scenario() -> None:
        time = clock()
        venue = FakeVenue(time, streams=["orders"])
        feed = RecordingFeed(time)
        refusal = Refused("NotSupported", "fetchClosedOrders() is not supported")
        venue.answer("fetch_open_orders", [], [])
        venue.answer("fetch_closed_orders", refusal, refusal)
        task = start(OrdersWatcher(venue, SYMBOL, SETTINGS), feed)
        await until(lambda: len(feed.of(WatcherError)) == 1, "the refusal is recorded")
        live = order("o1", "closed", "1")
        venue.answer("watch", [live])
        # the update is put: the refused snapshot did not drop the subscription
        await until(lambda: live in feed.events, "the stream's update is put")
        await until(lambda: len(feed.of(WatcherError)) == 2, "the second refusal too")
        await settle()
        assert [e.error for e in feed.of(WatcherError)] == ["NotSupported", "NotSupported"]
        assert len(venue.called("watch")) == 2 and venue.cancelled_watches == 0
        assert feed.of(WatcherReconnected) == []
        await stop(task)

    run(scenario())
