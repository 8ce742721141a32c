"""The live engine against the simulated exchange, in virtual time (issue 9's "Show")."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import attrs
import pytest

from adapters.sim import Faults, SimExchange, Truth, VirtualClock
from adapters.sim.markets import DEFAULT_MARKETS, RandomWalk
from adapters.venue import CcxtVenue
from eventsrc import (
    MISSING,
    BalanceObserved,
    Decision,
    Engine,
    EngineError,
    Fill,
    Limits,
    LocalCheckFailed,
    Missing,
    Note,
    OrderRejected,
    OrderRequested,
    State,
    SyncCompleted,
    Trace,
    TradeObserved,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    WatcherStopped,
    replay_from_trace,
    state_hash,
)
from eventsrc.venue import Feed

D = Decimal
SPOT = ("BTC/USDT", "ETH/USDT")
PERP = "BTC/USDT:USDT"


def run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(work())


def replays_to(path: Path, live: State) -> None:
    """After every test: the recorded trace folds to what the live engine held."""
    with Trace.open(path) as trace:
        assert state_hash(replay_from_trace(trace)) == state_hash(live)


def totals(state: State) -> dict[str, Decimal]:
    return {c: v.total for c, v in state.cash.items() if v.total}


class HasTruth(Protocol):
    """A venue whose truth tests compare with: ``SimExchange``, or the simulated Binance
    server (``adapters.sim.server``: in this process or another)."""

    def truth(self) -> Truth: ...


def truth_totals(ex: HasTruth) -> dict[str, Decimal]:
    return {c: b["total"] for c, b in ex.truth().balances.items() if b["total"]}


def filled_by_order(state: State) -> dict[str, tuple[Decimal, Decimal]]:
    return {oid: (o.filled, o.cost) for oid, o in state.orders.items() if o.filled}


def truth_filled_by_order(ex: HasTruth) -> dict[str, tuple[Decimal, Decimal]]:
    found: dict[str, tuple[Decimal, Decimal]] = {}
    for fill in ex.truth().fills:
        filled, cost = found.get(fill.order_id, (D(0), D(0)))
        found[fill.order_id] = (filled + fill.amount, cost + fill.cost)
    return found


def test_create_order_answers_a_fill_missing_or_none(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=7)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            ticker = await ex.fetch_ticker("BTC/USDT")
            # A market buy fills: a Fill of it.
            filled = await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market")
            assert isinstance(filled, Fill) and filled.amount > 0
            # A limit buy far below the market rests: MISSING.
            low = D(str(round(ticker["bid"] * 0.5, 1)))
            resting = await engine.create_order("BTC/USDT", "buy", D("0.01"), low, waitfor=1.0)
            assert resting is MISSING
            # Not enough cash: refused before it reaches the venue, the reason recorded.
            broke = await engine.create_order("BTC/USDT", "buy", D(1000), low, waitfor=1.0)
            assert broke is None
            refusals = [e for e in engine.trace[:] if isinstance(e, LocalCheckFailed)]
            assert refusals and "not enough USDT" in refusals[-1].reason
            # The venue refuses (a post-only order that would take): None, its reason recorded.
            high = D(str(round(ticker["ask"] * 1.5, 1)))
            taker = await engine.create_order(
                "BTC/USDT", "buy", D("0.001"), high, post_only=True, waitfor=1.0
            )
            assert taker is None
            assert any(isinstance(e, OrderRejected) for e in engine.trace[:])
            await engine.cancel_all()
        return engine.state

    live = run(main)
    replays_to(path, live)


def test_synced_fetches_a_fill_no_stream_reported(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=3, websocket=False)

    async def main() -> None:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=SPOT,
            main_currency="USDT",
            clock=ex.clock,
            watchers=False,
        ) as engine:
            ticker = await ex.fetch_ticker("BTC/USDT")
            price = D(str(ticker["ask"]))  # at the touch: fills as the price moves, not at once
            for _ in range(20):
                answer = await engine.create_order(
                    "BTC/USDT", "buy", D("0.001"), price, waitfor=30.0, synced=True
                )
                if isinstance(answer, Fill):
                    break
            else:
                pytest.fail("no limit order at the touch filled in 20 tries")
            # No watcher runs, and the create's answer showed no fill: only the sync saw it.
            order = engine.state.orders[answer.order_id]
            assert order.filled > 0
        replays_to(path, engine.state)

    run(main)


@pytest.mark.parametrize(
    ("trades", "faithful"),
    [(True, False), (False, False), (True, True)],
    ids=["trades", "no-trades-endpoint", "faithful-clock-with-latency"],
)
def test_final_state_equals_the_venues_truth(tmp_path: Path, trades: bool, faithful: bool) -> None:
    path = tmp_path / "trace"
    if faithful:  # one shared virtual time, each call taking 20 ms of it
        clock = VirtualClock(faithful=True)
        ex = SimExchange(seed=11, trades=trades, clock=clock, latency=0.02)
    else:
        ex = SimExchange(seed=11, trades=trades)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for i in range(6):
                side = "buy" if i % 2 == 0 else "sell"
                await engine.create_order("BTC/USDT", side, D("0.01"), type="market")
                await engine.create_order("ETH/USDT", side, D("0.1"), type="market")
            await engine.cancel_all()
            await engine.sync()
            assert totals(engine.state) == truth_totals(ex)
            assert filled_by_order(engine.state) == truth_filled_by_order(ex)
            if not trades:
                fills = [f for o in engine.state.orders.values() for f in o.fills]
                assert fills and all(f.emulated for f in fills)
        return engine.state

    replays_to(path, run(main))


def test_without_websockets_watchers_poll_and_miss_nothing(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=5, websocket=False)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for _ in range(3):
                await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market")
            await engine.sync()
            assert totals(engine.state) == truth_totals(ex)
            started = [e for e in engine.trace[:] if e.kind == "watcher_started"]
            assert started and not any(getattr(e, "streaming", True) for e in started)
        return engine.state

    replays_to(path, run(main))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_with_every_fault_on_no_intent_becomes_two_orders(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "trace"
    faults = Faults(
        timeout=0.05,
        timeout_after=0.1,
        rate_limit=0.05,
        unavailable=0.05,
        drop_stream=0.05,
        duplicate=0.1,
        reorder=0.1,
        stale=0.05,
    )
    ex = SimExchange(seed=seed, faults=faults)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for i in range(8):
                symbol = SPOT[i % 2]
                side = "buy" if i % 3 else "sell"
                amount = D("0.01") if symbol == "BTC/USDT" else D("0.1")
                await engine.create_order(symbol, side, amount, type="market", waitfor=3.0)
            await engine.cancel_all()
            for _ in range(5):  # a sync may itself meet a fault: until it has seen everything
                await engine.sync()
                if totals(engine.state) == truth_totals(ex):
                    break
            assert totals(engine.state) == truth_totals(ex)
            assert filled_by_order(engine.state) == truth_filled_by_order(ex)
        return engine.state

    live = run(main)
    # Every client order id reached the venue at most once.
    placed = [o.client_order_id for o in ex.venue.orders.values()]
    assert len(placed) == len(set(placed))
    replays_to(path, live)


def test_margin_long_add_reduce_flip_close(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=9)

    def held(state: State) -> dict[tuple[str, str], Decimal]:
        return {k: p.contracts for k, p in state.positions.items()}

    def truth_held() -> dict[tuple[str, str], Decimal]:
        found = {}
        for symbol, p in ex.truth().positions.items():
            contracts = p["contracts"]
            assert contracts is not None
            found[(symbol, "long" if contracts > 0 else "short")] = abs(contracts)
        return found

    async def main() -> State:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=(PERP,),
            main_currency="USDT",
            margin=True,
            clock=ex.clock,
        ) as engine:
            for side, amount in (
                ("buy", "0.01"),
                ("buy", "0.02"),
                ("sell", "0.01"),
                ("sell", "0.05"),
            ):
                answer = await engine.create_order(PERP, side, D(amount), type="market")
                assert isinstance(answer, Fill)
                await engine.fetch_positions()
                assert held(engine.state) == truth_held()
            assert list(held(engine.state)) == [(PERP, "short")]
            closed = await engine.close_position(PERP)
            assert isinstance(closed, Fill)
            await engine.fetch_positions()
            assert held(engine.state) == truth_held() == {}
        return engine.state

    replays_to(path, run(main))


def test_an_abandoned_engine_is_recovered_by_the_next_one_with_no_order_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=13, faults=Faults(timeout_after=0.5))

    async def abandon() -> None:
        async def trade() -> None:
            async with Engine.open(
                path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
            ) as engine:
                while True:
                    await engine.create_order("BTC/USDT", "buy", D("0.001"), type="market")

        task = asyncio.ensure_future(trade())
        for _ in range(400):  # let it run a while, then cancel it mid-command
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def resume() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            assert totals(engine.state) == truth_totals(ex)
            assert filled_by_order(engine.state) == truth_filled_by_order(ex)
        return engine.state

    run(abandon)
    live = run(resume)
    placed = [o.client_order_id for o in ex.venue.orders.values()]
    assert len(placed) == len(set(placed))
    replays_to(path, live)


def test_secrets_reach_neither_the_trace_nor_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=2, faults=Faults(rate_limit=0.2))
    key, secret = "KEY-a1b2c3d4e5f6", "SECRET-9f8e7d6c5b4a"
    ex.apiKey, ex.secret = key, secret  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market")

    run(main)
    stored = b"".join(f.read_bytes() for f in path.rglob("*") if f.is_file())
    for value in (key, secret):
        assert value.encode() not in stored
        assert value not in caplog.text


def real_trades(state: State) -> set[str]:
    return {trade_id for o in state.orders.values() for trade_id in o.real}


def test_dropped_streams_leave_gap_markers_and_the_backfill_loses_no_fill(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=21, faults=Faults(drop_stream=0.3))

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for i in range(6):
                side = "buy" if i % 2 == 0 else "sell"
                # Not synced: only the watchers (streams, and their backfills) report fills.
                await engine.create_order(
                    "BTC/USDT", side, D("0.01"), type="market", waitfor=0.5, synced=False
                )
            truth = {f.id for f in ex.truth().fills}
            for _ in range(600):
                if real_trades(engine.state) == truth:
                    break
                await ex.clock.sleep(1.0)
            assert real_trades(engine.state) == truth
            assert totals(engine.state) == truth_totals(ex)
            events = engine.trace[:]
            dropped = [e for e in events if isinstance(e, WatcherError)]
            gaps = [e for e in events if isinstance(e, WatcherReconnected)]
            assert any(e.error == "NetworkError" for e in dropped)
            assert gaps and all(g.gap_start_ts is not None for g in gaps)
            # A backfill after a gap recorded trades by REST.
            first_gap = min(g.seq for g in gaps if g.seq is not None)
            assert any(
                isinstance(e, TradeObserved)
                and e.source == "fetch_my_trades"
                and (e.seq or 0) > first_gap
                for e in events
            )
        return engine.state

    replays_to(path, run(main))


def test_a_venue_order_the_trace_lacks_is_adopted_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=4)

    async def main() -> State:
        ticker = await ex.fetch_ticker("ETH/USDT")
        low = round(ticker["bid"] * 0.5, 2)
        placed = await ex.create_order("ETH/USDT", "limit", "buy", 0.1, low)
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            order = engine.state.orders[placed["id"]]
            assert (order.status, order.amount) == ("open", D("0.1"))
            assert (
                engine.state.cash["USDT"].used
                == truth_totals(ex)["USDT"] - (ex.truth().balances["USDT"]["free"])
            )
            assert await engine.cancel_order(placed["id"], "ETH/USDT")
            assert ex.truth().open_orders == []
        return engine.state

    replays_to(path, run(main))


def test_local_checks_answer_none_with_the_reason_and_send_nothing(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    markets = copy.deepcopy(DEFAULT_MARKETS)
    markets["BTC/USDT"]["limits"]["amount"]["min"] = 0.001
    markets["ETH/USDT"]["limits"]["cost"]["min"] = 10.0
    ex = SimExchange(seed=6, markets=markets)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            step = engine.markets["BTC/USDT"].amount_step
            assert step == D("0.0001") and engine.markets["ETH/USDT"].min_cost == 10
            cases: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
                (("BTC/USDT", "buy", step / 10), {"type": "market"}, "rounds to nothing"),
                (("BTC/USDT", "buy", step * 5), {"type": "market"}, "below the market's min"),
                (("ETH/USDT", "buy", D("0.01"), D(100)), {}, "cost 1.00 is below"),
                (("ETH/USDT", "sell", D(10_000)), {"type": "market"}, "not enough ETH"),
                (("BTC/USDT", "buy", D(1000), D(90_000)), {}, "not enough USDT"),
            ]
            for args, kwargs, reason in cases:
                assert await engine.create_order(*args, **kwargs) is None
                refused = [e for e in engine.trace[:] if isinstance(e, LocalCheckFailed)]
                assert reason in refused[-1].reason, (reason, refused[-1].reason)
            assert ex.venue.orders == {}
            assert len(engine.state.requests) == len(cases)
            assert all(r.status == "rejected" for r in engine.state.requests.values())
            assert not engine.state.anomalies
        return engine.state

    replays_to(path, run(main))


def test_arguments_no_order_can_have_are_a_value_error_and_record_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=6)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            before = len(engine.trace)
            cases: list[tuple[tuple[Any, ...], dict[str, Any], str]] = [
                (("BTC/USDT", "buy", D("0.01")), {"type": "stop"}, "order type"),
                (("BTC/USDT", "hold", D("0.01")), {"type": "market"}, "side"),
                (("BTC/USDT", "buy", D("0.01")), {}, "needs a price"),
                (("BTC/USDT", "buy", D(-1)), {"type": "market"}, "amount"),
                (("BTC/USDT", "buy", 0.01), {"type": "market"}, "amount"),
                (("BTC/USDT", "buy", D("0.01"), D("NaN")), {}, "price"),
                (("DOGE/USDT", "buy", D(1)), {"type": "market"}, "universe"),
            ]
            for args, kwargs, message in cases:
                with pytest.raises(ValueError, match=message):
                    await engine.create_order(*args, **kwargs)
            assert len(engine.trace) == before and ex.venue.orders == {}
        return engine.state

    replays_to(path, run(main))


def test_a_universe_the_venue_does_not_list_or_contracts_on_spot_fail_to_open(
    tmp_path: Path,
) -> None:
    ex = SimExchange(seed=6)

    async def main(universe: tuple[str, ...], path: Path) -> None:
        async with Engine.open(
            path, CcxtVenue(ex), universe=universe, main_currency="USDT", clock=ex.clock
        ):
            pytest.fail("opened")

    with pytest.raises(ValueError, match=r"no market 'BTC/USTD' \(did you mean BTC/USDT"):
        asyncio.run(main(("BTC/USTD",), tmp_path / "a"))
    with pytest.raises(ValueError, match="margin=True"):
        asyncio.run(main(("BTC/USDT", PERP), tmp_path / "b"))
    for name in ("a", "b"):  # nothing was recorded of a run that never started
        with Trace.open(tmp_path / name) as trace:
            assert len(trace) == 0
    assert ex.venue.orders == {}


def test_risk_limits_refuse_before_sending_and_record_the_decision(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=8)
    # the sim's account holds 1 BTC to begin with: a spot position is what is held
    limits = Limits(max_order_notional=D(2000), max_position=D("1.015"), max_open_orders=1)

    async def main() -> State:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=SPOT,
            main_currency="USDT",
            clock=ex.clock,
            limits=limits,
        ) as engine:
            ticker = await ex.fetch_ticker("BTC/USDT")
            low = D(str(round(ticker["bid"] * 0.5, 1)))
            # notional: 0.1 BTC at half the price is still far over 2000 USDT
            assert await engine.create_order("BTC/USDT", "buy", D("0.1"), low) is None
            # open orders: one rests, the next is refused
            assert await engine.create_order("BTC/USDT", "buy", D("0.01"), low) is MISSING
            assert await engine.create_order("ETH/USDT", "buy", D("0.1"), D(100)) is None
            await engine.cancel_all()
            # position: 1.01 is held after this buy; 0.02 more would make 1.03
            assert isinstance(
                await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market"), Fill
            )
            assert await engine.create_order("BTC/USDT", "buy", D("0.02"), type="market") is None
            # ... but reducing it is always allowed
            assert isinstance(
                await engine.create_order("BTC/USDT", "sell", D("0.01"), type="market"), Fill
            )
            decisions = [
                e.values["reason"]
                for e in engine.trace[:]
                if isinstance(e, Decision) and e.name == "risk_refused"
            ]
            assert [str(r).split(" ")[1] for r in decisions] == ["notional", "1", "position"]
            assert len(ex.venue.orders) == 3  # the resting one and the two market orders
        return engine.state

    replays_to(path, run(main))


def test_halt_cancels_everything_flattens_refuses_new_orders_and_alerts(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=10)
    alerts: list[tuple[str, str]] = []

    async def main() -> State:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=(PERP,),
            main_currency="USDT",
            margin=True,
            clock=ex.clock,
            alert=lambda what, message, event: alerts.append((what, message)),
        ) as engine:
            ticker = await ex.fetch_ticker(PERP)
            low = D(str(round(ticker["bid"] * 0.5, 1)))
            assert await engine.create_order(PERP, "buy", D("0.01"), low) is MISSING
            assert isinstance(
                await engine.create_order(PERP, "buy", D("0.02"), type="market"), Fill
            )
            await engine.halt("drawdown", flatten=True)
            truth = ex.truth()
            assert truth.open_orders == [] and truth.positions == {}
            assert not any(p.contracts for p in engine.state.positions.values())
            assert await engine.create_order(PERP, "buy", D("0.01"), type="market") is None
            refused = [e for e in engine.trace[:] if isinstance(e, LocalCheckFailed)]
            assert refused[-1].reason == "halted: drawdown"
            assert engine.halted == "drawdown"
            assert any(isinstance(e, Decision) and e.name == "halt" for e in engine.trace[:])
        return engine.state

    replays_to(path, run(main))
    assert ("halt", "drawdown") in alerts


class Funding:
    """A user's watcher: notes a funding rate every 8 hours; its second run dies once."""

    name = "funding"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, feed: Feed) -> None:
        self.runs += 1
        await feed.put(Note(f"funding run {self.runs}", source=self.name))
        if self.runs == 1:
            raise ConnectionError("funding feed lost")
        while True:
            await feed.clock.sleep(8 * 3600)
            await feed.put(Note("funding 0.0001", source=self.name))


class Trader:
    """A strategy: buys once when it first sees a BTC price, and its task then fails."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.bought: Fill | Missing | None = None

    def on_event(self, engine: Engine, event: Any) -> None:
        assert event.seq is not None and engine.state.seq == event.seq  # after the fold
        self.seen.append(event.seq)

    async def run(self, engine: Engine) -> None:
        while "BTC/USDT" not in engine.state.last_price:
            await engine.clock.sleep(1.0)
        self.bought = await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market")
        raise RuntimeError("strategy bug")


def test_user_watchers_and_strategies_are_supervised_and_their_failures_recorded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=12)
    funding, trader = Funding(), Trader()

    async def main() -> State:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=SPOT,
            main_currency="USDT",
            clock=ex.clock,
            strategy=trader,
        ) as engine:
            engine.watch(funding)
            for _ in range(1000):
                if trader.bought is not None and funding.runs >= 2:
                    break
                await ex.clock.sleep(1.0)
            notes = [e.text for e in engine.trace[:] if isinstance(e, Note)]
            assert notes[:2] == ["funding run 1", "funding run 2"]
            errors = [e for e in engine.trace[:] if isinstance(e, (WatcherError, EngineError))]
            assert any(
                isinstance(e, WatcherError)
                and e.watcher == "funding"
                and e.error == "ConnectionError"
                for e in errors
            )
            for _ in range(100):
                if any(isinstance(e, EngineError) and e.where == "strategy" for e in errors):
                    break
                await ex.clock.sleep(1.0)
                errors = [e for e in engine.trace[:] if isinstance(e, EngineError)]
            assert any(
                isinstance(e, EngineError)
                and e.error == "RuntimeError"
                and "strategy bug" in e.message
                for e in errors
            )
            assert isinstance(trader.bought, Fill)
            # on_event saw every event after its fold, in order
            assert trader.seen == sorted(trader.seen) and len(trader.seen) > 10
        return engine.state

    replays_to(path, run(main))


class LosesItsCancellation:
    """A polling watcher whose venue call is cancelled just as the call's own HTTP timeout fires:
    aiohttp (under ccxt) then uncancels the task and raises TimeoutError instead
    (aio-libs/aiohttp#5979, seen in the soak test), which the watcher takes for a venue failure
    and polls on. It loses the first cancellation only, and gives up after ``patience`` polls
    (so that an engine that never cancels it again fails the test instead of hanging it)."""

    def __init__(self, name: str = "loses", patience: int = 100) -> None:
        self.name = name
        self.patience = patience
        self.lost = 0
        self.polls_after = 0
        self.ended = ""

    async def run(self, feed: Feed) -> None:
        while True:
            try:
                await feed.clock.sleep(1.0)  # a poll
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self.lost or task is None:
                    self.ended = "cancelled"
                    raise
                self.lost += 1
                task.uncancel()  # what aiohttp's timer does: now a TimeoutError, not cancelled
                continue
            if self.lost:
                self.polls_after += 1
                if self.polls_after >= self.patience:
                    self.ended = "gave up"
                    return


def test_a_task_that_loses_its_cancellation_is_cancelled_again_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=12, clock=VirtualClock(faithful=True))
    loses = LosesItsCancellation()

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            engine.watch(loses)
            await ex.clock.sleep(5.0)
        return engine.state

    state = run(main)
    assert loses.lost == 1 and loses.ended == "cancelled"
    assert loses.polls_after == 0  # cancelled again before its next poll
    replays_to(path, state)


class LosingOrdersWatcher(CcxtVenue):
    """A venue whose orders watchers lose their first cancellation."""

    def __init__(self, exchange: Any) -> None:
        super().__init__(exchange)
        self.made: list[LosesItsCancellation] = []

    def watcher(self, stream: str, symbol: str | None = None) -> Any:
        if stream != "orders":
            return super().watcher(stream, symbol)
        self.made.append(LosesItsCancellation(f"orders:{symbol}"))
        return self.made[-1]


def test_an_idle_watcher_that_loses_its_cancellation_is_retired_all_the_same(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=14, clock=VirtualClock(faithful=True))
    venue = LosingOrdersWatcher(ex)

    async def main() -> State:
        async with Engine.open(
            path, venue, universe=SPOT, main_currency="USDT", clock=ex.clock, idle_timeout=60.0
        ) as engine:
            await engine.create_order("ETH/USDT", "buy", D("0.1"), type="market")
            (watcher,) = venue.made
            for _ in range(1000):
                if watcher.ended:
                    break
                await ex.clock.sleep(1.0)
            assert watcher.lost == 1 and watcher.ended == "cancelled"
            assert watcher.polls_after == 0
            stopped = [e for e in engine.trace[:] if isinstance(e, WatcherStopped)]
            assert [(e.watcher, e.reason) for e in stopped] == [
                ("orders:ETH/USDT", "idle"),
                ("trades:ETH/USDT", "idle"),
            ]
        return engine.state

    replays_to(path, run(main))


def test_order_watchers_start_with_the_first_order_and_retire_when_idle(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=14)

    async def main() -> State:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=SPOT,
            main_currency="USDT",
            clock=ex.clock,
            idle_timeout=60.0,
        ) as engine:

            def started() -> set[str]:
                return {e.watcher for e in engine.trace[:] if isinstance(e, WatcherStarted)}

            for _ in range(100):
                if "balance" in started():
                    break
                await ex.clock.sleep(0.1)
            assert "balance" in started() and not any(w.startswith("orders:") for w in started())
            await engine.create_order("ETH/USDT", "buy", D("0.1"), type="market")
            assert {"orders:ETH/USDT", "trades:ETH/USDT"} <= started()
            assert not any(w.endswith("BTC/USDT") and w.startswith("orders") for w in started())
            for _ in range(1000):
                stopped = {
                    e.watcher
                    for e in engine.trace[:]
                    if isinstance(e, WatcherStopped) and e.reason == "idle"
                }
                if len(stopped) == 2:
                    break
                await ex.clock.sleep(1.0)
            assert stopped == {"orders:ETH/USDT", "trades:ETH/USDT"}
        return engine.state

    replays_to(path, run(main))


def test_the_daily_loss_limit_stops_new_orders_once_reached(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=15, prices=RandomWalk(15, volatility=0.0))  # prices never move

    async def main() -> State:
        async with Engine.open(
            path,
            CcxtVenue(ex),
            universe=SPOT,
            main_currency="USDT",
            clock=ex.clock,
            limits=Limits(max_daily_loss=D("0.5")),
            tickers=True,
        ) as engine:
            for _ in range(100):  # every currency held needs a price to value the equity
                if {"BTC/USDT", "ETH/USDT"} <= set(engine.state.last_price):
                    break
                await ex.clock.sleep(0.1)
            # the fee of a buy (0.1% of ~940 USDT) is more than 0.5 USDT lost
            assert isinstance(
                await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market"), Fill
            )
            await engine.fetch_balance()
            assert await engine.create_order("ETH/USDT", "buy", D("0.1"), type="market") is None
            refused = [e for e in engine.trace[:] if isinstance(e, LocalCheckFailed)]
            assert refused[-1].reason.startswith("risk: lost ")
        return engine.state

    replays_to(path, run(main))


def test_a_sync_records_what_changed_not_again_what_the_trace_holds(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=16)

    async def main() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for side in ("buy", "sell", "buy"):
                await engine.create_order("BTC/USDT", side, D("0.01"), type="market")
            await engine.sync()
            before = len(engine.trace)
            await engine.sync()
            again = engine.trace[before:]
            looked_back = [
                e for e in again if e.source in ("fetch_closed_orders", "fetch_my_trades")
            ]
            assert looked_back == []  # three closed orders and their trades: known already
            assert any(e.kind == "sync_started" for e in again)
            (done,) = [e for e in again if isinstance(e, SyncCompleted)]
            assert done.differences == 0
        return engine.state

    replays_to(path, run(main))


class OmitsZeros(CcxtVenue):
    """A venue whose whole balance leaves out what is zero (as binance's, kraken's do)."""

    async def fetch_balance(self) -> list[Any]:
        events = await super().fetch_balance()
        return [
            attrs.evolve(e, balances=tuple(b for b in e.balances if b.total))
            for e in events
            if isinstance(e, BalanceObserved)
        ]


def test_a_fetched_balance_that_leaves_a_currency_out_holds_it_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    ex = SimExchange(seed=17, balances={"USDT": 100_000, "BTC": 1})  # no ETH at all

    async def main() -> State:
        async with Engine.open(
            path, OmitsZeros(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            assert engine.state.cash["ETH"].total == 0  # listed as zero, not unknown
            # ETH bought then all of it sold: the next whole balance, silent on ETH, says 0
            bought = await engine.create_order("ETH/USDT", "buy", D("0.1"), type="market")
            assert isinstance(bought, Fill)
            held = engine.state.cash["ETH"].total
            assert held > 0
            sold = await engine.create_order("ETH/USDT", "sell", held, type="market")
            assert isinstance(sold, Fill)
            await engine.fetch_balance()
            assert engine.state.cash["ETH"].total == truth_totals(ex).get("ETH", D(0))
            [report] = [
                e
                for e in engine.trace.tail(1, kinds=["balance_observed"])
                if isinstance(e, BalanceObserved)
            ]
            assert {b.currency: b.total for b in report.balances}["ETH"] == 0  # as recorded
        return engine.state

    replays_to(path, run(main))


def test_a_client_order_id_the_trace_knows_never_places_a_second_order(tmp_path: Path) -> None:
    """An intent named by its own client order id, retried (after a restart, say), is one
    order: an order the trace knows is answered, not placed again; a request recorded but
    never answered is looked up first, and sent only if the venue has no order under it."""
    path = tmp_path / "trace"
    ex = SimExchange(seed=7)

    async def first() -> None:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            fill = await engine.create_order(
                "BTC/USDT", "buy", D("0.01"), type="market", client_order_id="intent-1"
            )
            assert isinstance(fill, Fill)
            again = await engine.create_order(
                "BTC/USDT", "buy", D("0.01"), type="market", client_order_id="intent-1"
            )
            assert isinstance(again, Fill) and again.order_id == fill.order_id  # not placed again
            # A crash came after this request was recorded and before it was sent.
            await engine.record(
                OrderRequested("intent-2", "buy", "market", D("0.01"), None, asset="BTC/USDT")
            )

    async def second() -> State:
        async with Engine.open(
            path, CcxtVenue(ex), universe=SPOT, main_currency="USDT", clock=ex.clock
        ) as engine:
            for _ in range(2):  # the venue has no intent-2: sent, once
                placed = await engine.create_order(
                    "BTC/USDT", "buy", D("0.01"), type="market", client_order_id="intent-2"
                )
                assert isinstance(placed, Fill)
            again = await engine.create_order(
                "BTC/USDT", "buy", D("0.01"), type="market", client_order_id="intent-1"
            )
            assert isinstance(again, Fill)
            assert totals(engine.state) == truth_totals(ex)
        return engine.state

    run(first)
    live = run(second)
    placed = sorted(o.client_order_id or "" for o in ex.venue.orders.values())
    assert placed == ["intent-1", "intent-2"]
    replays_to(path, live)
