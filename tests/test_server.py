"""The simulated Binance server (adapters/sim/server.py) through an unmodified ccxt.binance.

Every test talks real HTTP over 127.0.0.1: to a server in this process (``SimServer``), or in a
subprocess (``start_server``) where the point is the process boundary.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import ccxt
import pytest

from adapters.sim.server import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    ServerFaults,
    ServerTruth,
    SimServer,
    binance_client,
    fault_schedule,
    start_server,
)
from adapters.venue import CcxtVenue, venue_error
from adapters.watchers import WatcherSettings
from eventsrc import Engine, Fill, State, Trace, WatcherStarted
from eventsrc.clock import WallClock
from eventsrc.state import TERMINAL
from eventsrc.venue import Unreachable
from tests.test_engine import (
    filled_by_order,
    real_trades,
    replays_to,
    totals,
    truth_filled_by_order,
    truth_totals,
)

D = Decimal
SPOT = ("BTC/USDT", "ETH/USDT")
FAST = 0.05
"""Seconds a tick: the price moves 20 times a second."""


def run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(work())


@asynccontextmanager
async def served(
    server: SimServer, *, timeout_ms: int = 10_000, **client: Any
) -> AsyncIterator[Any]:
    """The server on a free loopback port, and a ccxt client of it (markets loaded)."""
    async with server.running():
        exchange = binance_client(server.url, timeout_ms=timeout_ms, **client)
        try:
            await exchange.load_markets()
            yield exchange
        finally:
            await exchange.close()


def open_ids(server: SimServer) -> list[str]:
    return sorted(str(o["id"]) for o in server.truth().open_orders)


# -- endpoints ------------------------------------------------------------------------------


def test_every_endpoint_through_ccxt_equals_the_truth() -> None:
    server = SimServer(seed=4, tick_seconds=FAST)

    async def main() -> None:
        async with served(server) as ex:
            # markets: the venue's, with its precision and limits
            assert sorted(ex.markets) == list(SPOT)
            btc = ex.markets["BTC/USDT"]
            assert (btc["precision"]["amount"], btc["precision"]["price"]) == (0.0001, 0.01)
            assert btc["limits"]["amount"]["min"] == 0.0001 and btc["spot"] and btc["active"]
            # time and ticker
            assert abs(await ex.fetch_time() - time.time() * 1000) < 5_000
            ticker = await ex.fetch_ticker("BTC/USDT")
            assert 0 < ticker["bid"] < ticker["ask"]
            # a market buy fills at once; its FULL answer carries the fill
            bought = await ex.create_order(
                "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "m-1"}
            )
            truth = server.truth()
            (fill,) = truth.fills
            assert (bought["id"], bought["clientOrderId"]) == (fill.order_id, "m-1")
            assert (bought["status"], bought["filled"]) == ("closed", 0.01)
            assert [t["price"] for t in bought["trades"]] == [float(fill.price)]
            # a limit buy far below the market rests; a post-only one too
            low = round(ticker["bid"] * 0.5, 2)
            resting = await ex.create_order(
                "BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "l-1"}
            )
            maker = await ex.create_order(
                "ETH/USDT", "limit", "sell", 0.1, 99_999.0, {"postOnly": True}
            )
            assert resting["status"] == maker["status"] == "open" and maker["postOnly"]
            # open orders, of a market and of all
            assert sorted(o["id"] for o in await ex.fetch_open_orders()) == open_ids(server)
            assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT")] == [resting["id"]]
            # an order by id and by client order id
            by_id = await ex.fetch_order(resting["id"], "BTC/USDT")
            by_cid = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "l-1"})
            assert by_id["id"] == by_cid["id"] == resting["id"]
            assert (by_id["price"], by_id["amount"], by_id["status"]) == (low, 0.01, "open")
            # cancel
            canceled = await ex.cancel_order(resting["id"], "BTC/USDT")
            assert canceled["status"] == "canceled"
            assert await ex.cancel_all_orders("ETH/USDT")
            assert open_ids(server) == []
            # every order and every trade, as the truth has them
            truth = server.truth()
            every = await ex.fetch_orders("BTC/USDT", since=0)
            every += await ex.fetch_orders("ETH/USDT")
            assert {(o["id"], o["clientOrderId"], o["status"]) for o in every} == {
                (o["id"], o["client_order_id"], o["status"]) for o in truth.orders
            }
            closed = await ex.fetch_closed_orders("BTC/USDT")
            assert [o["id"] for o in closed] == [bought["id"]]
            trades = await ex.fetch_my_trades("BTC/USDT", since=0)
            assert [
                (t["id"], t["order"], D(str(t["amount"])), D(str(t["price"]))) for t in trades
            ] == [(f.id, f.order_id, f.amount, f.price) for f in truth.fills]
            assert trades[0]["fee"] == {"cost": float(fill.fee), "currency": "BTC"}
            assert len(await ex.fetch_order_trades(bought["id"], "BTC/USDT")) == 1
            # the balance, exactly (ccxt's info keeps Binance's strings)
            balance = await ex.fetch_balance()
            for row in balance["info"]["balances"]:
                venue = truth.balances[row["asset"]]
                assert (D(row["free"]), D(row["locked"])) == (venue["free"], venue["used"])
            assert D(balance["info"]["balances"][0]["free"]) == D("1.00999")  # 0.01 less fees

    run(main)


def test_limit_orders_fill_as_time_passes_and_the_paging_sees_them() -> None:
    server = SimServer(seed=6, tick_seconds=0.02, partial_fills=False)

    async def main() -> None:
        async with served(server) as ex:
            ticker = await ex.fetch_ticker("ETH/USDT")
            placed = await ex.create_order("ETH/USDT", "limit", "buy", 0.5, ticker["ask"])
            deadline = time.monotonic() + 30
            while True:  # at the touch: fills when the price comes down to it
                order = await ex.fetch_order(placed["id"], "ETH/USDT")
                if order["status"] == "closed":
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"a limit order at the touch did not fill in 30 s: {order}")
                await asyncio.sleep(0.02)
            fills = server.truth().fills
            assert len(fills) == 1, fills  # no partial fills asked for
            fill = fills[0]
            assert order["filled"] == 0.5 and fill.price <= D(str(placed["price"]))
            trades = await ex.fetch_my_trades("ETH/USDT", since=fill.timestamp, limit=1)
            assert [t["id"] for t in trades] == [fill.id]
            assert await ex.fetch_my_trades("ETH/USDT", since=fill.timestamp + 1) == []

    run(main)


def test_a_cancel_answer_keeps_the_orders_own_client_order_id() -> None:
    """Binance answers a cancel with ``clientOrderId``: the CANCEL's id (random unless one is
    sent), and the order's own as ``origClientOrderId``; ccxt reads the first. The events
    must name the order's."""
    server = SimServer(seed=7, tick_seconds=FAST)

    async def main() -> None:
        async with served(server) as ex:
            low = round((await ex.fetch_ticker("BTC/USDT"))["bid"] * 0.5, 2)
            placed = await ex.create_order(
                "BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "mine-1"}
            )
            events = await CcxtVenue(ex).cancel_order("BTC/USDT", placed["id"])
            named = {type(e).__name__: getattr(e, "client_order_id", None) for e in events}
            assert named == {"CancelObserved": "mine-1", "OrderObserved": "mine-1"}

    run(main)


# -- errors ---------------------------------------------------------------------------------


def test_binance_errors_map_to_ccxts_exceptions() -> None:
    server = SimServer(seed=2, tick_seconds=FAST)

    async def main() -> None:
        async with served(server) as ex:
            with pytest.raises(ccxt.OrderNotFound, match="-2011"):  # cancel: unknown order
                await ex.cancel_order("999", "BTC/USDT")
            with pytest.raises(ccxt.OrderNotFound, match="-2013"):  # fetch: does not exist
                await ex.fetch_order("999", "BTC/USDT")
            with pytest.raises(ccxt.OrderNotFound, match="-2013"):
                await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "nobody"})
            with pytest.raises(ccxt.InsufficientFunds):
                await ex.create_order("BTC/USDT", "market", "buy", 50.0)
            ticker = await ex.fetch_ticker("BTC/USDT")
            with pytest.raises(ccxt.OrderImmediatelyFillable):  # post-only that would take
                await ex.create_order(
                    "BTC/USDT", "limit", "buy", 0.01, ticker["ask"] * 1.1, {"postOnly": True}
                )
            # a client order id an open order holds: refused, never placed twice
            low = round(ticker["bid"] * 0.5, 2)
            first = await ex.create_order(
                "BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "dup"}
            )
            with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
                await ex.create_order(
                    "BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "dup"}
                )
            assert server.truth().client_order_ids() == ["dup"]
            # once that order is over, Binance takes the id again: the truth shows it twice
            await ex.cancel_order(first["id"], "BTC/USDT")
            with pytest.raises(ccxt.OrderNotFound, match="-2011"):  # not open any more
                await ex.cancel_order(first["id"], "BTC/USDT")
            again = await ex.create_order(
                "BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "dup"}
            )
            assert server.truth().client_order_ids() == ["dup", "dup"]
            found = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "dup"})
            assert found["id"] == again["id"]  # the newest order of that id
            # a timestamp outside the recvWindow
            ex.options["timeDifference"] = 60_000
            with pytest.raises(ccxt.InvalidNonce, match="-1021"):
                await ex.fetch_balance()

        # bad signature, no key, unknown key: each a fresh client (ccxt takes -2015 after a
        # first success for a temporary ban)
        async with server.running():
            for key, secret, code in (
                (DEFAULT_API_KEY, "wrong-secret", "-1022"),
                ("", DEFAULT_SECRET, "-2014"),
                ("someone-else", DEFAULT_SECRET, "-2015"),
            ):
                ex = binance_client(server.url, key, secret)
                ex.markets = None
                try:
                    await ex.load_markets()  # public: no key needed
                    if not key:
                        ex.apiKey = ""  # ccxt refuses to sign without one: send it bare
                        ex.check_required_credentials = lambda error=True: True
                    with pytest.raises(ccxt.AuthenticationError, match=code):
                        await ex.fetch_balance()
                finally:
                    await ex.close()

    run(main)


def test_the_signature_covers_the_query_then_the_body_as_binance_checks_it() -> None:
    server = SimServer(seed=1, tick_seconds=FAST)
    secret = DEFAULT_SECRET.encode()

    def signed(query: str, body: str) -> str:
        return hmac.new(secret, (query + body).encode(), hashlib.sha256).hexdigest()

    async def main() -> None:
        async with server.running(), aiohttp.ClientSession() as http:
            stamp = int(time.time() * 1000)
            query = urllib.parse.urlencode({"symbol": "BTCUSDT", "side": "BUY"})
            body = urllib.parse.urlencode(
                {"type": "MARKET", "quantity": "0.0100", "timestamp": stamp}
            )
            headers = {
                "X-MBX-APIKEY": DEFAULT_API_KEY,
                "Content-Type": "application/x-www-form-urlencoded",
            }
            url = f"{server.url}/api/v3/order?{query}"
            # signed over the body alone: refused, nothing placed
            wrong = f"{body}&signature={signed('', body)}"
            async with http.post(url, data=wrong, headers=headers) as answer:
                assert (answer.status, await answer.json()) == (
                    400,
                    {"code": -1022, "msg": "Signature for this request is not valid."},
                )
            assert server.truth().orders == []
            right = f"{body}&signature={signed(query, body)}"
            async with http.post(url, data=right, headers=headers) as answer:
                placed = await answer.json()
                assert answer.status == 200 and placed["status"] == "FILLED", placed
            assert [o["id"] for o in server.truth().orders] == [str(placed["orderId"])]

    run(main)


# -- faults ---------------------------------------------------------------------------------


def test_faults_are_injected_on_the_seeded_schedule() -> None:
    faults = ServerFaults(rate_limit=0.15, ban=0.1, server_error=0.15, reset=0.1, slow_after=0.1)
    server = SimServer(seed=21, faults=faults, tick_seconds=FAST)
    expected = fault_schedule(21, faults, 60)
    assert set(expected) == {None, "rate_limit", "ban", "server_error", "reset", "slow_after"}
    assert expected == fault_schedule(21, faults, 60)  # deterministic per seed
    assert expected != fault_schedule(22, faults, 60)

    async def main() -> None:
        async with server.running(), aiohttp.ClientSession() as http:
            for _ in range(50):  # public, not a create or cancel: *_after faults do nothing
                try:
                    async with http.get(f"{server.url}/api/v3/time") as answer:
                        await answer.read()
                except aiohttp.ClientConnectionError:
                    pass
        # aiohttp (under ccxt too) sends a GET again when the connection is closed under it:
        # the schedule is of the requests as they arrive
        arrived = server.requests
        assert arrived > 50
        schedule = fault_schedule(21, faults, arrived)
        assert schedule[:60] == expected[:arrived]
        due = [(i + 1, k) for i, k in enumerate(schedule) if k is not None and k != "slow_after"]
        assert [(n, kind) for n, kind, _ in server.fault_log] == due
        injected = [kind for _, kind in due]
        assert server.truth().faults == {
            kind: injected.count(kind) for kind in sorted(set(injected))
        }

    run(main)


def _surfaces(exc: BaseException) -> None:
    """What the engine makes of it: the call may or may not have happened."""
    assert isinstance(venue_error(exc), Unreachable)


@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        ("rate_limit", ccxt.DDoSProtection),  # 429 (ccxt: DDoSProtection for 429 and 418)
        ("ban", ccxt.DDoSProtection),
        ("reset", ccxt.ExchangeNotAvailable),
        ("slow", ccxt.RequestTimeout),
    ],
)
def test_each_fault_surfaces_as_ccxts_exception(kind: str, raised: type[Exception]) -> None:
    server = SimServer(seed=3, tick_seconds=FAST)

    async def main() -> None:
        async with served(server, timeout_ms=300) as ex:
            server.faults = ServerFaults(**{kind: 1.0}, delay=0.6)  # type: ignore[arg-type]
            with pytest.raises(raised) as caught:
                await ex.create_order("BTC/USDT", "market", "buy", 0.01)
            _surfaces(caught.value)
            assert server.truth().orders == []  # before the venue: nothing placed
            assert server.truth().faults == {kind: 1}
        if kind in ("rate_limit", "ban"):
            server.faults = ServerFaults(**{kind: 1.0})  # type: ignore[arg-type]
            async with (
                server.running(),
                aiohttp.ClientSession() as http,
                http.get(f"{server.url}/api/v3/time") as answer,
            ):
                assert answer.status == (429 if kind == "rate_limit" else 418)
                assert answer.headers["Retry-After"] == "1"
                assert (await answer.json())["code"] == -1003

    run(main)


def test_server_errors_are_500_502_and_503_each_unreachable() -> None:
    server = SimServer(seed=5, tick_seconds=FAST)
    raised: dict[str, type[BaseException]] = {}

    async def main() -> None:
        async with served(server) as ex:
            server.faults = ServerFaults(server_error=1.0)
            for _ in range(12):
                try:
                    await ex.fetch_balance()
                except ccxt.BaseError as exc:
                    _surfaces(exc)
                    said = str(exc)
                    status = next(s for s in ("-1001", "502 Bad Gateway", "-1008") if s in said)
                    raised[status] = type(exc)
        assert server.truth().faults == {"server_error": 12}

    run(main)
    # 500 and 503 carry Binance's codes; 502 is a gateway's HTML page
    assert raised == {
        "-1001": ccxt.OperationFailed,
        "502 Bad Gateway": ccxt.ExchangeNotAvailable,
        "-1008": ccxt.OperationFailed,
    }


@pytest.mark.parametrize("kind", ["slow_after", "reset_after"])
def test_a_create_and_a_cancel_take_effect_though_the_answer_is_lost(kind: str) -> None:
    server = SimServer(seed=8, tick_seconds=FAST)

    async def main() -> None:
        async with served(server, timeout_ms=300) as ex:
            low = round((await ex.fetch_ticker("BTC/USDT"))["bid"] * 0.5, 2)
            server.faults = ServerFaults(**{kind: 1.0}, delay=0.6)  # type: ignore[arg-type]
            with pytest.raises(ccxt.NetworkError) as caught:
                await ex.create_order("BTC/USDT", "limit", "buy", 0.01, low, {"clientOrderId": "a"})
            _surfaces(caught.value)
            (placed,) = server.truth().open_orders
            assert placed["client_order_id"] == "a"
            # aiohttp sends a DELETE again, once, on a new connection when the first is closed
            # under it: that one finds the order canceled already ("Unknown order sent.")
            lost = ccxt.NetworkError if kind == "slow_after" else ccxt.OrderNotFound
            with pytest.raises(lost):
                await ex.cancel_order(placed["id"], "BTC/USDT")
            assert open_ids(server) == []
            assert server.truth().faults == {kind: 2}
            found = await ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "a"})
            assert found["status"] == "canceled"  # reads are not creates: they answer

    run(main)


# -- the subprocess -------------------------------------------------------------------------


def _gone(pid: int, seconds: float) -> bool:
    """Whether ``pid`` is gone (or a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_the_subprocess_serves_keeps_its_state_across_restarts_and_stops(tmp_path: Path) -> None:
    state = tmp_path / "venue.pickle"
    with start_server(seed=9, tick_seconds=FAST, state=state) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.alive()

        async def place() -> str:
            ex = binance_client(server.url)
            try:
                low = round((await ex.fetch_ticker("BTC/USDT"))["bid"] * 0.5, 2)
                order = await ex.create_order("BTC/USDT", "limit", "buy", 0.01, low)
                await ex.create_order("ETH/USDT", "market", "sell", 0.5)
                return str(order["id"])
            finally:
                await ex.close()

        resting = run(place)
        before = server.truth()
        assert [o["id"] for o in before.open_orders] == [resting]
        server.kill()  # no goodbye: what was saved after each change is what is left
    assert not server.alive()
    with start_server(seed=9, tick_seconds=FAST, state=state) as again:
        after = again.truth()
        assert [o["id"] for o in after.orders] == [o["id"] for o in before.orders]
        assert after.fills == before.fills and after.balances == before.balances
        assert again.stop() == 0  # SIGTERM: a clean exit
    with pytest.raises(RuntimeError, match="exited"):  # another seed cannot take it over
        start_server(seed=10, state=state, ready_timeout=20)


def test_the_subprocess_dies_with_its_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from adapters.sim.server import start_server; "
            "s = start_server(); print(s.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert not _gone(pid, 0.2)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(pid, 5.0), "the server outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# -- an engine over HTTP --------------------------------------------------------------------


async def bid(exchange: Any, symbol: str) -> float:
    """The bid, asked until an answer comes (the server may be injecting faults)."""
    for _ in range(20):
        try:
            return float((await exchange.fetch_ticker(symbol))["bid"])
        except ccxt.BaseError as exc:
            _surfaces(exc)
    pytest.fail("no ticker in 20 tries")


async def trade(
    server_url: str, path: Path, *, timeout_ms: int = 10_000, faulty: bool = False
) -> State:
    """A short run: a market buy that fills, a limit buy that rests, its cancel, a sync.
    ``faulty``: the server injects faults, so a command may end without an answer (the
    truth, compared with afterwards, says what happened)."""
    exchange = binance_client(server_url, timeout_ms=timeout_ms)
    venue = CcxtVenue(exchange, watcher_settings=WatcherSettings(poll_interval=0.5))
    try:
        async with Engine.open(
            path, venue, universe=SPOT, main_currency="USDT", clock=WallClock()
        ) as engine:
            filled = await engine.create_order("BTC/USDT", "buy", D("0.01"), type="market")
            assert faulty or isinstance(filled, Fill)
            low = D(str(round(await bid(exchange, "BTC/USDT") * 0.5, 2)))
            resting = await engine.create_order("BTC/USDT", "buy", D("0.01"), low, waitfor=0.2)
            assert not isinstance(resting, Fill)
            await engine.create_order("ETH/USDT", "sell", D("0.2"), type="market")
            assert await engine.cancel_all() >= 1 or faulty
            await engine.sync()
    finally:
        await exchange.close()
    return engine.state  # closed: the trace holds every event of it


class HasServerTruth(Protocol):
    def truth(self) -> ServerTruth: ...


def engine_equals_truth(state: State, server: HasServerTruth) -> None:
    """Balances (free and used too: the last thing the engine did was a sync), fills, open
    orders and every order's client id, as the server has them."""
    assert totals(state) == truth_totals(server)
    assert filled_by_order(state) == truth_filled_by_order(server)
    truth = server.truth()
    assert {c: (v.free, v.used) for c, v in state.cash.items() if v.total} == {
        c: (b["free"], b["used"]) for c, b in truth.balances.items() if b["total"]
    }
    assert real_trades(state) == {f.id for f in truth.fills}
    live = sorted(o.order_id or "" for o in state.orders.values() if o.status not in TERMINAL)
    assert live == sorted(str(o["id"]) for o in truth.open_orders)
    assert {oid: o.client_order_id for oid, o in state.orders.items()} == {
        o["id"]: o["client_order_id"] for o in truth.orders
    }


def test_an_engine_over_http_ends_equal_to_the_servers_truth(tmp_path: Path) -> None:
    path = tmp_path / "trace"
    with start_server(seed=12, tick_seconds=FAST) as server:
        live = run(lambda: trade(server.url, path))
        engine_equals_truth(live, server)
        assert len(server.truth().orders) == 3
    replays_to(path, live)
    with Trace.open(path) as trace:  # ccxt.async_support.binance has no streams: they poll
        started = [e for e in trace[:] if isinstance(e, WatcherStarted)]
    assert started and not any(e.streaming for e in started)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_an_engine_with_every_fault_on_ends_equal_to_the_truth_no_order_twice(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "trace"
    faults = ServerFaults.every(0.03, delay=2.0)
    server = SimServer(seed=seed, faults=faults, tick_seconds=FAST)

    async def main() -> State:
        async with server.running():
            live = await trade(server.url, path, timeout_ms=1500, faulty=True)
            for _ in range(5):  # a sync meets faults too: until it has seen everything
                if totals(live) == truth_totals(server) and real_trades(live) == {
                    f.id for f in server.truth().fills
                }:
                    break
                exchange = binance_client(server.url, timeout_ms=1500)
                try:
                    async with Engine.open(
                        path,
                        CcxtVenue(exchange),
                        universe=SPOT,
                        main_currency="USDT",
                        clock=WallClock(),
                        watchers=False,
                    ) as engine:
                        pass  # its start-up sync
                finally:
                    await exchange.close()
                live = engine.state
            return live

    live = run(main)
    truth = server.truth()
    assert sum(truth.faults.values()) > 0, "no fault was injected: the test proves nothing"
    placed = truth.client_order_ids()
    assert len(placed) == len(set(placed)), f"a client order id was placed twice: {placed}"
    engine_equals_truth(live, server)
    replays_to(path, live)


def test_fault_specs_parse_and_print_back() -> None:
    faults = ServerFaults.parse("slow=0.1, reset_after=0.2,delay=1.5,retry_after=3")
    assert (faults.slow, faults.reset_after, faults.delay, faults.retry_after) == (
        0.1,
        0.2,
        1.5,
        3,
    )
    assert ServerFaults.parse(faults.spec()) == faults
    assert ServerFaults.parse("all=0.01") == ServerFaults.every(0.01)
    assert ServerFaults.parse("") == ServerFaults()
    with pytest.raises(ValueError, match="no fault"):
        ServerFaults.parse("lag=0.1")
    with pytest.raises(ValueError, match="add up"):
        ServerFaults.every(0.2)
    assert json.loads(json.dumps(SimServer(seed=0).truth_json()))["faults"] == {}


def test_an_intent_retried_under_its_client_order_id_is_one_order_on_binance(
    tmp_path: Path,
) -> None:
    """Binance takes a finished order's client order id again (it refuses only an open
    order's): an intent retried under its own id must not become a second order there."""
    path = tmp_path / "trace"
    server = SimServer(seed=3, tick_seconds=FAST)

    async def main() -> State:
        async with server.running():
            for _ in range(2):  # a restart between the two tries
                async with Engine.open(
                    path,
                    CcxtVenue(binance_client(server.url)),
                    universe=SPOT,
                    main_currency="USDT",
                    clock=WallClock(),
                    watchers=False,
                ) as engine:
                    for _ in range(2):
                        fill = await engine.create_order(
                            "BTC/USDT", "buy", D("0.001"), type="market", client_order_id="i-1"
                        )
                        assert isinstance(fill, Fill)
            return engine.state

    live = run(main)
    assert server.truth().client_order_ids() == ["i-1"]
    assert totals(live) == truth_totals(server)
    replays_to(path, live)
