"""``eventsrc paper`` and ``eventsrc live``, offline: a real ccxt exchange class (binance) whose
HTTP hook answers recorded responses (``tests/fixtures/ccxt/binance.json``) where there are
recordings and minimal bodies in binance's format where there are none, driven through the
commands' own code in virtual time. Sockets are refused throughout. Config errors are one line
naming the file, the line and the key; the keys never reach an output, a log line or the trace.
"""

from __future__ import annotations

import argparse
import copy
import errno
import itertools
import json
import logging
import signal
import urllib.parse
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from adapters.cli import build_parser, main, venues
from adapters.cli.common import CommandError
from adapters.cli.config import key_lines, load_config
from adapters.cli.run import venue_file
from adapters.sim import VirtualClock
from eventsrc import (
    CancelRequested,
    Note,
    OrderAcknowledged,
    StrategyStopped,
    TickerObserved,
    Trace,
    TradeObserved,
    replay_from_trace,
    verify,
)
from tests.ccxt_fixtures import fixture
from tests.ccxt_fixtures import no_network as sockets_refused

ROOT = Path(__file__).resolve().parents[1]
BINANCE = fixture("binance")
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
"""Made-up credentials, long enough that the venue adapter masks them wherever they occur."""
ENV = {"TEST_BINANCE_KEY": API_KEY, "TEST_BINANCE_SECRET": SECRET}


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    with sockets_refused():
        yield


def recorded(method: str, case: int = 0) -> Any:
    """A recorded binance answer (a copy: tests change it)."""
    return copy.deepcopy(BINANCE["methods"][method][case]["httpResponse"])


def offline_binance(cls: Any = ccxt_async.binance, **config: Any) -> Any:
    """ccxt's binance (async) with the fixture's markets; its HTTP hook is set by the test.
    ccxt's rate limiter waits in real time, so it is let through at once: the run is in virtual
    time, and no request leaves the machine anyway."""
    ex = cls({"options": BINANCE.get("options", {}), **config})
    ex.set_markets({s: ex.safe_market_structure(m) for s, m in BINANCE["markets"].items()})

    async def no_wait(*args: Any, **kwargs: Any) -> None:
        return None

    ex.throttle = no_wait
    return ex


def traded_order() -> dict[str, Any]:
    """binance's GET /api/v3/order answer for the order of the recorded trade. Not recorded:
    the recorded fetchOrder answer (a filled market sell of LTC/USDT, like this one), with
    the id, amount, cost and time the recorded trade gives."""
    trade = recorded("fetchMyTrades")[0]
    answer: dict[str, Any] = recorded("fetchOrder")
    answer.update(
        orderId=trade["orderId"],
        clientOrderId="web_0e6f9c3a1b2d4c5e",
        origQty=trade["qty"],
        executedQty=trade["qty"],
        cummulativeQuoteQty=trade["quoteQty"],
        time=trade["time"],
        updateTime=trade["time"],
        workingTime=trade["time"],
    )
    return answer


def ticker_body(market_id: str, price: Decimal, now_ms: int) -> dict[str, Any]:
    """binance's GET /api/v3/ticker/24hr answer. Not recorded: the fixtures hold no public
    ticker, so this is one in binance's documented format, at ``price``."""
    half = Decimal("0.01")
    p = str(price)
    return {
        "symbol": market_id,
        "priceChange": "0.00000000",
        "priceChangePercent": "0.000",
        "weightedAvgPrice": p,
        "prevClosePrice": p,
        "lastPrice": p,
        "lastQty": "1.00000000",
        "bidPrice": str(price - half),
        "bidQty": "10.00000000",
        "askPrice": str(price + half),
        "askQty": "10.00000000",
        "openPrice": p,
        "highPrice": p,
        "lowPrice": p,
        "volume": "1000.00000000",
        "quoteVolume": str(price * 1000),
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": 1,
        "lastId": 2,
        "count": 2,
    }


class BinanceAnswers:
    """binance's HTTP answers to ccxt, by endpoint: the recorded bodies where the fixture has
    one, and where it has none a minimal body in binance's format (each says which). Orders the
    engine creates are kept, so later fetches of them answer what the create answered."""

    def __init__(self, clock: VirtualClock, prices: Iterator[Decimal]) -> None:
        self.clock = clock
        self.prices = prices
        self.fed: list[Decimal] = []
        self.calls: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        self.unexpected: list[str] = []
        self.created: dict[str, dict[str, Any]] = {}
        self.canceled: set[str] = set()
        self.order_ids = itertools.count(9_780_331_417)
        self.on_ticker: Any = None
        self.refuse_keys = False

    async def fetch(
        self,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> Any:
        parts = urllib.parse.urlsplit(url)
        endpoint = parts.path.rsplit("/api/", 1)[-1]
        query = dict(urllib.parse.parse_qsl(parts.query))
        query.update(urllib.parse.parse_qsl(body or ""))
        self.calls.append((method, endpoint))
        self.headers.append(dict(headers or {}))
        if self.refuse_keys and "X-MBX-APIKEY" in (headers or {}):
            # what ccxt raises for binance's -2015 answer (a venue may echo the key it got)
            raise ccxt.AuthenticationError(
                'binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}'
                f" key={(headers or {})['X-MBX-APIKEY']}"
            )
        answer = self._answer(method, endpoint, query)
        if answer is None:
            self.unexpected.append(f"{method} {endpoint}")
            raise ccxt.NotSupported(f"the test has no answer for {method} {endpoint}")
        return answer

    def _answer(self, method: str, endpoint: str, query: dict[str, str]) -> Any:
        now = self.clock.now_ms()
        since = int(query.get("startTime", 0))
        if (method, endpoint) == ("GET", "v3/ticker/24hr"):
            price = next(self.prices)
            self.fed.append(price)
            if self.on_ticker is not None:
                self.on_ticker(len(self.fed))
            return ticker_body(query["symbol"], price, now)
        if (method, endpoint) == ("GET", "v3/account"):
            return recorded("fetchBalance")
        if (method, endpoint) == ("GET", "v3/openOrders"):
            still = [o for o in recorded("fetchOpenOrders") if o["orderId"] not in self.canceled]
            mine = [o for o in self.created.values() if o["status"] == "NEW"]
            return [*still, *mine]
        if (method, endpoint) == ("GET", "v3/allOrders"):
            every = [recorded("fetchOrder"), traded_order(), *self.created.values()]
            return [o for o in every if int(o.get("time", o.get("transactTime", 0))) >= since]
        if (method, endpoint) == ("GET", "v3/myTrades"):
            trades = recorded("fetchMyTrades")  # the spot case: LTC/USDT
            return [
                t
                for t in trades
                if int(t["time"]) >= since and query.get("orderId", t["orderId"]) == t["orderId"]
            ]
        if endpoint == "v3/order":
            return self._order(method, query, now)
        return None

    def _order(self, method: str, query: dict[str, str], now: int) -> Any:
        if method == "POST":
            # the recorded create answer, with what this request decides (market, side,
            # price, amount, client order id, the new order's id and time) put in
            answer = recorded("createOrder")
            del answer["icebergQty"]  # the recorded request asked for an iceberg; this one not
            answer.update(
                symbol=query["symbol"],
                orderId=str(next(self.order_ids)),
                clientOrderId=query["newClientOrderId"],
                transactTime=str(now),
                workingTime=str(now),
                price=query["price"],
                origQty=query["quantity"],
                side=query["side"],
                type=query["type"],
                timeInForce=query.get("timeInForce", "GTC"),
            )
            self.created[answer["orderId"]] = answer
            return answer
        order_id = query.get("orderId")
        client_id = query.get("origClientOrderId")
        mine = next(
            (
                o
                for o in self.created.values()
                if o["orderId"] == order_id or (client_id and o["clientOrderId"] == client_id)
            ),
            None,
        )
        if method == "GET":
            if mine is not None:
                # the recorded fetchOrder answer's shape, about the order created here
                answer = recorded("fetchOrder")
                answer.update(
                    {k: mine[k] for k in ("symbol", "orderId", "clientOrderId", "price", "side")},
                    origQty=mine["origQty"],
                    executedQty="0.00000000",
                    cummulativeQuoteQty="0.00000000",
                    status=mine["status"],
                    type=mine["type"],
                    time=mine["transactTime"],
                    updateTime=str(now),
                    workingTime=mine["transactTime"],
                )
                return answer
            known = {o["orderId"]: o for o in (recorded("fetchOrder"), traded_order())}
            if order_id in known:
                return known[order_id]
            # what ccxt raises for binance's {"code": -2013, "msg": "Order does not exist."}
            # (the hook sits above ccxt's handle_errors, so it raises what that would)
            raise ccxt.OrderNotFound('binance {"code":-2013,"msg":"Order does not exist."}')
        if method == "DELETE":
            # Not recorded: binance's DELETE /api/v3/order answer, minimal, for the recorded
            # open order (the account's own) or one created here.
            order = mine or next(
                (o for o in recorded("fetchOpenOrders") if o["orderId"] == order_id), None
            )
            if order is None:
                raise ccxt.OrderNotFound('binance {"code":-2011,"msg":"Unknown order sent."}')
            canceled = {**order, "status": "CANCELED", "transactTime": str(now)}
            self.canceled.add(order["orderId"])
            if mine is not None:
                mine["status"] = "CANCELED"
            return {
                k: canceled[k]
                for k in (
                    "symbol",
                    "orderId",
                    "clientOrderId",
                    "transactTime",
                    "price",
                    "origQty",
                    "executedQty",
                    "cummulativeQuoteQty",
                    "status",
                    "timeInForce",
                    "type",
                    "side",
                )
                if k in canceled
            }
        return None


def around(center: str, swings: list[str]) -> Iterator[Decimal]:
    """Prices swinging around ``center`` by the given fractions, for ever."""
    base = Decimal(center)
    return itertools.cycle([(base * (1 + Decimal(s))).quantize(Decimal("0.01")) for s in swings])


def trace_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file())


def leaked(text: bytes | str) -> list[str]:
    """Which of the credentials (as written, or URL-encoded) ``text`` holds."""
    data = text.encode() if isinstance(text, str) else text
    return [
        name
        for name, value in (("apiKey", API_KEY), ("secret", SECRET))
        if value.encode() in data or urllib.parse.quote(value).encode() in data
    ]


# -- paper ----------------------------------------------------------------------------------


def paper_args(path: Path, *more: str) -> argparse.Namespace:
    args = ["paper", "--exchange", "binance", "--trace", str(path), *more]
    return build_parser().parse_args(args)


def test_paper_trades_the_ladder_at_the_venues_public_prices_with_simulated_fills(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = VirtualClock(faithful=True)
    answers = BinanceAnswers(clock, around("69.60", ["0", "0.004", "-0.004", "0.006", "-0.006"]))
    public = offline_binance()  # no keys: paper reads public data only
    public.fetch = answers.fetch
    path = tmp_path / "trace"
    args = paper_args(path, "--symbols", "LTC/USDT", "--seconds", "120", "--json")

    assert venues.paper(args, exchange=public, clock=clock) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["verified"] and summary["replay_equals_live"], summary
    assert summary["venue"] == "binance paper" and summary["anomalies"] == []
    assert summary["fills"] > 0
    # only public reads went to the exchange: its tickers, nothing private, nothing else
    assert set(answers.calls) == {("GET", "v3/ticker/24hr")} and not answers.unexpected
    with Trace.open(path) as trace:
        assert verify(trace).ok
        state = replay_from_trace(trace)
        events = trace[:]
    # the simulated venue quoted the fed prices, and its matching filled the rungs at them
    quoted = {e.last for e in events if isinstance(e, TickerObserved)}
    assert quoted and quoted <= set(answers.fed)
    assert {o.side for o in state.orders.values() if o.fills} == {"buy", "sell"}
    tick = Decimal("0.01")  # the sim's half spread at these prices, at LTC/USDT's tick
    at_own_price = 0
    for order in state.orders.values():
        assert order.price is not None
        for fill in order.fills:
            assert fill.price is not None
            # a resting rung fills at its own price; one the price jumped over as it was
            # placed takes the touch, at a better price than its own
            assert fill.price <= order.price if order.side == "buy" else fill.price >= order.price
            assert min(answers.fed) - tick <= fill.price <= max(answers.fed) + tick
            at_own_price += fill.price == order.price
    assert at_own_price
    assert any(isinstance(e, Note) and e.text == "venue: binance paper" for e in events)
    assert venue_file(path).exists()


def test_paper_continues_its_trace_and_refuses_another_venues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace"
    for run in range(2):
        clock = VirtualClock(faithful=True)
        answers = BinanceAnswers(clock, around("69.60", ["0", "0.005", "-0.005"]))
        public = offline_binance()
        public.fetch = answers.fetch
        args = paper_args(path, "--symbols", "LTC/USDT", "--seconds", "30")
        assert venues.paper(args, exchange=public, clock=clock) == 0
        out = capsys.readouterr().out
        assert out.startswith("continuing" if run else "recording")
        assert "verified    the trace is sound" in out
        assert f"eventsrc paper --exchange binance --trace {path} --symbols LTC/USDT" in out
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert sum(1 for e in trace if e.kind == "strategy_started") == 2

    # the same trace through another exchange: refused before anything is read
    assert main(["paper", "--exchange", "kraken", "--trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert "recorded on binance paper, not kraken paper" in err
    assert len(err.strip().splitlines()) == 1


def test_ctrl_c_stops_paper_cleanly_with_the_summary_and_status_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is handled by someone else here")
    clock = VirtualClock(faithful=True)
    answers = BinanceAnswers(clock, around("69.60", ["0", "0.005", "-0.005"]))

    def ctrl_c(reads: int) -> None:
        if reads == 20:  # the user presses Ctrl-C mid-run
            signal.raise_signal(signal.SIGINT)

    answers.on_ticker = ctrl_c
    public = offline_binance()
    public.fetch = answers.fetch
    path = tmp_path / "trace"
    args = paper_args(path, "--symbols", "LTC/USDT", "--json")  # no --seconds: until Ctrl-C

    assert venues.paper(args, exchange=public, clock=clock) == 130

    summary = json.loads(capsys.readouterr().out)
    assert summary["interrupted"] and summary["verified"]
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert trace[len(trace) - 1].kind == "strategy_stopped"
    assert venue_file(path).exists()


def test_paper_rides_out_a_disk_that_turns_read_only_and_ends_without_waiting_for_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_disk_faults import Disk

    clock = VirtualClock(faithful=True)
    answers = BinanceAnswers(clock, around("69.60", ["0", "0.005", "-0.005"]))
    path = tmp_path / "trace"
    disk = Disk(monkeypatch, path)

    def read_only(reads: int) -> None:
        if reads == 20:  # the trace's file system turns read-only mid-run, for good
            disk.refuse(errno.EROFS)

    answers.on_ticker = read_only
    public = offline_binance()
    public.fetch = answers.fetch
    args = paper_args(path, "--symbols", "LTC/USDT", "--seconds", "120", "--json")

    # The run goes on to its end (no final sync: it would wait for the disk), then reports.
    status = venues.paper(args, exchange=public, clock=clock)
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("eventsrc: warning:")]
    assert "recording suspended: the trace " in warnings[0], err
    assert "Read-only file system (EROFS)" in warnings[0] and str(path) in warnings[0]
    assert "stopped while" in warnings[-1], err
    summary = json.loads(out)
    assert summary["verified"]  # what the trace acknowledged is whole
    # The engine had folded events the disk never took ("group" durability): the summary
    # says the replay is short of the live run, and the status is 1.
    assert status == (0 if summary["replay_equals_live"] else 1)
    assert disk.refused > 0
    disk.heal()
    with Trace.open(path) as trace:
        assert verify(trace).ok
        assert trace[len(trace) - 1].kind != "strategy_stopped"


def test_paper_follows_a_streamed_ticker_where_ccxt_pro_has_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = VirtualClock(faithful=True)
    answers = BinanceAnswers(clock, around("69.60", ["0", "0.004", "-0.004"]))
    public = offline_binance(ccxt_pro.binance)
    public.fetch = answers.fetch  # the first price is fetched
    streamed: list[Decimal] = []
    prices = around("69.60", ["0.005", "-0.005"])

    async def watch_ticker(symbol: str, params: Any = None) -> Any:
        # No websocket: the next update a second later, in binance's 24hr ticker format,
        # through ccxt's own parser.
        await clock.sleep(1.0)
        streamed.append(next(prices))
        body = ticker_body("LTCUSDT", streamed[-1], clock.now_ms())
        return public.parse_ticker(body, public.market(symbol))

    public.watch_ticker = watch_ticker
    args = paper_args(tmp_path / "trace", "--symbols", "LTC/USDT", "--seconds", "60", "--json")
    assert venues.paper(args, exchange=public, clock=clock) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verified"] and summary["fills"] > 0
    assert len(answers.fed) == 1 and len(streamed) >= 50  # one fetch, then the stream
    with Trace.open(tmp_path / "trace") as trace:
        quoted = {e.last for e in trace if isinstance(e, TickerObserved)}
    assert quoted <= {*answers.fed, *streamed} and quoted & set(streamed)


def test_live_prices_answer_each_tick_as_first_asked() -> None:
    prices = venues.LivePrices()
    prices.update("X/Y", Decimal(10))
    assert prices.price("X/Y", 0) == prices.price("X/Y", 1) == Decimal(10)
    prices.update("X/Y", Decimal(11))
    assert prices.price("X/Y", 1) == Decimal(10)  # asked before: what it was then
    assert prices.price("X/Y", 3) == Decimal(11)
    assert prices.price("X/Y", 2) == Decimal(10)  # between: the price in force then
    with pytest.raises(KeyError):
        prices.price("Z/Y", 0)
    with pytest.raises(ValueError):
        prices.update("X/Y", Decimal(0))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--exchange", "binanse"], "no ccxt exchange 'binanse' (did you mean binance"),
        (["--exchange", "binance", "--seconds", "0"], "--seconds must be more than 0"),
        (["--exchange", "binance", "--seconds", "nan"], "--seconds must be more than 0"),
        (["--exchange", "binance", "--seconds", "soon"], "'soon' is not a number of seconds"),
    ],
)
def test_paper_refuses_bad_arguments_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = tmp_path / "trace"
    assert main(["paper", "--trace", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not path.exists()


def test_paper_refuses_a_symbol_the_venue_does_not_list_suggesting_close_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = VirtualClock(faithful=True)
    public = offline_binance()
    public.fetch = BinanceAnswers(clock, around("69.60", ["0"])).fetch
    args = paper_args(tmp_path / "trace", "--symbols", "LTC/USTD", "--seconds", "10")
    with pytest.raises(CommandError, match=r"no market 'LTC/USTD' \(did you mean LTC/USDT"):
        venues.paper(args, exchange=public, clock=clock)
    assert not (tmp_path / "trace").exists()


# -- live: the config file ------------------------------------------------------------------

CONFIG = """\
exchange = "binance"
main_currency = "USDT"
trace = "trace"

[universe]
"LTC/USDT" = 0.1

[limits]
max_order_notional = 100
max_open_orders = 4

[keys]
apiKey = "TEST_BINANCE_KEY"
secret = "TEST_BINANCE_SECRET"
"""


def config_file(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "live.toml"
    path.write_text(text)
    return path


def live_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    env: dict[str, str] | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> str:
    path = config_file(tmp_path, text)
    assert main(["live", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "trace").exists()
    return err.strip().removeprefix("eventsrc: error: ").removeprefix(f"{path}")


def test_the_example_config_parses_and_says_sandbox_with_keys_from_the_environment() -> None:
    config = load_config(ROOT / "examples" / "live.toml")
    assert (config.exchange, config.live, config.mode) == ("binance", False, "sandbox")
    assert config.universe == {"BTC/USDT": Decimal("0.0002"), "ETH/USDT": Decimal("0.005")}
    assert config.limits.max_order_notional == Decimal(50)
    assert config.limits.max_open_orders == 4
    assert config.keys == {"apiKey": "BINANCE_API_KEY", "secret": "BINANCE_SECRET"}
    assert config.trace == ROOT / "examples" / "live-trace"
    assert (config.durability, config.margin, config.main_currency) == ("sync", False, "USDT")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "TEST_BINANCE_KEY (apiKey) is not set, TEST_BINANCE_SECRET (secret) is not set"),
        ({"TEST_BINANCE_KEY": API_KEY}, "TEST_BINANCE_SECRET (secret) is not set"),
        ({"TEST_BINANCE_KEY": API_KEY, "TEST_BINANCE_SECRET": ""}, "SECRET (secret) is empty"),
        ({"TEST_BINANCE_KEY": " \n", "TEST_BINANCE_SECRET": SECRET}, "KEY (apiKey) is empty"),
    ],
    ids=["both-missing", "secret-missing", "secret-empty", "key-blank"],
)
def test_live_refuses_without_keys_naming_the_variables_and_showing_no_secret(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    says: str,
) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    error = live_error(tmp_path, capsys, CONFIG)
    assert error.startswith(":12: keys: ") and says in error, error
    assert "read from the environment only" in error
    assert not leaked(error)


BROKEN = {  # what is changed in CONFIG -> how the one line of the error starts
    "syntax": (
        ("max_open_orders = 4", "max_open_orders = "),
        ":10:19: not valid TOML: Invalid value",
    ),
    "syntax-duplicate": (
        ("max_open_orders = 4", "max_open_orders = 4\nmax_open_orders = 5"),
        ":11:20: not valid TOML: Cannot overwrite a value",
    ),
    "unknown-key": (
        ('trace = "trace"', 'trace = "trace"\ndurabilty = "sync"'),
        ":4: durabilty: unknown key (did you mean durability?)",
    ),
    "unknown-limit": (
        ("max_open_orders = 4", "max_open_order = 4"),
        ":10: limits.max_open_order: unknown key in [limits] (did you mean max_open_orders",
    ),
    "unknown-credential": (
        ('apiKey = "TEST_BINANCE_KEY"', 'apikey = "TEST_BINANCE_KEY"'),
        ":13: keys.apikey: unknown key in [keys] (did you mean apiKey?)",
    ),
    "wrong-type-whole": (
        ("max_open_orders = 4", "max_open_orders = 4.5"),
        ":10: limits.max_open_orders: must be a whole number, not a number (4.5)",
    ),
    "wrong-type-string": (
        ('main_currency = "USDT"', "main_currency = 5"),
        ":2: main_currency: must be a non-empty string, not an integer (5)",
    ),
    "wrong-type-bool": (
        ('trace = "trace"', 'trace = "trace"\nmargin = "no"'),
        ':4: margin: must be true or false, not a string ("no")',
    ),
    "wrong-type-table": (
        ('[universe]\n"LTC/USDT" = 0.1', 'universe = "LTC/USDT"'),
        ':5: universe: must be a table ([universe]), not a string ("LTC/USDT")',
    ),
    "not-a-number": (
        ("max_order_notional = 100", 'max_order_notional = "lots"'),
        ':9: limits.max_order_notional: must be a number, not a string ("lots")',
    ),
    "bad-choice": (
        ('trace = "trace"', 'trace = "trace"\ndurability = "fast"'),
        ":4: durability: must be one of sync, group, none",
    ),
    "negative-limit": (
        ("max_order_notional = 100", "max_order_notional = -100"),
        ":9: limits.max_order_notional: must be 0 or more, not -100",
    ),
    "negative-amount": (
        ('"LTC/USDT" = 0.1', '"LTC/USDT" = -0.1'),
        ':6: universe."LTC/USDT": must be more than 0, not -0.1',
    ),
    "empty-universe": (
        ('"LTC/USDT" = 0.1', ""),
        ":5: universe: is empty: name at least one market",
    ),
    "unknown-exchange": (
        ('exchange = "binance"', 'exchange = "binanse"'),
        ":1: exchange: no ccxt exchange 'binanse' (did you mean binance",
    ),
    "no-sandbox": (
        ('exchange = "binance"', 'exchange = "kraken"'),
        ":1: exchange: kraken has no sandbox: set live = true to trade real money on it",
    ),
    "missing-credential": (
        ('secret = "TEST_BINANCE_SECRET"', ""),
        ":12: keys: binance needs secret: name the environment variable holding it",
    ),
    "missing-key": (('exchange = "binance"', ""), ": missing exchange"),
}


@pytest.mark.parametrize(("change", "says"), BROKEN.values(), ids=BROKEN.keys())
def test_live_config_errors_name_the_line_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], says: str
) -> None:
    assert change[0] in CONFIG
    error = live_error(tmp_path, capsys, CONFIG.replace(*change))
    assert error.startswith(says), error


def test_live_on_an_exchange_without_a_sandbox_is_allowed_only_with_live_true(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    kraken = CONFIG.replace('"binance"', '"kraken"').replace('"LTC/USDT"', '"BTC/USD"')
    assert "has no sandbox" in live_error(tmp_path, capsys, kraken)
    # with live = true it goes on, to the next thing missing: the keys
    error = live_error(tmp_path, capsys, "live = true\n" + kraken)
    assert "TEST_BINANCE_KEY (apiKey) is not set" in error


def test_a_key_written_into_the_config_is_refused_without_being_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pasted = CONFIG.replace('"TEST_BINANCE_SECRET"', json.dumps(SECRET))
    error = live_error(tmp_path, capsys, pasted)
    assert error.startswith(":14: keys.secret: must be the NAME of an environment variable")
    assert not leaked(error)
    in_options = CONFIG + f"\n[options]\nsecret = {json.dumps(SECRET)}\n"
    error = live_error(tmp_path, capsys, in_options)
    assert error.startswith(":17: options.secret: credentials come from the environment only")
    assert not leaked(error)
    short = "Xy7-q9Zk2LmN4pR8"  # a short key, pasted as the whole [keys]
    instead = f"keys = {json.dumps(short)}\n" + CONFIG[: CONFIG.index("[keys]")]
    error = live_error(tmp_path, capsys, instead)
    assert error == ":1: keys: must be a table ([keys]), not a string", error


def test_key_lines_finds_tables_dotted_keys_and_inline_tables() -> None:
    text = '# c\na = 1\n[t]\nb = 2\n"x.y" = 3\n[u.v]\nw = 4\nlimits.max = 5\nz = { q = 1 }\n'
    lines = key_lines(text)
    assert lines[("a",)] == 2 and lines[("t",)] == 3 and lines[("t", "b")] == 4
    assert lines[("t", "x.y")] == 5 and lines[("u", "v")] == 6 and lines[("u", "v", "w")] == 7
    assert lines[("u", "v", "limits", "max")] == 8 and lines[("u", "v", "z")] == 9


# -- live, offline --------------------------------------------------------------------------

TRADE_MS = int(recorded("fetchMyTrades")[0]["time"])


def live_args(config: Path, *more: str) -> argparse.Namespace:
    return build_parser().parse_args(["live", "--config", str(config), *more])


def test_live_trades_offline_on_recorded_answers_and_no_key_reaches_the_trace_or_the_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The run starts a minute after the recorded trade, so the start-up sync's look-back
    # (a day) reaches it; the recorded closed order (months older) stays out of it.
    clock = VirtualClock(start_ms=TRADE_MS + 60_000, faithful=True)
    answers = BinanceAnswers(clock, around("69.60", ["0", "0.0005", "-0.0005"]))
    exchange = offline_binance()  # no keys: the command sets them, from the environment
    exchange.fetch = answers.fetch
    config = config_file(tmp_path)
    caplog.set_level(logging.DEBUG)  # every engine event and every ccxt line, logged

    status = venues.live(
        live_args(config, "--seconds", "60", "--json"), exchange=exchange, clock=clock, environ=ENV
    )

    out, err = capsys.readouterr()
    assert status == 0, err
    summary = json.loads(out)
    assert summary["verified"] and summary["replay_equals_live"], summary
    assert summary["venue"] == "binance sandbox"
    # the keys reached the exchange (its requests carry the API key header), in its sandbox
    assert exchange.isSandboxModeEnabled and exchange.apiKey == API_KEY
    assert any(h.get("X-MBX-APIKEY") == API_KEY for h in answers.headers)
    # every recorded endpoint was used, and nothing was asked that the test cannot answer
    assert {
        ("POST", "v3/order"),
        ("GET", "v3/order"),
        ("GET", "v3/openOrders"),
        ("GET", "v3/myTrades"),
        ("GET", "v3/account"),
    } <= set(answers.calls)
    assert not answers.unexpected, answers.unexpected

    path = tmp_path / "trace"
    with Trace.open(path) as trace:
        assert verify(trace).ok
        state = replay_from_trace(trace)
        events = trace[:]
    # the cash is the recorded balance: binance's account answer, exactly
    balances = {
        b["asset"]: Decimal(b["free"]) + Decimal(b["locked"])
        for b in recorded("fetchBalance")["balances"]
    }
    assert {c: state.cash[c].total for c in balances} == balances
    # USDT, which that answer does not list, is held at zero: a whole balance leaves zero
    # balances out (the recorded trade's proceeds, dated before the report, are in it)
    assert set(state.cash) - set(balances) <= {"USDT"}
    assert "USDT" not in state.cash or state.cash["USDT"].total == 0
    assert any(isinstance(e, OrderAcknowledged) for e in events)  # the ladder's sell rung
    assert any(
        isinstance(e, TradeObserved) and e.trade_id == "309520010" for e in events
    )  # the recorded trade, found by the start-up sync
    # the account's own order (placed by hand, recorded open) is left alone by the ladder
    assert state.orders["3811057334"].status == "open"
    assert not any(isinstance(e, CancelRequested) and e.order_id == "3811057334" for e in events)

    # no byte of the trace, no log line, no output holds a key
    assert not leaked(trace_bytes(path))
    assert not leaked("\n".join(r.getMessage() for r in caplog.records))
    assert not leaked(caplog.text) and not leaked(out) and not leaked(err)
    assert caplog.records  # (the logs were captured: there was something to look at)


def test_live_refuses_to_continue_a_trace_recorded_in_another_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = VirtualClock(start_ms=TRADE_MS + 60_000, faithful=True)
    exchange = offline_binance()
    exchange.fetch = BinanceAnswers(clock, around("69.60", ["0"])).fetch
    config = config_file(tmp_path)
    args = live_args(config, "--seconds", "10", "--json")
    assert venues.live(args, exchange=exchange, clock=clock, environ=ENV) == 0
    capsys.readouterr()
    config.write_text("live = true\n" + CONFIG)
    with pytest.raises(CommandError, match="recorded on binance sandbox, not binance live"):
        venues.live(args, exchange=offline_binance(), clock=clock, environ=ENV)


def test_live_stops_in_one_line_when_the_venue_refuses_the_keys_and_shows_none_of_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock(start_ms=TRADE_MS + 60_000, faithful=True)
    answers = BinanceAnswers(clock, around("69.60", ["0"]))
    answers.refuse_keys = True
    exchange = offline_binance()
    exchange.fetch = answers.fetch
    config = config_file(tmp_path)
    caplog.set_level(logging.DEBUG)
    args = live_args(config, "--seconds", "60", "--json")
    with pytest.raises(
        CommandError, match=r"binance refused the keys \(AuthenticationError: "
    ) as e:
        venues.live(args, exchange=exchange, clock=clock, environ=ENV)
    assert "-2015" in str(e.value) and not leaked(str(e.value))
    path = tmp_path / "trace"
    with Trace.open(path) as trace:
        assert verify(trace).ok
        last = trace[len(trace) - 1]
        assert isinstance(last, StrategyStopped) and "refused the keys" in last.reason
        assert not any(e.kind == "order_requested" for e in trace)
    assert not leaked(trace_bytes(path)) and not leaked(caplog.text)
    assert not leaked("".join(capsys.readouterr()))
