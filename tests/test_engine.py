"""The live engine against the simulated exchange, in virtual time (issue 9's "Show")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.sim import Faults, SimExchange
from adapters.venue import CcxtVenue
from eventsrc import (
    MISSING,
    Engine,
    Fill,
    LocalCheckFailed,
    OrderRejected,
    State,
    Trace,
    replay_from_trace,
    state_hash,
)

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


def truth_totals(ex: SimExchange) -> dict[str, Decimal]:
    return {c: b["total"] for c, b in ex.truth().balances.items() if b["total"]}


def filled_by_order(state: State) -> dict[str, tuple[Decimal, Decimal]]:
    return {oid: (o.filled, o.cost) for oid, o in state.orders.items() if o.filled}


def truth_filled_by_order(ex: SimExchange) -> dict[str, tuple[Decimal, Decimal]]:
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


@pytest.mark.parametrize("trades", [True, False], ids=["trades", "no-trades-endpoint"])
def test_final_state_equals_the_venues_truth(tmp_path: Path, trades: bool) -> None:
    path = tmp_path / "trace"
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
