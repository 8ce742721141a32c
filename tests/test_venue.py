"""The ccxt venue adapter: ccxt's structures as events, ccxt's exceptions as venue errors,
every ``CcxtVenue`` call over the simulated exchange and over real ccxt classes offline, and
the exchange's secrets kept out of every event, error and log line."""

from __future__ import annotations

import asyncio
import decimal
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import ccxt
import ccxt.async_support as ccxt_async
import pytest

from adapters.observations import order_observed, to_decimal
from adapters.sim import DEFAULT_MARKETS, SimExchange, linear_perpetual
from adapters.venue import CcxtVenue, market_of, venue_error
from eventsrc import (
    BalanceObserved,
    CancelObserved,
    Event,
    Fee,
    Observation,
    OrderAcknowledged,
    OrderObserved,
    OrderRequested,
    PositionObserved,
    TickerObserved,
    TradeObserved,
)
from eventsrc.venue import NotFound, Refused, Unreachable, Venue, VenueError
from tests.ccxt_fixtures import fixture

T = TypeVar("T")
D = Decimal
PERP = "BTC/USDT:USDT"


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def request(
    cid: str,
    side: str,
    amount: str,
    price: Decimal | None = None,
    *,
    asset: str = "BTC/USDT",
    order_type: str = "limit",
    **kw: Any,
) -> OrderRequested:
    return OrderRequested(
        cid, side, order_type, D(amount), price=price, asset=asset, source="test", **kw
    )


# -- ccxt structures -> events ----------------------------------------------------------------


def test_to_decimal_takes_numpy_scalars_as_their_python_equivalents() -> None:
    import numpy as np

    assert to_decimal(np.float64(0.1)) == D("0.1")
    assert to_decimal(np.int64(7)) == D(7)
    assert to_decimal(np.float32(0.5)) == D("0.5")
    assert to_decimal(np.bool_(True)) is None


def test_ccxt_fees_are_summed_exactly_whatever_the_callers_decimal_context() -> None:
    order = {
        "id": "1",
        "fees": [
            {"cost": "0.1234567", "currency": "BNB"},
            {"cost": "0.0000001", "currency": "BNB"},
        ],
    }
    with decimal.localcontext(decimal.Context(prec=3)):
        fees = order_observed(order).fees
    assert fees == (Fee("BNB", D("0.1234568")),)


def test_odd_fields_become_none_never_an_exception() -> None:
    import numpy as np

    order = {"id": 7, "fees": "lots", "fee": None, "amount": "abc", "timestamp": 1.5, "x": np}
    event = order_observed(order, source="fetch_order")
    assert (event.order_id, event.fees, event.amount, event.exchange_ts) == ("7", None, None, None)
    assert event.info()["x"].startswith("<module")  # kept, as its repr


# -- every call over the simulated exchange ---------------------------------------------------


def raw_of(event: Event) -> Any:
    assert isinstance(event, Observation) and event.raw
    return event.info()


def test_a_spot_order_from_create_to_fill_through_every_call() -> None:
    async def check() -> None:
        ex = SimExchange(seed=4, partial_fills=False)
        venue: Venue = CcxtVenue(ex)
        assert venue.name == "sim"
        markets = await venue.load_markets()
        btc = markets["BTC/USDT"]
        assert (btc.base, btc.quote, btc.contract, btc.amount_step, btc.price_step) == (
            "BTC",
            "USDT",
            False,
            D("0.0001"),
            D("0.01"),
        )
        assert btc.min_amount == D("0.0001") and btc.min_cost is None

        (ticker,) = await venue.fetch_ticker("BTC/USDT")
        assert isinstance(ticker, TickerObserved) and ticker.source == "fetch_ticker"
        assert ticker.bid is not None and ticker.ask is not None and ticker.bid < ticker.ask
        assert raw_of(ticker)["info"]["symbol"] == "BTCUSDT"

        # A resting buy, named by its client order id.
        below = (ticker.bid * D("0.999")).quantize(D("0.01"))
        ack, observed = await venue.create_order(
            request("rest-1", "buy", "0.01", below, seq=41)  # as read back from the trace
        )
        assert isinstance(ack, OrderAcknowledged) and isinstance(observed, OrderObserved)
        assert (ack.client_order_id, ack.asset, ack.source, ack.cause) == (
            "rest-1",
            "BTC/USDT",
            "create_order",
            41,  # the request's seq
        )
        assert observed.order_id == ack.order_id and observed.client_order_id == "rest-1"
        assert (observed.status, observed.amount, observed.filled, observed.price) == (
            "open",
            D("0.01"),
            D(0),
            below,
        )
        assert raw_of(observed)["info"]["clientOrderId"] == "rest-1"  # verbatim, info included

        by_client = await venue.fetch_order("BTC/USDT", client_order_id="rest-1")
        by_id = await venue.fetch_order("BTC/USDT", ack.order_id)
        for (event,) in (by_client, by_id):
            assert isinstance(event, OrderObserved) and event.source == "fetch_order"
            assert (event.order_id, event.status) == (ack.order_id, "open")
        (listed,) = await venue.fetch_open_orders("BTC/USDT")
        assert isinstance(listed, OrderObserved) and listed.source == "fetch_open_orders"

        # A market sell fills at once: its trades, the closed order, the balance.
        (_, sold) = await venue.create_order(
            request("sell-1", "sell", "0.02", asset="BTC/USDT", order_type="market")
        )
        assert isinstance(sold, OrderObserved) and sold.status == "closed"
        assert sold.filled == D("0.02") and sold.cause == "sell-1"
        assert sold.order_id is not None
        trades = await venue.fetch_order_trades("BTC/USDT", sold.order_id)
        assert trades and all(isinstance(t, TradeObserved) for t in trades)
        assert sum(t.amount or 0 for t in trades if isinstance(t, TradeObserved)) == D("0.02")
        assert {t.source for t in trades} == {"fetch_order_trades"}
        mine = await venue.fetch_my_trades("BTC/USDT", since_ms=0)
        assert [t.trade_id for t in mine if isinstance(t, TradeObserved)] == [
            f.id for f in ex.truth().fills
        ]
        closed = await venue.fetch_closed_orders("BTC/USDT", since_ms=0)
        assert [e.order_id for e in closed if isinstance(e, OrderObserved)] == [sold.order_id]
        (balance,) = await venue.fetch_balance()
        assert isinstance(balance, BalanceObserved) and balance.source == "fetch_balance"
        totals = {b.currency: b.total for b in balance.balances}
        truth = ex.truth().balances
        assert totals == {c: truth[c]["total"] for c in truth}

        # Cancel the resting one: the cancel, and the order's state.
        cancel, canceled = await venue.cancel_order("BTC/USDT", ack.order_id)
        assert isinstance(cancel, CancelObserved) and isinstance(canceled, OrderObserved)
        assert (cancel.order_id, cancel.status, cancel.source) == (
            ack.order_id,
            "canceled",
            "cancel_order",
        )
        assert canceled.status == "canceled"
        with pytest.raises(NotFound) as missing:
            await venue.fetch_order("BTC/USDT", "999")
        assert missing.value.error == "OrderNotFound"
        with pytest.raises(NotFound):
            await venue.cancel_order("BTC/USDT", ack.order_id)  # no longer open

    run(check())


def test_time_in_force_post_only_and_reduce_only_reach_the_venue() -> None:
    async def check() -> None:
        ex = SimExchange(seed=2)
        venue = CcxtVenue(ex)
        (ticker,) = await venue.fetch_ticker(PERP)
        assert isinstance(ticker, TickerObserved) and ticker.bid is not None
        low = (ticker.bid * D("0.99")).quantize(D("0.1"))
        _, post = await venue.create_order(
            request("po", "buy", "0.01", low, asset=PERP, post_only=True)
        )
        _, ioc = await venue.create_order(
            request("ioc", "buy", "0.01", low, asset=PERP, time_in_force="IOC")
        )
        assert raw_of(post)["postOnly"] is True and raw_of(post)["timeInForce"] == "GTC"
        assert raw_of(ioc)["timeInForce"] == "IOC"
        assert isinstance(ioc, OrderObserved) and ioc.status == "expired"
        with pytest.raises(Refused) as refused:  # nothing to reduce
            await venue.create_order(
                request("ro", "sell", "0.01", asset=PERP, order_type="market", reduce_only=True)
            )
        assert refused.value.error == "InvalidOrder"
        with pytest.raises(Refused) as taken:
            await venue.create_order(request("po", "buy", "0.01", low, asset=PERP))
        assert taken.value.error == "DuplicateOrderId"

    run(check())


def test_the_perpetual_leverage_and_positions_with_a_flat_one_where_there_is_none() -> None:
    eth = "ETH/USDT:USDT"

    async def check() -> None:
        markets = {**DEFAULT_MARKETS, eth: linear_perpetual(eth)}
        ex = SimExchange(seed=6, markets=markets)
        venue = CcxtVenue(ex)
        perp = (await venue.load_markets())[PERP]
        assert perp.contract and perp.settle == "USDT" and perp.contract_size == D(1)
        await venue.set_leverage(PERP, D(5))
        assert ex.venue.leverage[PERP] == 5
        await venue.create_order(request("long", "buy", "0.01", asset=PERP, order_type="market"))
        long, flat = await venue.fetch_positions([PERP, eth])
        assert isinstance(long, PositionObserved) and isinstance(flat, PositionObserved)
        assert (long.asset, long.side, long.contracts, long.leverage) == (
            PERP,
            "long",
            D("0.01"),
            D(5),
        )
        assert raw_of(long)["info"]["positionAmt"] == "0.01"
        assert (flat.asset, flat.side, flat.contracts, flat.source) == (
            eth,
            None,
            D(0),
            "fetch_positions",
        )
        _, closing = await venue.create_order(
            request("close", "sell", "0.01", asset=PERP, order_type="market", reduce_only=True)
        )
        assert isinstance(closing, OrderObserved) and closing.reduce_only is True
        (gone,) = await venue.fetch_positions([PERP])
        assert isinstance(gone, PositionObserved) and (gone.side, gone.contracts) == (None, D(0))
        everything = await venue.fetch_positions([])
        assert everything == []  # nothing held, nothing asked for by name
        with pytest.raises(Refused):
            await venue.set_leverage(PERP, D(0))

    run(check())


def test_capabilities_follow_the_exchanges_has() -> None:
    full = CcxtVenue(SimExchange())
    assert all(full.can_watch(s) for s in ("orders", "trades", "balance", "positions", "ticker"))
    assert full.can_fetch_trades()
    bare = CcxtVenue(SimExchange(websocket=False, trades=False))
    assert not any(
        bare.can_watch(s) for s in ("orders", "trades", "balance", "positions", "ticker")
    )
    assert not bare.can_fetch_trades()
    with pytest.raises(ValueError, match="no stream"):
        full.can_watch("candles")


def test_an_amount_a_float_would_change_is_refused_before_it_is_sent() -> None:
    ex = SimExchange()
    venue = CcxtVenue(ex)
    with pytest.raises(Refused) as refused:
        run(venue.create_order(request("x", "buy", "0.10000000000000000001", D(1))))
    assert refused.value.error == "InvalidOrder"
    assert not ex.venue.orders


# -- paging -----------------------------------------------------------------------------------


class PagedTrades:
    """A ccxt-shaped stub answering fetch_my_trades as ccxt does: the OLDEST ``limit`` from
    ``since`` on (or, ``ignores_since``, the newest ``limit`` whatever is asked)."""

    id = "paged"

    def __init__(self, stamps: list[int], ignores_since: bool = False) -> None:
        self.has = {"fetchMyTrades": True, "fetchOrders": True, "fetchClosedOrders": False}
        self.items: list[dict[str, Any]] = [
            {"id": f"t{i}", "order": "o1", "symbol": "BTC/USDT", "timestamp": ms, "amount": 1.0}
            for i, ms in enumerate(stamps)
        ]
        self.ignores_since = ignores_since
        self.calls: list[tuple[int | None, int | None]] = []

    async def fetch_my_trades(
        self, symbol: str, since: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append((since, limit))
        if self.ignores_since or since is None:
            return self.items[-(limit or len(self.items)) :]
        found = [t for t in self.items if t["timestamp"] >= since]
        return found[:limit] if limit else found

    async def fetch_orders(
        self, symbol: str, since: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        statuses = ["open", "closed", "canceled", "open"]
        trades = await self.fetch_my_trades(symbol, since, limit)
        return [{**t, "status": statuses[int(t["id"][1:]) % 4]} for t in trades]


@pytest.mark.parametrize("limit", [2, 3, None])
def test_paging_visits_every_item_once_even_where_a_page_ends_inside_a_millisecond(
    limit: int | None,
) -> None:
    stub = PagedTrades([100, 200, 200, 300, 300, 400, 500])  # two trades in some ms
    venue = CcxtVenue(stub, page_limit=limit)
    trades = run(venue.fetch_my_trades("BTC/USDT", since_ms=50))
    assert [t.trade_id for t in trades if isinstance(t, TradeObserved)] == [
        f"t{i}" for i in range(7)
    ]
    assert all(since is not None and since >= 50 and n == limit for since, n in stub.calls)
    assert run(venue.fetch_my_trades("BTC/USDT", since_ms=501)) == []


def test_paging_ends_on_a_venue_that_ignores_since() -> None:
    stub = PagedTrades([100, 200, 300], ignores_since=True)
    venue = CcxtVenue(stub, page_limit=2)
    trades = run(venue.fetch_my_trades("BTC/USDT", since_ms=0))
    assert len(trades) == 2 and len(stub.calls) == 3


def test_closed_orders_come_from_all_orders_where_the_venue_lists_only_those() -> None:
    stub = PagedTrades([100, 200, 300, 400])
    closed = run(CcxtVenue(stub, page_limit=3).fetch_closed_orders("BTC/USDT", since_ms=0))
    assert [(e.order_id, e.status) for e in closed if isinstance(e, OrderObserved)] == [
        ("t1", "closed"),
        ("t2", "canceled"),
    ]


# -- real ccxt classes, offline ---------------------------------------------------------------


def offline(exchange: str, answer: Any, **config: Any) -> Any:
    """A real ccxt async exchange whose HTTP hook answers the recorded ``answer``."""
    fx = fixture(exchange)
    ex = getattr(ccxt_async, exchange)(
        {"apiKey": "k", "secret": "c2VjcmV0", "options": fx.get("options", {}), **config}
    )
    ex.set_markets({s: ex.safe_market_structure(m) for s, m in fx["markets"].items()})

    async def fetch(*args: Any, **kwargs: Any) -> Any:
        return answer

    ex.fetch = fetch
    return ex


def recorded(exchange: str, method: str, case: int = 0) -> Any:
    return fixture(exchange)["methods"][method][case]["httpResponse"]


def test_bybit_answers_a_create_with_the_ids_only_an_acknowledgement_and_nothing_more() -> None:
    ex = offline("bybit", recorded("bybit", "createOrder"))
    events = run(CcxtVenue(ex).create_order(request("mine", "buy", "0.1", D(60), asset="LTC/USDT")))
    (ack,) = events
    assert isinstance(ack, OrderAcknowledged)
    assert (ack.order_id, ack.client_order_id, ack.asset) == (
        "1609920528435648000",
        "mine",
        "LTC/USDT",
    )
    assert raw_of(ack)["info"]["orderLinkId"] == "1609920528444036608"


def test_binance_answers_a_create_with_the_order_and_fetches_map_exactly() -> None:
    ex = offline("binance", recorded("binance", "createOrder"))
    ack, observed = run(
        CcxtVenue(ex).create_order(request("mine", "buy", "0.05", D(241), asset="SOL/USDT"))
    )
    assert isinstance(ack, OrderAcknowledged) and isinstance(observed, OrderObserved)
    assert ack.order_id == observed.order_id == "9780331417"
    assert (observed.status, observed.amount, observed.price) == ("open", D("0.05"), D(241))
    ex = offline("binance", recorded("binance", "fetchOrder"))
    (fetched,) = run(CcxtVenue(ex).fetch_order("LTC/USDT", "3397148653"))
    assert isinstance(fetched, OrderObserved)
    assert (fetched.filled, fetched.cost, fetched.average) == (D("0.1"), D("9.08"), D("90.8"))
    markets = run(CcxtVenue(ex).load_markets())
    assert markets["LTC/USDT"].amount_step == D("0.001") and not markets["LTC/USDT"].contract
    assert markets[PERP].contract


def test_a_create_answered_without_an_order_id_is_unreachable_the_order_may_exist() -> None:
    class Silent:
        id = "silent"
        has: ClassVar[dict[str, bool]] = {}

        async def create_order(self, *args: Any) -> dict[str, Any]:
            return {"info": {}, "id": None, "status": None}

    with pytest.raises(Unreachable) as error:
        run(CcxtVenue(Silent()).create_order(request("c1", "buy", "1", D(1))))
    assert error.value.error == "BadResponse" and "c1" in error.value.message


@pytest.mark.parametrize(
    ("mode", "precision", "steps"),
    [
        (ccxt.TICK_SIZE, {"amount": 0.001, "price": 0.5}, (D("0.001"), D("0.5"))),
        (ccxt.DECIMAL_PLACES, {"amount": 3, "price": 0}, (D("0.001"), D(1))),
        (ccxt.SIGNIFICANT_DIGITS, {"amount": 5, "price": 5}, (None, None)),
        (ccxt.TICK_SIZE, {"amount": None, "price": 0}, (None, None)),
    ],
)
def test_precision_becomes_steps_in_every_precision_mode(
    mode: int, precision: dict[str, Any], steps: tuple[Decimal | None, Decimal | None]
) -> None:
    market = {
        "symbol": "X/Y:Y",
        "base": "X",
        "quote": "Y",
        "settle": "Y",
        "swap": True,
        "precision": precision,
        "limits": {"amount": {"min": 0.1}, "cost": {"min": "5"}},
        "contractSize": 10,
    }
    made = market_of(market, mode)
    assert (made.amount_step, made.price_step) == steps
    assert (made.contract, made.min_amount, made.min_cost, made.contract_size) == (
        True,
        D("0.1"),
        D(5),
        D(10),
    )


def test_ccxts_rate_limiter_is_turned_on() -> None:
    ex = ccxt_async.binance({"enableRateLimit": False})
    CcxtVenue(ex)
    assert ex.enableRateLimit is True


# -- ccxt's exceptions, class by class ---------------------------------------------------------

EXPECTED: dict[str, type[VenueError]] = {
    "BaseError": Unreachable,  # neither branch: the outcome is not known
    "ExchangeError": Refused,
    "AuthenticationError": Refused,
    "PermissionDenied": Refused,
    "AccountNotEnabled": Refused,
    "AccountSuspended": Refused,
    "ArgumentsRequired": Refused,
    "BadRequest": Refused,
    "BadSymbol": Refused,
    "OperationRejected": Refused,
    "NoChange": Refused,
    "MarginModeAlreadySet": Refused,
    "MarketClosed": Refused,
    "ManualInteractionNeeded": Refused,
    "RestrictedLocation": Refused,
    "InsufficientFunds": Refused,
    "InvalidAddress": Refused,
    "AddressPending": Refused,
    "InvalidOrder": Refused,
    "OrderNotFound": NotFound,
    "OrderNotCached": Refused,  # ccxt's cache lacks it: says nothing of the venue
    "OrderImmediatelyFillable": Refused,
    "OrderNotFillable": Refused,
    "DuplicateOrderId": Refused,
    "ContractUnavailable": Refused,
    "NotSupported": Refused,
    "InvalidProxySettings": Refused,
    "ExchangeClosedByUser": Refused,
    "OperationFailed": Unreachable,
    "NetworkError": Unreachable,
    "DDoSProtection": Unreachable,
    "RateLimitExceeded": Unreachable,
    "ExchangeNotAvailable": Unreachable,
    "OnMaintenance": Unreachable,
    "InvalidNonce": Unreachable,
    "ChecksumError": Unreachable,
    "RequestTimeout": Unreachable,
    "BadResponse": Unreachable,
    "NullResponse": Unreachable,
    "CancelPending": Unreachable,
    "UnsubscribeError": Unreachable,
}


def every_ccxt_error() -> Iterator[str]:
    from ccxt.base.errors import error_hierarchy

    def walk(tree: dict[str, Any]) -> Iterator[str]:
        for name, below in tree.items():
            yield name
            yield from walk(below)

    return walk(error_hierarchy)


def test_every_ccxt_error_class_is_classified() -> None:
    assert sorted(every_ccxt_error()) == sorted(EXPECTED)


class Raising:
    """A ccxt-shaped exchange whose every call raises ``error``."""

    id = "raising"
    has: ClassVar[dict[str, bool]] = {}

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def fetch_balance(self) -> dict[str, Any]:
        raise self.error


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_ccxt_error_becomes_the_core_error_named_after_it(name: str) -> None:
    exc = getattr(ccxt, name)(f"raising {name}")
    with pytest.raises(VenueError) as raised:
        run(CcxtVenue(Raising(exc)).fetch_balance())
    assert type(raised.value) is EXPECTED[name]
    assert (raised.value.error, raised.value.message) == (name, f"raising {name}")
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert raised.value.retryable is (EXPECTED[name] is Unreachable)


def test_an_exception_from_outside_ccxt_is_unreachable_its_outcome_unknown() -> None:
    with pytest.raises(Unreachable) as raised:
        run(CcxtVenue(Raising(KeyError("info"))).fetch_balance())
    assert raised.value.error == "KeyError"


def test_cancellation_is_never_mapped() -> None:
    with pytest.raises(asyncio.CancelledError):
        run(CcxtVenue(Raising(asyncio.CancelledError())).fetch_balance())


@pytest.mark.parametrize(
    ("message", "seconds"),
    [
        ("binance 429 Too Many Requests, retry after 7s", 7.0),
        ("Retry-After: 3", 3.0),
        ('{"code": 10006, "retryAfter": 1500ms}', 1.5),
        ("ExchangeNotAvailable: OrderRouter: busy, retry after 2.5s", 2.5),
        ("429 Too Many Requests", None),
    ],
)
def test_a_rate_limit_carries_the_venues_retry_after(message: str, seconds: float | None) -> None:
    error = venue_error(ccxt.RateLimitExceeded(message))
    assert isinstance(error, Unreachable) and error.retry_after == seconds


# -- secrets ----------------------------------------------------------------------------------

KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNi+1e3UZjIn/lVN65XAbvqqM6A7H5fATj0j="
PASSWORD = "correct horse battery"


class Response:
    """Just enough of an aiohttp response for ccxt's fetch."""

    reason = "status"

    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body
        self.headers = {"Content-Type": "application/json"}

    async def text(self, errors: str = "strict") -> str:
        return self.body

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class Session:
    """An aiohttp session that answers from a function: ccxt runs its whole request path
    (signing, headers, logging, its own error handling) and nothing leaves the machine."""

    headers: ClassVar[dict[str, str]] = {}
    closed = False

    def __init__(self, answer: Callable[[str, str], tuple[int, Any]]) -> None:
        self.answer = answer
        self.sent: list[str] = []

    def _request(self, method: str, url: Any, **kwargs: Any) -> Response:
        self.sent.append(f"{method} {url} {kwargs.get('headers')} {kwargs.get('data')!r}")
        status, body = self.answer(method, str(url))
        return Response(status, json.dumps(body))

    def get(self, url: Any, **kwargs: Any) -> Response:
        return self._request("GET", url, **kwargs)

    def post(self, url: Any, **kwargs: Any) -> Response:
        return self._request("POST", url, **kwargs)

    def delete(self, url: Any, **kwargs: Any) -> Response:
        return self._request("DELETE", url, **kwargs)

    async def close(self) -> None:
        return None


def leaks(text: str | bytes) -> list[str]:
    import urllib.parse

    data = text.decode() if isinstance(text, bytes) else text
    forms: dict[str, tuple[str, ...]] = {
        s: (s, urllib.parse.quote(s, safe=""), json.dumps(s)[1:-1]) for s in (KEY, SECRET)
    }
    forms[PASSWORD] = (PASSWORD, urllib.parse.quote(PASSWORD, safe=""))
    return [secret[:6] for secret, spelled in forms.items() if any(f in data for f in spelled)]


def test_secrets_never_reach_an_event_an_error_or_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fx = fixture("binance")
    order = recorded("binance", "createOrder")
    # A venue echoing the credentials back (in a payload, in an error message).
    echoed = {**order, "note": f"key {KEY} secret={SECRET}", KEY: [PASSWORD]}
    trades = [{**t, "apiKey": KEY} for t in recorded("binance", "fetchMyTrades")]

    def answer(method: str, url: str) -> tuple[int, Any]:
        if method == "POST" and "/order" in url:
            return 200, echoed
        if "myTrades" in url:
            return 200, trades
        if "/account" in url:
            return 400, {"code": -2014, "msg": f"API-key format invalid: {KEY} ({SECRET})"}
        return 503, f"unavailable {url}"

    session = Session(answer)

    async def check() -> list[Event | VenueError]:
        ex = ccxt_async.binance(
            {
                "apiKey": KEY,
                "secret": SECRET,
                "password": PASSWORD,
                "session": session,
                "options": fx.get("options", {}),
            }
        )
        ex.rateLimit = 1  # the limiter stays on, without real waits worth noticing
        ex.set_markets({s: ex.safe_market_structure(m) for s, m in fx["markets"].items()})
        venue = CcxtVenue(ex)
        seen: list[Event | VenueError] = []
        seen += await venue.create_order(request("c1", "buy", "0.05", D(241), asset="SOL/USDT"))
        seen += await venue.fetch_my_trades("LTC/USDT", since_ms=1_698_138_992_358)
        for call in (venue.fetch_balance, lambda: venue.fetch_open_orders("LTC/USDT")):
            with pytest.raises(VenueError) as raised:
                await call()
            seen.append(raised.value)
        ex.timeout_on_exit = 0
        await ex.close()
        return seen

    with caplog.at_level(logging.DEBUG):
        seen = run(check())
    ack, observed, trade, refused, unavailable = seen
    # The requests really carried the credentials (so there was something to leak) ...
    assert any(KEY in sent for sent in session.sent)
    # ... and nothing the adapter gave out, or any log line, holds one.
    for item in seen:
        assert leaks(repr(item)) == [], item
        if isinstance(item, Observation):
            assert leaks(item.raw) == [] and b"***" in item.raw
        else:
            assert isinstance(item, VenueError)
            assert leaks(item.message) == [] and leaks(str(item)) == []
    assert isinstance(refused, Refused) and refused.error == "AuthenticationError"
    assert "API-key format invalid: *** (***)" in refused.message
    assert isinstance(unavailable, Unreachable) and "signature=***" in unavailable.message
    assert caplog.records and any("X-MBX-APIKEY" in r.getMessage() for r in caplog.records)
    assert [r.getMessage() for r in caplog.records if leaks(r.getMessage())] == []
    # The unified fields are the venue's, untouched; raw keeps the rest of the payload.
    assert isinstance(observed, OrderObserved) and observed.order_id == "9780331417"
    assert raw_of(observed)["info"]["note"] == "key *** secret=***"
    assert raw_of(observed)["info"]["***"] == ["***"]
    assert isinstance(trade, TradeObserved) and trade.trade_id == "309520010"
    assert isinstance(ack, OrderAcknowledged)
