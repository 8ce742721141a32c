"""The simulated exchange: ccxt's shapes, determinism, each profile and fault, conservation."""

from __future__ import annotations

import asyncio
import decimal
import itertools
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sim import DEFAULT_MARKETS, Faults, OHLCVPath, SimExchange, VirtualClock, spot
from tests.ccxt_fixtures import replay

T = TypeVar("T")
D = Decimal


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- conformance: the same assertions on the sim and on real ccxt parses ------------------------


def kind(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def conforms(ours: dict[str, Any], theirs: dict[str, Any], optional: set[str]) -> list[str]:
    """Every field ccxt's parse has, ours has, with the same kind of value (None allowed on
    either side for the fields a venue may leave out)."""
    problems = []
    for key, value in theirs.items():
        if key not in ours:
            problems.append(f"missing {key}")
            continue
        a, b = kind(ours[key]), kind(value)
        if a != b and not (key in optional and "none" in (a, b)):
            problems.append(f"{key}: {a} vs ccxt's {b}")
    return problems


ORDER_OPTIONAL = {
    "clientOrderId",
    "lastTradeTimestamp",
    "lastUpdateTimestamp",
    "price",
    "average",
    "fee",
    "reduceOnly",
    "postOnly",
    "timeInForce",
    "triggerPrice",
    "stopPrice",
    "takeProfitPrice",
    "stopLossPrice",
    "remaining",
    "cost",
}
POSITION_OPTIONAL = {
    "id",
    "leverage",
    "liquidationPrice",
    "positionMargin",
    "marginRatio",
    "percentage",
    "entryPrice",
    "stopLossPrice",
    "takeProfitPrice",
    "initialMarginPercentage",
    "collateral",
    "notional",
    "markPrice",
    "maintenanceMargin",
    "maintenanceMarginPercentage",
    "initialMargin",
    "unrealizedPnl",
}


async def sim_structures() -> dict[str, Any]:
    ex = SimExchange(seed=3, leverage=5)
    ticker = await ex.fetch_ticker("BTC/USDT")
    resting = await ex.create_order(
        "BTC/USDT", "limit", "buy", 0.1, ticker["bid"] * 0.99, {"clientOrderId": "rest-1"}
    )
    await ex.create_order("BTC/USDT", "market", "sell", 0.05)
    await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    return {
        "order": await ex.fetch_order(resting["id"]),
        "closed": (await ex.fetch_closed_orders("BTC/USDT"))[0],
        "trade": (await ex.fetch_my_trades("BTC/USDT"))[0],
        "balance": await ex.fetch_balance(),
        "position": (await ex.fetch_positions())[0],
    }


def test_orders_trades_balances_and_positions_have_ccxts_shapes() -> None:
    sim = run(sim_structures())
    ccxt_orders = [
        replay("binance", "createOrder"),
        replay("binance", "fetchOrder"),
        *replay("binance", "fetchOpenOrders"),
        replay("bybit", "fetchOpenOrder"),
        replay("kraken", "fetchOrder"),
    ]
    for theirs in ccxt_orders:
        assert conforms(sim["order"], theirs, ORDER_OPTIONAL) == [], theirs["id"]
        assert conforms(sim["closed"], theirs, ORDER_OPTIONAL) == [], theirs["id"]
    for theirs in [*replay("binance", "fetchMyTrades"), *replay("bybit", "fetchMyTrades")]:
        assert conforms(sim["trade"], theirs, {"type", "takerOrMaker", "fee"}) == []
    theirs_balance = replay("binance", "fetchBalance")
    assert (
        conforms(
            sim["balance"],
            {
                k: v
                for k, v in theirs_balance.items()
                if k in ("info", "timestamp", "datetime", "free", "used", "total")
            },
            set(),
        )
        == []
    )
    assert set(sim["balance"]["BTC"]) == set(theirs_balance["LTC"]) == {"free", "used", "total"}
    assert (
        conforms(sim["position"], replay("binance", "fetchPositions")[0], POSITION_OPTIONAL) == []
    )
    # and the values hang together as ccxt's do
    order = sim["closed"]
    assert order["filled"] + order["remaining"] == pytest.approx(order["amount"])
    assert order["cost"] == pytest.approx(order["filled"] * order["average"])


def test_the_venue_adapters_mapping_reads_the_sims_structures() -> None:
    from adapters.observations import (
        balance_observed,
        order_observed,
        position_observed,
        trade_observed,
    )

    sim = run(sim_structures())
    order = order_observed(sim["closed"])
    assert order.order_id and order.filled is not None and order.status == "closed"
    fees = trade_observed(sim["trade"]).fees
    assert fees and all(f.currency is not None for f in fees)
    assert {b.currency for b in balance_observed(sim["balance"]).balances} >= {"BTC"}
    assert position_observed(sim["position"]).side == "long"


# -- determinism ------------------------------------------------------------------------------


async def session(seed: int, faults: Faults | None = None) -> list[Any]:
    ex = SimExchange(seed=seed, faults=faults)
    seen: list[Any] = []

    async def record(call: Callable[[], Awaitable[Any]]) -> None:
        try:
            seen.append(await call())
        except ccxt.BaseError as exc:
            seen.append(f"{type(exc).__name__}: {exc}")

    price = 3300.0
    for i in range(6):
        await record(lambda: ex.fetch_ticker("ETH/USDT"))
        if isinstance(seen[-1], dict):
            price = seen[-1]["bid"]
        await record(
            lambda p=price, i=i: ex.create_order(  # type: ignore[misc]
                "ETH/USDT",
                "limit",
                "buy" if i % 2 else "sell",
                0.5,
                p * (0.999 if i % 2 else 1.001),
                {"clientOrderId": f"c{i}"},
            )
        )
        await record(lambda: ex.watch_orders())
        await record(lambda: ex.watch_my_trades())
        await record(lambda: ex.fetch_balance())
    await record(lambda: ex.cancel_all_orders())
    await record(lambda: ex.fetch_ohlcv("ETH/USDT"))
    return seen


def test_one_seed_gives_identical_responses_byte_for_byte() -> None:
    first, second = run(session(7)), run(session(7))
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert json.dumps(run(session(8)), sort_keys=True) != json.dumps(first, sort_keys=True)
    noisy = Faults(timeout=0.2, duplicate=0.3, reorder=0.5, drop_stream=0.2, stale=0.3)
    assert json.dumps(run(session(7, noisy))) == json.dumps(run(session(7, noisy)))


# -- orders the way venues take them ----------------------------------------------------------


async def order_rules() -> None:
    ex = SimExchange(seed=1, balances={"USDT": 1000, "BTC": 0})
    ticker = await ex.fetch_ticker("BTC/USDT")
    with pytest.raises(ccxt.InsufficientFunds):
        await ex.create_order("BTC/USDT", "limit", "buy", 1, ticker["bid"])
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, ticker["ask"], {"postOnly": True})
    with pytest.raises(ccxt.BadSymbol):
        await ex.create_order("NOPE/USDT", "market", "buy", 1)
    with pytest.raises(ccxt.InvalidOrder):
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, None)
    first = await ex.create_order(
        "BTC/USDT", "limit", "buy", 0.001, ticker["bid"] * 0.9, {"clientOrderId": "mine"}
    )
    with pytest.raises(ccxt.DuplicateOrderId):
        await ex.create_order(
            "BTC/USDT", "limit", "buy", 0.001, ticker["bid"] * 0.9, {"clientOrderId": "mine"}
        )
    assert (await ex.fetch_order(None, params={"clientOrderId": "mine"}))["id"] == first["id"]
    ioc = await ex.create_order(
        "BTC/USDT", "limit", "buy", 0.001, ticker["bid"] * 0.9, {"timeInForce": "IOC"}
    )
    assert ioc["status"] == "expired" and ioc["filled"] == 0
    fok = await ex.create_order(
        "BTC/USDT", "limit", "buy", 0.002, ticker["ask"] * 1.01, {"timeInForce": "FOK"}
    )
    assert fok["status"] == "closed" and fok["filled"] == 0.002
    with pytest.raises(ccxt.InvalidOrder, match="reduce"):
        await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.001, params={"reduceOnly": True})
    await ex.cancel_order(first["id"])
    with pytest.raises(ccxt.OrderNotFound):
        await ex.cancel_order(first["id"])


def test_orders_are_taken_the_way_venues_take_them() -> None:
    run(order_rules())


async def partial_fills_across_price_moves() -> list[tuple[float, float]]:
    ex = SimExchange(seed=4, tick_seconds=60)
    price = (await ex.fetch_ticker("BTC/USDT"))["bid"]
    order = await ex.create_order("BTC/USDT", "limit", "buy", 0.8, price * 0.998)
    fills: list[tuple[float, float]] = []
    for _ in range(200):
        try:
            batch = await ex.watch_my_trades("BTC/USDT")
        except ccxt.RequestTimeout:  # nothing within the watch's patience: watch again
            continue
        fills.extend((trade["amount"], trade["price"]) for trade in batch)
        if (await ex.fetch_order(order["id"]))["status"] == "closed":
            break
    return fills


def test_a_resting_order_fills_in_parts_as_the_price_moves() -> None:
    fills = run(partial_fills_across_price_moves())
    assert len(fills) > 1
    assert sum(D(repr(a)) for a, _ in fills) == D("0.8")
    assert len({p for _, p in fills}) == 1  # a maker fills at its own price


def test_a_simulated_day_runs_in_seconds_on_the_virtual_clock() -> None:
    async def day() -> int:
        clock = VirtualClock()
        ex = SimExchange(seed=2, clock=clock, tick_seconds=60)
        start = clock.now_ms()
        while clock.now_ms() - start < 86_400_000:
            await ex.watch_ticker("BTC/USDT")
        return len(await ex.fetch_ohlcv("BTC/USDT", "1h"))

    assert run(day()) == 25  # 24 hours of candles, and the one begun


def test_prices_can_come_from_an_ohlcv_file(tmp_path: Path) -> None:
    path = tmp_path / "btc.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n0,100,101,99,100.5,1\n60000,100.5,103,100,102.5,1\n"
    )

    async def prices() -> list[float]:
        ex = SimExchange(prices=OHLCVPath.from_file("BTC/USDT", path))
        return [(await ex.watch_ticker("BTC/USDT"))["last"] for _ in range(3)]

    assert run(prices()) == [102.5, 102.5, 102.5]


# -- capability profiles ----------------------------------------------------------------------


@pytest.mark.parametrize("trades", [True, False])
def test_a_venue_without_trades_endpoints(trades: bool) -> None:
    async def check() -> None:
        ex = SimExchange(seed=1, trades=trades)
        assert ex.has["fetchMyTrades"] is trades and ex.has["watchMyTrades"] is trades
        await ex.create_order("BTC/USDT", "market", "buy", 0.01)
        calls = [ex.fetch_my_trades(), ex.watch_my_trades(), ex.fetch_order_trades("1000001")]
        for call in calls:
            if trades:
                assert await call
            else:
                with pytest.raises(ccxt.NotSupported):
                    await call
        assert (await ex.fetch_order("1000001"))["filled"] == 0.01  # orders still tell

    run(check())


@pytest.mark.parametrize("websocket", [True, False])
def test_a_venue_without_streams(websocket: bool) -> None:
    async def check() -> None:
        ex = SimExchange(seed=1, websocket=websocket)
        await ex.create_order("BTC/USDT", "market", "buy", 0.01)
        for name in (
            "watchOrders",
            "watchMyTrades",
            "watchBalance",
            "watchPositions",
            "watchTicker",
        ):
            assert ex.has[name] is websocket
        if websocket:
            assert await ex.watch_orders()
            assert (await ex.watch_balance())["BTC"]["total"] > 1
        else:
            with pytest.raises(ccxt.NotSupported):
                await ex.watch_orders()
            with pytest.raises(ccxt.NotSupported):
                await ex.watch_ticker("BTC/USDT")
        assert (await ex.fetch_open_orders()) == []  # polling works either way

    run(check())


@pytest.mark.parametrize("latency", [0.0, 0.25])
def test_latency_is_paid_in_clock_time(latency: float) -> None:
    async def elapsed() -> int:
        clock = VirtualClock()
        ex = SimExchange(clock=clock, latency=latency)
        start = clock.now_ms()
        for _ in range(4):
            await ex.fetch_balance()
        return clock.now_ms() - start

    assert run(elapsed()) == 4 * round(latency * 1000)


# -- faults: each happens when configured, never when not -------------------------------------


async def rest_calls(faults: Faults, n: int = 60) -> list[str]:
    ex = SimExchange(seed=5, faults=faults)
    outcomes = []
    for _ in range(n):
        try:
            await ex.fetch_balance()
            outcomes.append("ok")
        except ccxt.BaseError as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("timeout", "RequestTimeout"),
        ("rate_limit", "RateLimitExceeded"),
        ("unavailable", "ExchangeNotAvailable"),
    ],
)
def test_rest_faults_happen_when_configured_and_never_when_not(fault: str, error: str) -> None:
    assert set(run(rest_calls(Faults()))) == {"ok"}
    outcomes = run(rest_calls(Faults(**{fault: 0.3})))
    assert error in outcomes and "ok" in outcomes
    assert set(outcomes) == {"ok", error}


def test_a_timed_out_create_may_have_placed_the_order() -> None:
    async def check(faults: Faults) -> tuple[str, int]:
        ex = SimExchange(seed=1, faults=faults)
        try:
            await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"clientOrderId": "x"})
            outcome = "ok"
        except ccxt.RequestTimeout:
            outcome = "timeout"
        return outcome, len(ex.truth().fills)  # the venue's own books say

    assert run(check(Faults(timeout=1.0))) == ("timeout", 0)  # never reached the venue
    assert run(check(Faults(timeout_after=1.0))) == ("timeout", 1)  # done, answer lost
    assert run(check(Faults())) == ("ok", 1)


async def stream(faults: Faults, rounds: int = 30) -> tuple[list[list[str]], int, int]:
    """Order updates as a watcher sees them; and how many it missed, and errors."""
    ex = SimExchange(seed=9, faults=faults, partial_fills=False)
    seen: list[list[str]] = []
    errors = 0
    for i in range(rounds):
        await ex.create_order("ETH/USDT", "market", "buy" if i % 2 else "sell", 0.1)
        await ex.create_order("ETH/USDT", "market", "sell" if i % 2 else "buy", 0.1)
        try:
            seen.append([u["id"] for u in await ex.watch_orders()])
        except ccxt.NetworkError:
            errors += 1
    delivered = {i for batch in seen for i in batch}
    return seen, 2 * rounds - len(delivered), errors


def test_stream_faults_happen_when_configured_and_never_when_not() -> None:
    clean, missed, errors = run(stream(Faults()))
    assert missed == 0 and errors == 0
    assert all(len(b) == len(set(b)) and b == sorted(b) for b in clean)
    _, missed, errors = run(stream(Faults(drop_stream=0.3)))
    assert errors > 0 and missed > 0  # dropped updates are not replayed
    doubled, missed, _ = run(stream(Faults(duplicate=0.5)))
    assert missed == 0 and any(len(b) != len(set(b)) for b in doubled)
    reordered, missed, _ = run(stream(Faults(reorder=1.0)))
    assert missed == 0 and all(b == sorted(b, reverse=True) for b in reordered)


def test_stale_snapshots_happen_when_configured_and_never_when_not() -> None:
    async def balances(faults: Faults) -> list[float]:
        ex = SimExchange(seed=3, faults=faults)
        seen = []
        for _ in range(20):
            await ex.create_order("BTC/USDT", "market", "buy", 0.001)
            seen.append((await ex.fetch_balance())["BTC"]["total"])
        return seen

    fresh = run(balances(Faults()))
    assert fresh == sorted(fresh) and len(set(fresh)) == 20
    stale = run(balances(Faults(stale=0.5)))
    assert stale != fresh
    for i, seen in enumerate(stale):  # a stale answer is an earlier true one, never made up
        assert seen == fresh[i] or seen in fresh[:i]


# -- conservation -----------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("order"),
            st.sampled_from(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "BTC/USDT:USDT"]),
            st.sampled_from(["limit", "market"]),
            st.sampled_from(["buy", "sell"]),
            st.integers(1, 300),
            st.integers(-6, 6),
            st.sampled_from(["GTC", "IOC", "FOK"]),
            st.sampled_from(["", "reduceOnly", "postOnly"]),
        ),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("wait"), st.integers(1, 900)),
        st.tuples(st.just("leverage"), st.sampled_from([1, 2, 5, 20, 100])),
        st.tuples(  # against the position: part or all of it, or more (a flip)
            st.just("reduce"),
            st.sampled_from(["limit", "market"]),
            st.sampled_from([25, 50, 100, 150]),
            st.integers(-6, 6),
            st.booleans(),
        ),
    ),
    max_size=40,
)
START = {"USDT": D(3000), "BTC": D("0.05"), "ETH": D(1)}  # small: overdrafts are reachable


async def trade_randomly(steps: list[tuple[Any, ...]], seed: int) -> SimExchange:
    ex = SimExchange(seed=seed, balances=dict(START), leverage=3)
    for step in steps:
        try:
            if step[0] == "order":
                _, symbol, type_, side, size, offset, tif, flag = step
                ticker = await ex.fetch_ticker(symbol)
                price = ticker["bid"] * (1 + offset / 1000)
                amount = (
                    size / 2_000
                    if ":" in symbol  # up to 0.15 BTC: needs leverage on 3000 USDT
                    else (size / 10_000 if symbol.startswith("BTC") else size / 1000)
                )
                await ex.create_order(
                    symbol,
                    type_,
                    side,
                    amount,
                    price if type_ == "limit" else None,
                    {"timeInForce": tif, **({flag: True} if flag else {})},
                )
            elif step[0] == "cancel":
                open_orders = await ex.fetch_open_orders()
                if open_orders:
                    await ex.cancel_order(open_orders[step[1] % len(open_orders)]["id"])
            elif step[0] == "reduce":
                _, type_, percent, offset, reduce_only = step
                held = ex.venue.positions.get("BTC/USDT:USDT")
                if held is not None and held.contracts:
                    ticker = await ex.fetch_ticker("BTC/USDT:USDT")
                    await ex.create_order(
                        "BTC/USDT:USDT",
                        type_,
                        "sell" if held.contracts > 0 else "buy",
                        float(abs(held.contracts)) * percent / 100,
                        ticker["bid"] * (1 + offset / 1000) if type_ == "limit" else None,
                        {"reduceOnly": reduce_only},
                    )
            elif step[0] == "wait":
                await ex.clock.sleep(step[1])
            else:
                await ex.set_leverage(step[1], "BTC/USDT:USDT")
        except (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.OrderNotFound):
            pass
        venue = ex.venue  # never overdrawn, not even between two calls
        assert all(v >= 0 for v in venue.free.values()), (step, venue.free)
        assert all(v >= 0 for v in venue.used.values()), (step, venue.used)
    await ex.cancel_all_orders()
    return ex


def realized(fills: list[Any]) -> tuple[dict[str, Decimal], list[Decimal]]:
    """Contracts held and each fill's realized profit, worked out from the fills alone: a
    position's entry is the average price of what opened it (to 10 decimals, half-even), a
    reduction realizes (price - entry) per contract, long, or (entry - price), short."""
    held: dict[str, Decimal] = {}
    entry: dict[str, Decimal] = {}
    profits = []
    for fill in fills:
        signed = fill.amount if fill.side == "buy" else -fill.amount
        h, e = held.get(fill.symbol, D(0)), entry.get(fill.symbol, D(0))
        profit = D(0)
        if h and (h > 0) != (signed > 0):
            closing = min(abs(signed), abs(h))
            profit = closing * (fill.price - e) * (1 if h > 0 else -1)
            h += closing if h < 0 else -closing
            signed += closing if signed < 0 else -closing
            if h == 0:
                e = D(0)
        if signed:
            e = ((abs(h) * e + abs(signed) * fill.price) / (abs(h) + abs(signed))).quantize(
                D("1e-10"), decimal.ROUND_HALF_EVEN
            )
            h += signed
        held[fill.symbol], entry[fill.symbol] = h, e
        profits.append(profit)
    return held, profits


@settings(max_examples=500)
@given(steps=operations, seed=st.integers(0, 100))
def test_balances_and_positions_match_the_fills_no_money_made_or_lost(
    steps: list[tuple[Any, ...]], seed: int
) -> None:
    ex = run(trade_randomly(steps, seed))
    truth = ex.truth()
    expected = dict(START)
    perpetual = [f for f in truth.fills if ":" in f.symbol]
    contracts, profits = realized(perpetual)
    assert [f.realized_pnl for f in perpetual] == profits
    for fill in truth.fills:
        base, quote = fill.symbol.split(":")[0].split("/")
        sign = 1 if fill.side == "buy" else -1
        if ":" in fill.symbol:  # a linear perpetual: profit and fees in USDT, contracts held
            rate = D("0.0005") if fill.taker_or_maker == "taker" else D("0.0002")
            assert fill.fee == (fill.cost * rate).quantize(D("1e-8"))
            expected[quote] += fill.realized_pnl - fill.fee
        else:
            expected[base] += sign * fill.amount
            expected[quote] -= sign * fill.cost
            expected[fill.fee_currency] -= fill.fee
    for currency, amount in expected.items():
        balance = truth.balances[currency]
        assert balance["total"] == amount, currency
        assert balance["free"] >= 0 and balance["used"] >= 0, (currency, balance)
    held = {s: p["contracts"] for s, p in truth.positions.items()}
    assert held == {s: c for s, c in contracts.items() if c}
    if not truth.positions:  # nothing open, nothing locked
        assert all(b["used"] == 0 for b in truth.balances.values())


def test_a_liquidation_closes_the_position_and_conserves_money() -> None:
    drop = [[0, 100, 100, 100, 100, 1]] * 3 + [[0, 100, 100, 100, 100 - i, 1] for i in range(30)]
    prices = OHLCVPath({"BTC/USDT:USDT": drop})

    async def crash() -> SimExchange:
        ex = SimExchange(prices=prices, balances={"USDT": 1000}, leverage=10)
        await ex.create_order("BTC/USDT:USDT", "market", "buy", 5)
        for _ in range(40):
            await ex.clock.sleep(1)
            await ex.fetch_balance()
        return ex

    ex = run(crash())
    truth = ex.truth()
    assert not truth.positions
    liquidation = truth.fills[-1]
    assert liquidation.liquidation and liquidation.side == "sell"
    expected = D(1000) + sum((f.realized_pnl - f.fee for f in truth.fills), D(0))
    assert truth.balances["USDT"]["total"] == expected
    assert truth.balances["USDT"]["used"] == 0
    margin, fees = truth.fills[0].cost / 10, sum((f.fee for f in truth.fills), D(0))
    assert 0 < D(1000) - expected < margin + fees  # the loss: most of the margin, never more


def test_positions_stream_and_the_real_clock() -> None:
    from adapters.sim import RealClock

    async def check() -> tuple[list[dict[str, Any]], int]:
        ex = SimExchange(seed=1, leverage=2)
        await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.01)
        updates = await ex.watch_positions(["BTC/USDT:USDT"])
        real = SimExchange(seed=1, clock=RealClock())
        ticker = await real.fetch_ticker("BTC/USDT")
        return updates, ticker["timestamp"]

    updates, stamp = run(check())
    (position,) = updates
    assert (position["side"], position["contracts"], position["leverage"]) == ("short", 0.01, 2.0)
    assert position["liquidationPrice"] > position["entryPrice"]
    import time

    assert abs(stamp - time.time() * 1000) < 60_000  # a real clock tells the real time


# -- margin, reduce-only and leverage: what can never overdraw the account ---------------------

PERP = "BTC/USDT:USDT"


def assert_sound(ex: SimExchange) -> None:
    for currency, balance in ex.truth().balances.items():
        assert balance["free"] >= 0 and balance["used"] >= 0, (currency, balance)


def test_reduce_only_orders_never_add_up_to_more_than_the_position() -> None:
    async def check() -> SimExchange:
        ex = SimExchange(seed=5, balances={"USDT": 120}, leverage=1, partial_fills=False)
        await ex.create_order(PERP, "market", "buy", 0.001)
        ask = (await ex.fetch_ticker(PERP))["ask"]
        first = await ex.create_order(
            PERP, "limit", "sell", 0.001, ask * 1.001, {"reduceOnly": True}
        )
        with pytest.raises(ccxt.InvalidOrder, match="reduce"):  # the first covers the position
            await ex.create_order(PERP, "limit", "sell", 0.001, ask * 1.002, {"reduceOnly": True})
        await ex.create_order(PERP, "market", "sell", 0.001)  # closed by a plain order
        assert (await ex.fetch_order(first["id"]))["status"] == "canceled"
        await ex.clock.sleep(3600)  # the price may pass the canceled order's limit: no fill
        return ex

    ex = run(check())
    assert not ex.truth().positions and not ex.truth().open_orders
    assert_sound(ex)


def test_a_leverage_change_applies_to_later_orders_only() -> None:
    async def check() -> tuple[SimExchange, Decimal]:
        ex = SimExchange(seed=6, balances={"USDT": 1000}, leverage=10, partial_fills=False)
        bid = (await ex.fetch_ticker(PERP))["bid"]
        resting = await ex.create_order(PERP, "limit", "buy", 0.1, bid * 0.9995)
        await ex.set_leverage(1, PERP)
        for _ in range(600):
            if (await ex.fetch_order(resting["id"]))["status"] == "closed":
                break
            await ex.clock.sleep(10)
        assert (await ex.fetch_order(resting["id"]))["status"] == "closed"
        return ex, D(repr(resting["price"]))

    ex, price = run(check())
    position = ex.truth().positions[PERP]
    assert position["margin"] == D("0.1") * price / 10  # the order's own leverage
    assert_sound(ex)


def test_liquidation_is_where_the_positions_own_margin_runs_out() -> None:
    fall = [[0, 100, 100, 100, 100, 1]] * 3 + [
        [0, 100, 100, 100, 100 - i / 10, 1] for i in range(80)
    ]

    async def crash() -> tuple[SimExchange, list[Any]]:
        prices = OHLCVPath({PERP: fall})
        ex = SimExchange(prices=prices, balances={"USDT": 1000}, leverage=50, partial_fills=False)
        await ex.create_order(PERP, "market", "buy", 400)  # margin 800 at 50x
        await ex.set_leverage(1, PERP)
        await ex.create_order(PERP, "market", "buy", 0.001)  # adds 0.1 margin at 1x
        marks = []
        for _ in range(90):
            await ex.clock.sleep(1)
            marks.append((await ex.fetch_ticker(PERP))["last"])
        return ex, marks

    ex, marks = run(crash())
    truth = ex.truth()
    opening = [f for f in truth.fills if not f.liquidation]
    contracts = sum((f.amount for f in opening), D(0))
    entry = sum((f.cost for f in opening), D(0)) / contracts
    margin = opening[0].cost / 50 + opening[1].cost / 1
    expected = entry * D("1.005") - margin / contracts  # equity down to the maintenance margin
    (liquidation,) = [f for f in truth.fills if f.liquidation]
    assert abs(liquidation.price - expected) <= D("0.1")  # to the price tick
    first_below = next(i for i, mark in enumerate(marks) if D(repr(mark)) <= expected)
    assert liquidation.timestamp == truth.fills[0].timestamp + (first_below + 1) * 1000
    assert not truth.positions
    lost = D(1000) - truth.balances["USDT"]["total"]
    fees = sum((f.fee for f in truth.fills), D(0))
    kept = D("0.005") * entry * contracts + (liquidation.price - expected) * contracts
    # the margin, less the maintenance margin kept (to the division's last digit)
    assert abs(lost - (margin - kept + fees)) < D("1e-20")
    assert_sound(ex)


# -- the market does not react to being watched; streams lose nothing they should keep ---------


def test_a_price_depends_on_seed_and_time_only_not_on_what_was_asked() -> None:
    async def btc_at(minutes: int, meddle: bool) -> tuple[float, float]:
        ex = SimExchange(seed=11, tick_seconds=1)
        if meddle:  # a resting order, candles, another market's ticker: none moves BTC
            bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
            await ex.create_order("BTC/USDT", "limit", "buy", 0.001, bid * 0.5)
            await ex.fetch_ohlcv("ETH/USDT")
        await ex.clock.sleep(minutes * 60)
        if meddle:
            await ex.fetch_ohlcv("BTC/USDT", "1m")
        btc = (await ex.fetch_ticker("BTC/USDT"))["last"]
        eth = (await ex.fetch_ticker("ETH/USDT"))["last"]
        return btc, eth

    for minutes in (1, 17, 45):
        assert run(btc_at(minutes, False)) == run(btc_at(minutes, True))


def test_positions_of_one_symbol_stay_queued_for_their_own_watcher() -> None:
    from adapters.sim import DEFAULT_MARKETS, linear_perpetual

    eth = "ETH/USDT:USDT"
    markets = {**DEFAULT_MARKETS, eth: linear_perpetual(eth)}

    async def check() -> tuple[list[str], list[str]]:
        ex = SimExchange(seed=1, markets=markets, leverage=2, watch_timeout=5)
        await ex.create_order(PERP, "market", "buy", 0.01)
        await ex.create_order(eth, "market", "sell", 0.1)
        btc_updates = await ex.watch_positions([PERP])
        eth_updates = await ex.watch_positions([eth])
        return [u["symbol"] for u in btc_updates], [u["symbol"] for u in eth_updates]

    assert run(check()) == ([PERP], [eth])


def test_a_balance_watcher_gets_the_newest_balance_even_when_updates_are_reordered() -> None:
    async def check() -> None:
        ex = SimExchange(seed=3, faults=Faults(reorder=1.0, duplicate=0.5))
        for _ in range(10):
            await ex.create_order("BTC/USDT", "market", "buy", 0.001)
            await ex.create_order("BTC/USDT", "market", "buy", 0.002)
            seen = await ex.watch_balance()
            truth = ex.truth().balances["BTC"]["total"]
            assert D(repr(seen["BTC"]["total"])) == truth

    run(check())


def test_what_is_left_of_a_marketable_order_keeps_taking_at_the_touch() -> None:
    async def check() -> list[Any]:
        ex = SimExchange(seed=4, tick_seconds=1)
        ask = (await ex.fetch_ticker("BTC/USDT"))["ask"]
        order = await ex.create_order("BTC/USDT", "limit", "buy", 0.5, ask * 1.01)
        fills: list[tuple[float, str, float]] = []
        for _ in range(100):
            batch = await ex.watch_my_trades("BTC/USDT")
            ticker = await ex.fetch_ticker("BTC/USDT")
            fills.extend((t["price"], t["takerOrMaker"], ticker["ask"]) for t in batch)
            if (await ex.fetch_order(order["id"]))["status"] == "closed":
                break
        return fills

    fills = run(check())
    assert len(fills) > 1  # partly filled when placed, the rest later
    for price, role, ask in fills:
        assert role == "taker" and price == ask  # at the ask of its tick, not its limit


def test_candles_open_on_the_timeframe_and_close_at_the_ticker_price() -> None:
    async def check() -> tuple[list[list[float]], float, list[list[float]], list[list[float]]]:
        clock = VirtualClock(start_ms=1_735_689_630_000)  # 30 s into a minute
        ex = SimExchange(seed=2, clock=clock, tick_seconds=7)
        await clock.sleep(600)
        candles = await ex.fetch_ohlcv("BTC/USDT", "1m")
        last = (await ex.fetch_ticker("BTC/USDT"))["last"]
        two = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=2)
        since = await ex.fetch_ohlcv("BTC/USDT", "1m", since=int(candles[3][0]) - 1, limit=3)
        return candles, last, two, since

    candles, last, two, since = run(check())
    assert all(c[0] % 60_000 == 0 for c in candles)
    assert [b[0] - a[0] for a, b in itertools.pairwise(candles)] == [60_000] * 10
    assert candles[-1][4] == last
    assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in candles)
    for c in candles:  # every price on the market's 0.01 tick
        assert all(D(repr(v)) % D("0.01") == 0 for v in c[1:5])
    assert two == candles[-2:] and since == candles[3:6]


def test_an_order_the_account_can_no_longer_pay_for_is_canceled_not_filled() -> None:
    async def check() -> tuple[SimExchange, dict[str, Any]]:
        ex = SimExchange(seed=8, balances={"USDT": 100}, leverage=1, partial_fills=False)
        await ex.create_order(PERP, "market", "buy", 0.001)
        ask = (await ex.fetch_ticker(PERP))["ask"]
        # It would close the long, so it needs no margin when placed...
        resting = await ex.create_order(PERP, "limit", "sell", 0.001, ask * 1.0005)
        await ex.create_order(PERP, "market", "sell", 0.001)  # ...but the long closes now
        await ex.create_order("BTC/USDT", "market", "buy", 0.0009)  # and the cash is spent
        for _ in range(3600):
            if (await ex.fetch_order(resting["id"]))["status"] != "open":
                break
            await ex.clock.sleep(1)
        return ex, await ex.fetch_order(resting["id"])

    ex, order = run(check())
    assert order["status"] == "canceled" and order["filled"] == 0  # no short it can't margin
    assert not ex.truth().positions
    assert_sound(ex)


# -- since and limit: the oldest `limit` from `since` on, as ccxt's filter_by_since_limit -------

Fetch = Callable[[int | None, int | None], Awaitable[list[dict[str, Any]]]]


async def paginate(fetch: Fetch, since: int, limit: int) -> list[dict[str, Any]]:
    """Page through ``fetch`` the way ccxt users do: since = the last item's timestamp + 1."""
    seen: list[dict[str, Any]] = []
    for _ in range(1000):
        page = await fetch(since, limit)
        stamps = [item["timestamp"] for item in page]
        assert len(page) <= limit and stamps == sorted(stamps)
        assert all(stamp >= since for stamp in stamps)
        if not page:
            return seen
        seen.extend(page)
        since = stamps[-1] + 1
    raise AssertionError("pagination did not end")


async def history(gaps: list[int]) -> tuple[SimExchange, int]:
    """A market order (closed, one trade) and a resting order (open) every gap ms."""
    ex = SimExchange(seed=12, partial_fills=False)
    start = ex.clock.now_ms()
    bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
    for i, gap in enumerate(gaps):
        await ex.clock.sleep(gap / 1000)
        await ex.create_order("BTC/USDT", "market", "buy" if i % 2 else "sell", 0.001)
        await ex.create_order("BTC/USDT", "limit", "buy", 0.001, bid * 0.5)  # never fills
    return ex, start


@settings(max_examples=60)
@given(
    gaps=st.lists(st.integers(1, 5_000), min_size=1, max_size=25),
    limit=st.integers(1, 6),
    skip=st.integers(0, 10),
)
def test_paging_on_since_visits_every_trade_and_order_once_in_order(
    gaps: list[int], limit: int, skip: int
) -> None:
    async def check() -> None:
        ex, start = await history(gaps)
        since = start + sum(gaps[:skip]) + 1  # just after the skip-th item's time: from it on
        fetches: list[tuple[Fetch, Fetch]] = [
            (
                lambda s, n: ex.fetch_my_trades("BTC/USDT", s, n),
                lambda s, n: ex.fetch_my_trades(),
            ),
            (
                lambda s, n: ex.fetch_closed_orders("BTC/USDT", s, n),
                lambda s, n: ex.fetch_closed_orders(),
            ),
            (
                lambda s, n: ex.fetch_open_orders("BTC/USDT", s, n),
                lambda s, n: ex.fetch_open_orders(),
            ),
        ]
        for page, everything in fetches:
            every = await everything(None, None)
            assert len(every) == len(gaps)
            expected = [item["id"] for item in every if item["timestamp"] >= since]
            assert expected == [item["id"] for item in every[min(skip, len(gaps)) :]]
            assert [item["id"] for item in await paginate(page, since, limit)] == expected

    run(check())


def test_since_and_limit_give_the_oldest_from_since_and_limit_alone_the_newest() -> None:
    async def check() -> None:
        ex, _ = await history([1_000] * 10)
        trades = await ex.fetch_my_trades()
        closed = await ex.fetch_closed_orders()
        opened = await ex.fetch_open_orders()
        for every, fetch in (
            (trades, ex.fetch_my_trades),
            (closed, ex.fetch_closed_orders),
            (opened, ex.fetch_open_orders),
        ):
            stamps = [item["timestamp"] for item in every]
            assert len(every) == 10 and stamps == sorted(set(stamps))

            async def ids(since: int | None, limit: int | None, f: Any = fetch) -> list[str]:
                return [item["id"] for item in await f("BTC/USDT", since, limit)]

            assert await ids(stamps[3], 2) == [every[3]["id"], every[4]["id"]]  # at since on
            assert await ids(stamps[3] + 1, 2) == [every[4]["id"], every[5]["id"]]
            assert await ids(stamps[8], 5) == [every[8]["id"], every[9]["id"]]
            assert await ids(None, 2) == [every[8]["id"], every[9]["id"]]  # the newest
            assert await ids(stamps[3], None) == [item["id"] for item in every[3:]]
            assert await ids(stamps[-1] + 1, 3) == []
            with pytest.raises(ccxt.BadRequest):
                await ids(stamps[3], -1)

    run(check())


def test_an_orders_trades_page_on_since_like_all_trades() -> None:
    async def check() -> None:
        ex = SimExchange(seed=4, tick_seconds=1)
        ask = (await ex.fetch_ticker("BTC/USDT"))["ask"]
        order = await ex.create_order("BTC/USDT", "limit", "buy", 0.5, ask * 1.01)
        while (await ex.fetch_order(order["id"]))["status"] == "open":
            await ex.clock.sleep(1)
        await ex.create_order("BTC/USDT", "market", "sell", 0.1)  # another order's trade
        every = await ex.fetch_order_trades(order["id"])
        assert len(every) >= 4 and all(t["order"] == order["id"] for t in every)
        stamps = [t["timestamp"] for t in every]

        async def page(since: int | None, limit: int | None) -> list[dict[str, Any]]:
            return await ex.fetch_order_trades(order["id"], "BTC/USDT", since, limit)

        assert await paginate(page, stamps[0], 1) == every
        assert await paginate(page, stamps[1], 3) == every[1:]
        assert [t["id"] for t in await page(stamps[1], 2)] == [t["id"] for t in every[1:3]]
        assert await page(None, 2) == every[-2:]

    run(check())


def test_closed_orders_page_on_when_they_were_placed_as_ccxt_filters_them() -> None:
    async def check() -> None:
        ex = SimExchange(seed=12, partial_fills=False)
        bid = (await ex.fetch_ticker("BTC/USDT"))["bid"]
        await ex.clock.sleep(1)
        early = await ex.create_order("BTC/USDT", "limit", "buy", 0.001, bid * 0.5)
        await ex.clock.sleep(1)
        market = await ex.create_order("BTC/USDT", "market", "buy", 0.001)
        await ex.clock.sleep(1)
        await ex.cancel_order(early["id"])  # closed last, placed first
        closed = await ex.fetch_closed_orders()
        assert [o["id"] for o in closed] == [early["id"], market["id"]]
        assert closed[0]["lastUpdateTimestamp"] > closed[1]["timestamp"]

        async def page(since: int | None, limit: int | None) -> list[dict[str, Any]]:
            return await ex.fetch_closed_orders("BTC/USDT", since, limit)

        assert await paginate(page, early["timestamp"], 1) == closed
        assert await page(early["timestamp"] + 1, None) == closed[1:]

    run(check())


# -- amounts: truncated to the market's step, as ccxt's amount_to_precision ---------------------


def ccxt_rounding() -> Any:
    """ccxt's own amount_to_precision / price_to_precision on the sim's markets (no network)."""
    exchange = ccxt.Exchange({"precisionMode": ccxt.TICK_SIZE})
    exchange.set_markets(list(DEFAULT_MARKETS.values()))
    return exchange


def test_selling_a_whole_balance_sends_the_amount_truncated_to_the_step() -> None:
    async def check() -> tuple[dict[str, Any], dict[str, Any], SimExchange]:
        ex = SimExchange(seed=1, balances={"USDT": 0, "BTC": 0.00019}, partial_fills=False)
        ask = (await ex.fetch_ticker("BTC/USDT"))["ask"]
        resting = await ex.create_order("BTC/USDT", "limit", "sell", 0.00019, ask * 2)
        held = ex.truth().balances["BTC"]
        assert (held["used"], held["free"]) == (D("0.0001"), D("0.00009"))
        await ex.cancel_order(resting["id"])
        sold = await ex.create_order("BTC/USDT", "market", "sell", 0.00019)
        return resting, sold, ex

    resting, sold, ex = run(check())
    assert resting["amount"] == 0.0001 and resting["info"]["origQty"] == "0.0001"
    assert sold["amount"] == sold["filled"] == 0.0001 and sold["status"] == "closed"
    assert ex.truth().balances["BTC"]["total"] == D("0.00009")  # the dust stays


amounts = st.one_of(
    st.floats(min_value=1e-6, max_value=2.0),
    st.decimals(min_value=0, max_value=2, places=5).map(float),  # halves of 0.0001 steps
    st.decimals(min_value=0, max_value=2, places=4).map(float),  # halves of 0.001 steps
)


@settings(max_examples=300)
@given(symbol=st.sampled_from(sorted(DEFAULT_MARKETS)), amount=amounts)
def test_order_amounts_are_what_ccxts_amount_to_precision_sends(symbol: str, amount: float) -> None:
    try:
        expected: Decimal | None = D(ccxt_rounding().amount_to_precision(symbol, amount))
    except ccxt.InvalidOrder:  # truncates to 0
        expected = None
    minimum = D(repr(DEFAULT_MARKETS[symbol]["limits"]["amount"]["min"]))

    async def place() -> dict[str, Any]:
        ex = SimExchange(seed=1, balances={"USDT": 10**7, "BTC": 10, "ETH": 10})
        bid = (await ex.fetch_ticker(symbol))["bid"]
        return await ex.create_order(symbol, "limit", "buy", amount, bid * 0.5)  # rests

    if expected is None or expected < minimum:
        with pytest.raises(ccxt.InvalidOrder):
            run(place())
    else:
        order = run(place())
        assert D(order["info"]["origQty"]) == expected and order["amount"] == float(expected)


def test_an_amount_that_truncates_to_nothing_or_below_the_minimum_is_an_invalid_order() -> None:
    sol = spot("SOL/USDT", step="0.01", min_amount="0.1")
    xrp = spot("XRP/USDT", tick="0.0001", step="1")
    xrp["limits"]["amount"]["min"] = None  # ccxt markets often state no minimum
    markets = {**DEFAULT_MARKETS, "SOL/USDT": sol, "XRP/USDT": xrp}

    async def check() -> None:
        ex = SimExchange(seed=1, markets=markets, balances={"USDT": 10_000, "SOL": 1, "XRP": 10})
        with pytest.raises(
            ccxt.InvalidOrder, match=r"0\.00006 of BTC/USDT truncates to 0 .*0\.0001"
        ):
            await ex.create_order("BTC/USDT", "market", "buy", 0.00006)  # not up to 0.0001
        with pytest.raises(ccxt.InvalidOrder, match=r"0\.09 .*below .* minimum amount 0\.1"):
            await ex.create_order("SOL/USDT", "market", "buy", 0.099)  # not up to 0.1
        with pytest.raises(ccxt.InvalidOrder, match="XRP/USDT truncates to 0"):
            await ex.create_order("XRP/USDT", "market", "sell", 0.7)
        for nothing in (0, -1):
            with pytest.raises(ccxt.InvalidOrder, match="must be > 0"):
                await ex.create_order("XRP/USDT", "market", "sell", nothing)
        sold = await ex.create_order("XRP/USDT", "market", "sell", 1.9)
        assert sold["amount"] == sold["filled"] == 1.0
        assert ex.truth().balances["XRP"]["total"] == 9
        assert not ex.truth().open_orders and len(ex.truth().fills) == 1  # nothing else placed

    run(check())


@settings(max_examples=300)
@given(
    symbol=st.sampled_from(sorted(DEFAULT_MARKETS)),
    price=st.one_of(
        st.floats(min_value=1e-4, max_value=3_000.0),
        st.decimals(min_value=0, max_value=3_000, places=3).map(float),  # halves of 0.01 ticks
        st.decimals(min_value=0, max_value=3_000, places=2).map(float),  # halves of 0.1 ticks
    ),
)
def test_limit_prices_are_what_ccxts_price_to_precision_sends(symbol: str, price: float) -> None:
    try:
        expected: Decimal | None = D(ccxt_rounding().price_to_precision(symbol, price))
    except ccxt.InvalidOrder:  # rounds to 0
        expected = None

    async def place() -> dict[str, Any]:
        ex = SimExchange(seed=1, balances={"USDT": 10**7})
        return await ex.create_order(symbol, "limit", "buy", 0.01, price)  # rests: far below

    if expected is None or price <= 0:
        with pytest.raises(ccxt.InvalidOrder, match="price"):
            run(place())
    else:
        order = run(place())
        assert order["status"] == "open" and D(order["info"]["price"]) == expected


def test_a_faithful_virtual_clock_is_one_time_shared_by_concurrent_sleepers() -> None:
    clock = VirtualClock(faithful=True)
    start = clock.now_ms()
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, seconds: float, times: int) -> None:
        for _ in range(times):
            await clock.sleep(seconds)
            woke.append((name, clock.now_ms() - start))

    async def main() -> None:
        doomed = asyncio.ensure_future(clock.sleep(0.5))
        await asyncio.sleep(0)
        doomed.cancel()  # a cancelled sleeper wakes nobody and holds nothing up
        await asyncio.gather(*(sleeper(f"w{i}", 1.0, 10) for i in range(5)), sleeper("f", 2.5, 2))

    asyncio.run(main())
    assert clock.now_ms() - start == 10_000  # five sleepers of 10 s in parallel: 10 s, not 50
    assert [t for name, t in woke if name == "f"] == [2_500, 5_000]
    assert [t for _, t in woke] == sorted(t for _, t in woke)  # woken in deadline order
    assert [t for name, t in woke if name == "w3"] == [1_000 * k for k in range(1, 11)]


def test_the_default_virtual_clock_jumps_by_every_sleep() -> None:
    clock = VirtualClock()
    start = clock.now_ms()

    async def main() -> None:
        await asyncio.gather(*(clock.sleep(1.0) for _ in range(5)))

    asyncio.run(main())
    assert clock.now_ms() - start == 5_000


@settings(max_examples=50)
@given(steps=operations, seed=st.integers(0, 100))
def test_the_venues_arithmetic_does_not_depend_on_the_callers_decimal_context(
    steps: list[tuple[Any, ...]], seed: int
) -> None:
    # ccxt sets the caller's context to round half up on every decimal_to_precision; a spot
    # demo run before a margin one used to change the margin one's balances.
    plain = run(trade_randomly(steps, seed)).truth()
    context = decimal.getcontext()
    context.prec, context.rounding = 6, decimal.ROUND_UP
    skewed = run(trade_randomly(steps, seed)).truth()
    assert (skewed.balances, skewed.positions, skewed.fills) == (
        plain.balances,
        plain.positions,
        plain.fills,
    )
