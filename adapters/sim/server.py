"""A loopback exchange that speaks Binance's spot REST API, over the simulated venue's books.

An engine talks to it over real HTTP through an unmodified ``ccxt.async_support.binance``
(``binance_client(url)`` builds one configured for it), so the engine can be SIGKILLed and
restarted while the venue, in another process, keeps its state (``start_server`` runs it as a
subprocess; ``python -m adapters.sim.server`` is the same thing by hand).

What it serves (every URL ccxt 4.5.90's binance calls for these, spot only):

- public: ``GET /api/v3/ping``, ``/time``, ``/exchangeInfo`` (load_markets),
  ``/ticker/24hr`` (fetch_ticker, fetch_tickers);
- signed (HMAC-SHA256 over the query string followed by the body, ``X-MBX-APIKEY``, the
  ``timestamp`` inside ``recvWindow``, exactly as Binance checks them):
  ``POST /api/v3/order`` (create_order: LIMIT, MARKET, LIMIT_MAKER; GTC/IOC/FOK; ACK, RESULT or
  FULL answers), ``DELETE /api/v3/order`` (cancel_order), ``DELETE /api/v3/openOrders``
  (cancel_all_orders), ``GET /api/v3/order`` (fetch_order by orderId or origClientOrderId),
  ``/openOrders``, ``/allOrders`` (fetch_orders, fetch_closed_orders), ``/myTrades``
  (fetch_my_trades, fetch_order_trades), ``/account`` (fetch_balance);
- ``GET /_sim/truth``: unsigned, for tests only: the venue's balances, open orders, every
  order ever placed (with its client order id), every fill, and the faults injected by kind.

Errors are Binance's bodies and HTTP statuses, so ccxt raises what it raises against Binance:
-1022 bad signature, -2014 / -2015 missing or unknown API key (401), -1021 outside the
recvWindow, -1102 a missing parameter, -1121 an unknown symbol, -1013 filter failures,
-2010 refused orders (insufficient balance, post-only that would take, "Duplicate order sent."),
-2011 a cancel of an order that is not open, -2013 an order that does not exist.
A ``newClientOrderId`` must be unique among OPEN orders, as on Binance: one that an open order
holds is refused ("Duplicate order sent.") and never placed twice; one whose order is over is
accepted again (Binance does), and ``/_sim/truth`` shows it placed twice.

Time is the wall clock; the price path moves one tick per ``tick_seconds`` (a small one makes
orders fill fast). Faults (``ServerFaults``, off by default) are drawn per request from a
stream seeded by the server's seed, so the n-th request meets the same fault in every run:
answers slower than the client's timeout, 429 and 418 with Retry-After, 500/502/503 with
Binance-like bodies, connections closed without an answer, and creates or cancels that take
effect but whose answer is then late or lost. With ``state`` the venue survives a restart of
the server (a pickle written after every change: only load files you wrote).

Not served: websockets (ccxt.async_support.binance has no ``watch_*``: the engine's watchers
poll), futures, margin, and quote-quantity market orders.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import pickle
import random
import re
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import attrs
import ccxt
from aiohttp import web

from adapters.sim.clock import RealClock, SimClock
from adapters.sim.exchange import SimExchange, Truth
from adapters.sim.markets import DEFAULT_MARKETS
from adapters.sim.venue import SimFill, SimOrder, Venue

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET",
    "BinanceError",
    "ServerFaults",
    "ServerProcess",
    "ServerTruth",
    "SimServer",
    "binance_client",
    "fault_schedule",
    "start_server",
]

DEFAULT_API_KEY = "simApiKey0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789ab"
DEFAULT_SECRET = "simSecret0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789a"
"""The simulator's own test credentials (nothing real): Binance's are 64 characters."""

ZERO = Decimal(0)
_DEFAULT_RECV_WINDOW = 5_000
_MAX_RECV_WINDOW = 60_000
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_ID_CHARS = string.ascii_letters + string.digits
_MAX_QTY = "9000000.00000000"
_MAX_PRICE = "1000000000.00000000"
_MUTATING = frozenset({("POST", "order"), ("DELETE", "order"), ("DELETE", "openOrders")})
_STATUS = {
    "open": "NEW",
    "closed": "FILLED",
    "canceled": "CANCELED",
    "expired": "EXPIRED",
    "rejected": "REJECTED",
}


# -- numbers --------------------------------------------------------------------------------


def _num(value: Decimal | None, places: int = 8) -> str:
    """A decimal as Binance writes one (at least 8 decimals), never rounded: the venue's
    balances can hold 10 (its locks), and an engine must see them exactly."""
    if value is None:
        value = ZERO
    text = format(value.normalize() if value else ZERO, "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(places, '0')}"


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except ArithmeticError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None
    if not value.is_finite():
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return value


def _int(text: str | None, name: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


# -- errors ---------------------------------------------------------------------------------


class BinanceError(Exception):
    """An error answer: HTTP ``status`` and Binance's ``{"code": code, "msg": msg}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg


def _missing(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


# -- faults ---------------------------------------------------------------------------------


@attrs.frozen
class ServerFaults:
    """Probabilities of each fault, per request, drawn from the server's seeded fault stream
    (one draw a request, whatever it is: see ``fault_schedule``).

    Before the request reaches the venue (nothing is done):

    - ``slow``: the answer comes ``delay`` seconds late (set the client's timeout under it);
    - ``rate_limit``: 429, ``ban``: 418, both with ``Retry-After: retry_after`` and Binance's
      -1003 body (ccxt: DDoSProtection);
    - ``server_error``: 500 (-1001 "Internal error"), 502 (an HTML gateway page) or 503 (-1008
      "Server is currently overloaded"), one of the three drawn;
    - ``reset``: the connection is closed without an answer. aiohttp (under ccxt) sends an
      idempotent request (GET, DELETE) again, once, when that happens on a reused connection,
      so most resets of those surface as nothing, or as the answer to the second try (a
      cancel's "Unknown order sent." when the first had canceled it); a create is not sent
      again: it surfaces as ExchangeNotAvailable.

    After it took effect (creates and cancels only; drawn for every request, applied to those):

    - ``slow_after``: the order is placed (or canceled), then the answer is ``delay`` late;
    - ``reset_after``: the order is placed (or canceled), then the connection is closed.
    """

    slow: float = 0.0
    rate_limit: float = 0.0
    ban: float = 0.0
    server_error: float = 0.0
    reset: float = 0.0
    slow_after: float = 0.0
    reset_after: float = 0.0
    delay: float = 3.0
    retry_after: int = 1

    KINDS: ClassVar[tuple[str, ...]] = (
        "slow",
        "rate_limit",
        "ban",
        "server_error",
        "reset",
        "slow_after",
        "reset_after",
    )
    AFTER: ClassVar[frozenset[str]] = frozenset({"slow_after", "reset_after"})

    def __attrs_post_init__(self) -> None:
        total = sum(getattr(self, kind) for kind in self.KINDS)
        if any(not 0 <= getattr(self, kind) <= 1 for kind in self.KINDS) or total > 1:
            raise ValueError(f"fault rates must be in [0, 1] and add up to at most 1: {self}")
        if self.delay < 0 or self.retry_after < 0:
            raise ValueError("delay and retry_after must be >= 0")

    @classmethod
    def every(cls, rate: float, **more: Any) -> ServerFaults:
        """Every kind at ``rate``."""
        rates: dict[str, Any] = dict.fromkeys(cls.KINDS, rate)
        return cls(**rates, **more)

    @classmethod
    def parse(cls, spec: str) -> ServerFaults:
        """From ``"slow=0.05,rate_limit=0.1,delay=2.5"`` (``all=R`` sets every kind; an
        empty spec is no faults)."""
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep:
                raise ValueError(f"fault spec {part!r} is not name=value")
            if name == "all":
                values.update(dict.fromkeys(cls.KINDS, float(value)))
            elif name == "retry_after":
                values[name] = int(value)
            elif name in cls.KINDS or name == "delay":
                values[name] = float(value)
            else:
                raise ValueError(f"no fault {name!r}: one of {', '.join(cls.KINDS)}, delay")
        return cls(**values)

    def spec(self) -> str:
        """The spec ``parse`` reads back into these faults."""
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in attrs.fields(type(self)))

    def draw(self, rng: random.Random) -> str | None:
        """The fault for the next request (None: none): one draw from ``rng`` (two for a
        server error, whose status is drawn too, by the caller)."""
        point = rng.random()
        edge = 0.0
        for kind in self.KINDS:
            edge += getattr(self, kind)
            if point < edge:
                return kind
        return None


def _fault_rng(seed: int) -> random.Random:
    return random.Random(f"{seed}:server-faults")


def fault_schedule(seed: int, faults: ServerFaults, requests: int) -> list[str | None]:
    """The faults the first ``requests`` requests to a server of ``seed`` meet (before it
    is known whether each is a create or cancel; the ``*_after`` kinds apply only to those,
    and a server error's status is drawn from the same stream)."""
    rng = _fault_rng(seed)
    found: list[str | None] = []
    for _ in range(requests):
        kind = faults.draw(rng)
        if kind == "server_error":
            rng.choice((500, 502, 503))
        found.append(kind)
    return found


# -- truth ----------------------------------------------------------------------------------


@attrs.frozen
class ServerTruth(Truth):
    """The venue's truth (as ``SimExchange.truth()`` gives it: balances, positions, open
    orders, fills), and what only the server knows: every order ever placed, the faults it
    injected by kind, the requests it answered."""

    orders: list[dict[str, Any]]
    """Every order ever placed, in placement order: id, client_order_id, symbol, side, type,
    amount, price, status, filled, cost."""
    faults: dict[str, int]
    requests: int
    now_ms: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerTruth:
        return cls(
            balances={
                c: {k: Decimal(v) for k, v in b.items()} for c, b in data["balances"].items()
            },
            positions={},
            open_orders=[_order_from_json(o) for o in data["open_orders"]],
            fills=[_fill_from_json(f) for f in data["fills"]],
            orders=[_order_from_json(o) for o in data["orders"]],
            faults={str(k): int(v) for k, v in data["faults"].items()},
            requests=int(data["requests"]),
            now_ms=int(data["now_ms"]),
        )

    def client_order_ids(self) -> list[str]:
        """The client order id of every order ever placed (one per placement)."""
        return [str(o["client_order_id"]) for o in self.orders if o["client_order_id"]]


_ORDER_DECIMALS = ("amount", "price", "filled", "cost", "fee")


def _order_json(order: SimOrder) -> dict[str, Any]:
    return {
        "id": order.id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "amount": str(order.amount),
        "price": None if order.price is None else str(order.price),
        "status": order.status,
        "filled": str(order.filled),
        "cost": str(order.cost),
        "fee": str(order.fee),
        "fee_currency": order.fee_currency,
        "timestamp": order.timestamp,
        "last_update_timestamp": order.last_update_timestamp,
    }


def _order_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (Decimal(v) if k in _ORDER_DECIMALS and v is not None else v) for k, v in data.items()
    }


def _fill_json(fill: SimFill) -> dict[str, Any]:
    return {
        "id": fill.id,
        "order_id": fill.order_id,
        "symbol": fill.symbol,
        "side": fill.side,
        "price": str(fill.price),
        "amount": str(fill.amount),
        "cost": str(fill.cost),
        "fee": str(fill.fee),
        "fee_currency": fill.fee_currency,
        "taker_or_maker": fill.taker_or_maker,
        "timestamp": fill.timestamp,
    }


def _fill_from_json(data: Mapping[str, Any]) -> SimFill:
    return SimFill(
        id=data["id"],
        order_id=data["order_id"],
        symbol=data["symbol"],
        side=data["side"],
        price=Decimal(data["price"]),
        amount=Decimal(data["amount"]),
        cost=Decimal(data["cost"]),
        fee=Decimal(data["fee"]),
        fee_currency=data["fee_currency"],
        taker_or_maker=data["taker_or_maker"],
        timestamp=int(data["timestamp"]),
    )


# -- the server -----------------------------------------------------------------------------


def spot_markets() -> dict[str, dict[str, Any]]:
    """The default markets the server lists: the simulated venue's spot ones."""
    return {s: m for s, m in DEFAULT_MARKETS.items() if m["spot"]}


class SimServer:
    """The Binance-compatible HTTP front of one simulated venue (see the module docstring).

    In this process: ``async with SimServer(...).running() as server`` serves on
    ``server.url`` until the block ends; ``server.truth()`` reads the venue directly.
    """

    STATE_VERSION = 1

    def __init__(
        self,
        *,
        seed: int = 0,
        faults: ServerFaults | None = None,
        tick_seconds: float = 1.0,
        balances: Mapping[str, Any] | None = None,
        markets: Mapping[str, dict[str, Any]] | None = None,
        partial_fills: bool = True,
        api_key: str = DEFAULT_API_KEY,
        secret: str = DEFAULT_SECRET,
        state: str | os.PathLike[str] | None = None,
        clock: SimClock | None = None,
    ) -> None:
        wanted = dict(markets or spot_markets())
        if any(not m["spot"] for m in wanted.values()):
            raise ValueError("the Binance server serves spot markets only")
        self.seed = seed
        self.faults = faults or ServerFaults()
        self.clock: SimClock = clock or RealClock()
        self.exchange = SimExchange(
            seed,
            clock=self.clock,
            markets=wanted,
            balances=balances,
            tick_seconds=tick_seconds,
            partial_fills=partial_fills,
            websocket=False,
        )
        self.api_key = api_key
        self._secret = secret.encode()
        self.state = None if state is None else Path(state)
        self._by_id = {str(m["id"]): s for s, m in self.exchange.markets.items()}
        self._faults = _fault_rng(seed)
        self._ids = random.Random(f"{seed}:client-ids")
        self.fault_counts: Counter[str] = Counter()
        self.fault_log: list[tuple[int, str, str]] = []
        """(request number, fault kind, "METHOD /path") of every fault injected."""
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._lingering: set[asyncio.Task[Any]] = set()
        if self.state is not None and self.state.exists():
            self._load(self.state)

    # -- state ------------------------------------------------------------------------------

    @property
    def venue(self) -> Venue:
        return self.exchange.venue

    def save(self, path: str | os.PathLike[str]) -> None:
        """Keep the venue, the fault stream and the counts in ``path`` (atomically)."""
        target = Path(path)
        staged = target.with_name(target.name + ".tmp")
        kept = {
            "version": self.STATE_VERSION,
            "seed": self.seed,
            "venue": self.venue,
            "faults": self._faults.getstate(),
            "ids": self._ids.getstate(),
            "fault_counts": dict(self.fault_counts),
            "fault_log": self.fault_log,
            "requests": self.requests,
        }
        with staged.open("wb") as out:
            pickle.dump(kept, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, target)

    def _load(self, path: Path) -> None:
        with path.open("rb") as source:
            kept = pickle.load(source)  # our own file: see save
        if not isinstance(kept, dict) or kept.get("version") != self.STATE_VERSION:
            raise ValueError(f"{path} is not a server state saved by this version")
        if kept["seed"] != self.seed:
            raise ValueError(
                f"{path} was saved by a server of seed {kept['seed']}, not {self.seed}"
            )
        venue = kept["venue"]
        if set(venue.markets) != set(self.exchange.markets):
            raise ValueError(f"{path} holds other markets ({', '.join(venue.markets)})")
        self.exchange.venue = venue
        self._faults.setstate(kept["faults"])
        self._ids.setstate(kept["ids"])
        self.fault_counts = Counter(kept["fault_counts"])
        self.fault_log = list(kept["fault_log"])
        self.requests = int(kept["requests"])

    def _now(self) -> int:
        """Bring the venue to the clock's time; that time in ms."""
        now = self.clock.now_ms()
        self.venue.advance_to(now)
        self.venue.take_changes()  # nobody streams them: keep the lists from growing
        return now

    # -- truth ------------------------------------------------------------------------------

    def truth_json(self) -> dict[str, Any]:
        now = self._now()
        venue = self.venue
        currencies = sorted(set(venue.free) | set(venue.used))
        return {
            "now_ms": now,
            "balances": {
                c: {
                    "free": str(venue.free.get(c, ZERO)),
                    "used": str(venue.used.get(c, ZERO)),
                    "total": str(venue.total(c)),
                }
                for c in currencies
            },
            "open_orders": [_order_json(o) for o in venue.open_orders()],
            "orders": [_order_json(o) for o in venue.orders.values()],
            "fills": [_fill_json(f) for f in venue.fills],
            "faults": dict(sorted(self.fault_counts.items())),
            "requests": self.requests,
        }

    def truth(self) -> ServerTruth:
        return ServerTruth.from_json(self.truth_json())

    # -- serving ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port); the URL."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        self._runner = runner
        server = site._server
        assert server is not None
        sockets: Sequence[Any] = getattr(server, "sockets", None) or ()
        bound = int(sockets[0].getsockname()[1])
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        for task in list(self._lingering):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.state is not None:
            self.save(self.state)

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[SimServer]:
        await self.start(host, port)
        try:
            yield self
        finally:
            await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/_sim/"):
            if path == "/_sim/truth" and request.method == "GET":
                return web.json_response(self.truth_json())
            return _error_response(BinanceError(404, -1000, f"no sim endpoint {path}"))
        self.requests += 1
        number = self.requests
        kind = self.faults.draw(self._faults)
        endpoint = path.removeprefix("/api/v3/")
        mutating = (request.method, endpoint) in _MUTATING
        where = f"{request.method} {path}"
        if kind is not None and kind not in ServerFaults.AFTER:
            return await self._fault(request, kind, number, where)
        try:
            status, body = await self._answer(request, endpoint)
        except BinanceError as exc:
            return _error_response(exc)
        if mutating:
            if self.state is not None:
                self.save(self.state)
            if kind in ServerFaults.AFTER:
                return await self._fault(request, str(kind), number, where, answer=body)
        return web.json_response(body, status=status)

    def _count(self, kind: str, number: int, where: str) -> None:
        self.fault_counts[kind] += 1
        self.fault_log.append((number, kind, where))

    async def _fault(
        self, request: web.Request, kind: str, number: int, where: str, answer: Any = None
    ) -> web.StreamResponse:
        if kind == "server_error":
            status = self._faults.choice((500, 502, 503))
            self._count(kind, number, where)
            if status == 502:
                page = "<html><head><title>502 Bad Gateway</title></head><body></body></html>"
                return web.Response(status=502, text=page, content_type="text/html")
            if status == 500:
                error = BinanceError(
                    500, -1001, "Internal error; unable to process your request. Please try again."
                )
            else:
                error = BinanceError(
                    503,
                    -1008,
                    "Server is currently overloaded with other requests. Please try again in a"
                    " few minutes.",
                )
            return _error_response(error)
        self._count(kind, number, where)
        if kind in ("rate_limit", "ban"):
            if kind == "ban":
                until = self.clock.now_ms() + self.faults.retry_after * 1000
                error = BinanceError(
                    418,
                    -1003,
                    f"Way too much request weight used; IP banned until {until}. Please use"
                    " WebSocket Streams for live updates to avoid bans.",
                )
            else:
                error = BinanceError(
                    429,
                    -1003,
                    "Too much request weight used; current limit is 6000 request weight per 1"
                    " MINUTE. Please use WebSocket Streams for live updates to avoid polling"
                    " the API.",
                )
            response = _error_response(error)
            response.headers["Retry-After"] = str(self.faults.retry_after)
            return response
        if kind in ("reset", "reset_after"):
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError  # aiohttp's way to end a handler that has no answer
        # slow, slow_after: answer late (the client has given up by then)
        await self._linger(self.faults.delay)
        if kind == "slow_after":
            return web.json_response(answer)
        return _error_response(
            BinanceError(
                503,
                -1007,
                "Timeout waiting for response from backend server. Send status unknown;"
                " execution status unknown.",
            )
        )

    async def _linger(self, seconds: float) -> None:
        task = asyncio.ensure_future(asyncio.sleep(seconds))
        self._lingering.add(task)
        try:
            await task
        finally:
            self._lingering.discard(task)

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.body_exists:
            body = await request.text()
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        return params

    async def _answer(self, request: web.Request, endpoint: str) -> tuple[int, Any]:
        method = request.method
        public: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
            ("GET", "ping"): lambda p: {},
            ("GET", "time"): lambda p: {"serverTime": self._now()},
            ("GET", "exchangeInfo"): self._exchange_info,
            ("GET", "ticker/24hr"): self._tickers,
        }
        signed: dict[tuple[str, str], Callable[[dict[str, str]], Any]] = {
            ("POST", "order"): self._create,
            ("DELETE", "order"): self._cancel,
            ("DELETE", "openOrders"): self._cancel_all,
            ("GET", "order"): self._fetch_order,
            ("GET", "openOrders"): self._open_orders,
            ("GET", "allOrders"): self._all_orders,
            ("GET", "myTrades"): self._my_trades,
            ("GET", "account"): self._account,
        }
        key = (method, endpoint)
        if request.path.startswith("/api/v3/"):
            if key in public:
                return 200, public[key](await self._params(request))
            if key in signed:
                params = await self._verify(request)
                self._now()
                return 200, signed[key](params)
        print(f"sim server: not served: {method} {request.path}", file=sys.stderr, flush=True)
        raise BinanceError(404, -1000, f"sim: {method} {request.path} is not served")

    async def _verify(self, request: web.Request) -> dict[str, str]:
        """Binance's checks of a signed request: the API key, then the signature (HMAC-SHA256
        of the query string followed by the body, the signature itself left out), then the
        timestamp against the recvWindow. The parameters, if all pass."""
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        query = request.rel_url.raw_query_string
        body = await request.text() if request.body_exists else ""
        signature: str | None = None
        parts: list[str] = []
        for raw in (query, body):
            kept = []
            for pair in filter(None, raw.split("&")):
                name, _, value = pair.partition("=")
                if name == "signature":
                    signature = urllib.parse.unquote_plus(value)
                else:
                    kept.append(pair)
            parts.append("&".join(kept))
        if not signature:
            raise _missing("signature")
        payload = parts[0] + parts[1]
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        params.pop("signature", None)
        stamp = _int(params.get("timestamp"), "timestamp")
        if stamp is None:
            raise _missing("timestamp")
        window = _int(params.get("recvWindow"), "recvWindow")
        window = _DEFAULT_RECV_WINDOW if window is None else window
        if window > _MAX_RECV_WINDOW:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        now = self.clock.now_ms()
        if stamp >= now + 1000 or now - stamp > window:
            raise BinanceError(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )
        return params

    # -- public endpoints -------------------------------------------------------------------

    def _symbol(self, params: Mapping[str, str], required: bool = True) -> str | None:
        market_id = params.get("symbol")
        if not market_id:
            if required:
                raise _missing("symbol")
            return None
        symbol = self._by_id.get(market_id)
        if symbol is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return symbol

    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        now = self._now()
        symbols = []
        for _, market in sorted(self.exchange.markets.items()):
            info = market["info"]
            minimum = market["limits"]["amount"]["min"]
            symbols.append(
                {
                    "symbol": market["id"],
                    "status": "TRADING",
                    "baseAsset": market["base"],
                    "baseAssetPrecision": 8,
                    "quoteAsset": market["quote"],
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": False,
                    "ocoAllowed": False,
                    "otoAllowed": False,
                    "quoteOrderQtyMarketAllowed": False,
                    "allowTrailingStop": False,
                    "cancelReplaceAllowed": False,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _num(Decimal(info["tickSize"])),
                            "maxPrice": _MAX_PRICE,
                            "tickSize": _num(Decimal(info["tickSize"])),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _num(Decimal(repr(float(minimum or 0)))),
                            "maxQty": _MAX_QTY,
                            "stepSize": _num(Decimal(info["stepSize"])),
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_MAKER"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": now,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _ticker(self, symbol: str) -> dict[str, Any]:
        venue = self.venue
        bid, ask = venue.bid_ask(symbol)
        last = venue.mid(symbol)
        day = 86_400_000
        opened = venue.price_at(symbol, max(0, venue.tick - day // venue.tick_ms))
        prices = (opened, last, bid, ask)  # not every tick of a day: a ticker must be cheap
        change = last - opened
        return {
            "symbol": self.exchange.markets[symbol]["id"],
            "priceChange": _num(change),
            "priceChangePercent": f"{(change / opened * 100):.3f}" if opened else "0.000",
            "weightedAvgPrice": _num(last),
            "prevClosePrice": _num(opened),
            "lastPrice": _num(last),
            "lastQty": _num(ZERO),
            "bidPrice": _num(bid),
            "bidQty": _num(Decimal(1)),
            "askPrice": _num(ask),
            "askQty": _num(Decimal(1)),
            "openPrice": _num(opened),
            "highPrice": _num(max(prices)),
            "lowPrice": _num(min(prices)),
            "volume": _num(ZERO),
            "quoteVolume": _num(ZERO),
            "openTime": max(venue.start_ms, venue.now - day),
            "closeTime": venue.now,
            "firstId": -1,
            "lastId": -1,
            "count": 0,
        }

    def _tickers(self, params: dict[str, str]) -> Any:
        self._now()
        symbol = self._symbol(params, required=False)
        if symbol is not None:
            return self._ticker(symbol)
        listed = params.get("symbols")
        if listed:
            try:
                ids = json.loads(listed)
            except ValueError:
                raise BinanceError(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
            return [self._ticker(s) for s in (self._symbol({"symbol": str(i)}) for i in ids) if s]
        return [self._ticker(s) for s in sorted(self.exchange.markets)]

    # -- signed endpoints -------------------------------------------------------------------

    def _order(self, order: SimOrder) -> dict[str, Any]:
        """An order as GET /api/v3/order answers it."""
        return {
            "symbol": self.exchange.markets[order.symbol]["id"],
            "orderId": int(order.id),
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": _num(order.price),
            "origQty": _num(order.amount),
            "executedQty": _num(order.filled),
            "cummulativeQuoteQty": _num(order.cost),
            "status": self._status(order),
            "timeInForce": "GTC" if order.type == "market" else order.time_in_force,
            "type": self._type(order),
            "side": order.side.upper(),
            "stopPrice": _num(ZERO),
            "icebergQty": _num(ZERO),
            "time": order.timestamp,
            "updateTime": order.last_update_timestamp or order.timestamp,
            "isWorking": True,
            "workingTime": order.timestamp,
            "origQuoteOrderQty": _num(ZERO),
            "selfTradePreventionMode": "NONE",
        }

    @staticmethod
    def _status(order: SimOrder) -> str:
        if order.status == "open":
            return "PARTIALLY_FILLED" if order.filled else "NEW"
        if order.status == "canceled" and (
            order.type == "market" or order.time_in_force in ("IOC", "FOK")
        ):
            return "EXPIRED"  # what the book did not fill at once: Binance expires it
        return _STATUS[order.status]

    @staticmethod
    def _type(order: SimOrder) -> str:
        if order.type == "market":
            return "MARKET"
        return "LIMIT_MAKER" if order.post_only else "LIMIT"

    def _find(self, params: Mapping[str, str], symbol: str) -> SimOrder | None:
        order_id = _int(params.get("orderId"), "orderId")
        client_id = params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise BinanceError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        venue = self.venue
        if order_id is not None:
            order = venue.orders.get(str(order_id))
            if order is not None and client_id and order.client_order_id != client_id:
                order = None
        else:
            found = venue.by_client_id.get(str(client_id))
            order = None if found is None else venue.orders.get(found)
        if order is None or order.symbol != symbol:
            return None
        return order

    def _new_client_id(self) -> str:
        return "".join(self._ids.choice(_ID_CHARS) for _ in range(22))

    def _create(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        market = self.exchange.markets[symbol]
        side = params.get("side")
        if not side:
            raise _missing("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        kind = params.get("type")
        if not kind:
            raise _missing("type")
        if kind not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        if "quoteOrderQty" in params:
            raise BinanceError(400, -1013, "sim: quoteOrderQty is not supported; send quantity.")
        quantity_text = params.get("quantity")
        if not quantity_text:
            raise _missing("quantity")
        quantity = _decimal(quantity_text, "quantity")
        step = Decimal(market["info"]["stepSize"])
        minimum = Decimal(repr(float(market["limits"]["amount"]["min"] or 0)))
        if quantity <= 0 or quantity % step or quantity < minimum:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        price: Decimal | None = None
        tif = params.get("timeInForce")
        if kind in ("LIMIT", "LIMIT_MAKER"):
            price_text = params.get("price")
            if not price_text:
                raise _missing("price")
            price = _decimal(price_text, "price")
            if price <= 0 or price % Decimal(market["info"]["tickSize"]):
                raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        if kind == "LIMIT":
            if not tif:
                raise _missing("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise BinanceError(400, -1115, "Invalid timeInForce.")
        elif tif is not None:
            raise BinanceError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        client_id = params.get("newClientOrderId") or self._new_client_id()
        if not _CLIENT_ID.match(client_id):
            raise BinanceError(
                400,
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is"
                " '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        respond = params.get("newOrderRespType", "FULL")
        if respond not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(
                400, -1100, "Illegal characters found in parameter 'newOrderRespType'."
            )
        venue = self.venue
        held = venue.by_client_id.get(client_id)
        if held is not None:
            if venue.orders[held].status == "open":
                raise BinanceError(400, -2010, "Duplicate order sent.")
            del venue.by_client_id[client_id]  # unique among open orders only, as on Binance
        venue_params: dict[str, Any] = {"clientOrderId": client_id}
        if kind == "LIMIT_MAKER":
            venue_params["postOnly"] = True
        elif kind == "LIMIT":
            venue_params["timeInForce"] = tif
        try:
            order = venue.create_order(
                symbol,
                "market" if kind == "MARKET" else "limit",
                side.lower(),
                quantity,
                price,
                venue_params,
            )
        except ccxt.InsufficientFunds:
            self._restore(client_id, held)
            raise BinanceError(
                400, -2010, "Account has insufficient balance for requested action."
            ) from None
        except ccxt.OrderImmediatelyFillable:
            self._restore(client_id, held)
            raise BinanceError(400, -2010, "Order would immediately match and take.") from None
        except ccxt.InvalidOrder as exc:
            self._restore(client_id, held)
            raise BinanceError(400, -1013, f"Filter failure: {exc}") from None
        venue.take_changes()
        answer: dict[str, Any] = {
            "symbol": market["id"],
            "orderId": int(order.id),
            "orderListId": -1,
            "clientOrderId": client_id,
            "transactTime": order.timestamp,
        }
        if respond == "ACK":
            return answer
        full = self._order(order)
        for name in (
            "price",
            "origQty",
            "executedQty",
            "origQuoteOrderQty",
            "cummulativeQuoteQty",
            "status",
            "timeInForce",
            "type",
            "side",
            "workingTime",
        ):
            answer[name] = full[name]
        if respond == "FULL":
            answer["fills"] = [
                {
                    "price": _num(f.price),
                    "qty": _num(f.amount),
                    "commission": _num(f.fee),
                    "commissionAsset": f.fee_currency,
                    "tradeId": int(f.id),
                }
                for f in order.trades
            ]
        answer["selfTradePreventionMode"] = "NONE"
        return answer

    def _restore(self, client_id: str, held: str | None) -> None:
        """A refused order leaves the client id to the order that held it before."""
        if held is not None:
            self.venue.by_client_id.setdefault(client_id, held)

    def _canceled(self, order: SimOrder, client_id: str | None) -> dict[str, Any]:
        full = self._order(order)
        return {
            "symbol": full["symbol"],
            "origClientOrderId": order.client_order_id,
            "orderId": int(order.id),
            "orderListId": -1,
            "clientOrderId": client_id or self._new_client_id(),
            "transactTime": order.last_update_timestamp or self.venue.now,
            **{
                k: full[k]
                for k in (
                    "price",
                    "origQty",
                    "executedQty",
                    "cummulativeQuoteQty",
                    "status",
                    "timeInForce",
                    "type",
                    "side",
                )
            },
            "selfTradePreventionMode": "NONE",
        }

    def _cancel(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        order = self._find(params, symbol)
        if order is None or order.status != "open":
            raise BinanceError(400, -2011, "Unknown order sent.")
        self.venue.cancel_order(order.id)
        self.venue.take_changes()
        return self._canceled(order, params.get("newClientOrderId"))

    def _cancel_all(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params)
        live = [o for o in self.venue.open_orders() if o.symbol == symbol]
        if not live:
            raise BinanceError(400, -2011, "Unknown order sent.")
        for order in live:
            self.venue.cancel_order(order.id)
        self.venue.take_changes()
        return [self._canceled(o, None) for o in live]

    def _fetch_order(self, params: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(params)
        assert symbol is not None
        order = self._find(params, symbol)
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return self._order(order)

    def _open_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        symbol = self._symbol(params, required=False)
        return [
            self._order(o) for o in self.venue.open_orders() if symbol is None or o.symbol == symbol
        ]

    @staticmethod
    def _limit(params: Mapping[str, str]) -> int:
        limit = _int(params.get("limit"), "limit")
        if limit is None:
            return 500
        if not 1 <= limit <= 1000:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'limit'.")
        return limit

    def _all_orders(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Binance's allOrders: from ``orderId`` on, else within ``startTime``/``endTime``,
        the OLDEST ``limit`` of them; with neither, the NEWEST ``limit``."""
        symbol = self._symbol(params)
        limit = self._limit(params)
        from_id = _int(params.get("orderId"), "orderId")
        start = _int(params.get("startTime"), "startTime")
        end = _int(params.get("endTime"), "endTime")
        orders = [o for o in self.venue.orders.values() if o.symbol == symbol]
        if from_id is not None:
            chosen = [o for o in orders if int(o.id) >= from_id][:limit]
        elif start is not None or end is not None:
            chosen = [
                o
                for o in orders
                if (start is None or o.timestamp >= start) and (end is None or o.timestamp <= end)
            ][:limit]
        else:
            chosen = orders[-limit:]
        return [self._order(o) for o in chosen]

    def _trade(self, fill: SimFill) -> dict[str, Any]:
        return {
            "symbol": self.exchange.markets[fill.symbol]["id"],
            "id": int(fill.id),
            "orderId": int(fill.order_id),
            "orderListId": -1,
            "price": _num(fill.price),
            "qty": _num(fill.amount),
            "quoteQty": _num(fill.cost),
            "commission": _num(fill.fee),
            "commissionAsset": fill.fee_currency,
            "time": fill.timestamp,
            "isBuyer": fill.side == "buy",
            "isMaker": fill.taker_or_maker == "maker",
            "isBestMatch": True,
        }

    def _my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        """Binance's myTrades: the trades of ``orderId`` if given; from ``fromId`` on, else
        within ``startTime``/``endTime``, the OLDEST ``limit``; with neither, the NEWEST."""
        symbol = self._symbol(params)
        limit = self._limit(params)
        order_id = params.get("orderId")
        from_id = _int(params.get("fromId"), "fromId")
        start = _int(params.get("startTime"), "startTime")
        end = _int(params.get("endTime"), "endTime")
        fills = [
            f
            for f in self.venue.fills
            if f.symbol == symbol and (order_id is None or f.order_id == order_id)
        ]
        if from_id is not None:
            chosen = [f for f in fills if int(f.id) >= from_id][:limit]
        elif start is not None or end is not None:
            chosen = [
                f
                for f in fills
                if (start is None or f.timestamp >= start) and (end is None or f.timestamp <= end)
            ][:limit]
        else:
            chosen = fills[-limit:]
        return [self._trade(f) for f in chosen]

    def _account(self, params: dict[str, str]) -> dict[str, Any]:
        venue = self.venue
        currencies = sorted(set(venue.free) | set(venue.used))
        balances = [
            {
                "asset": c,
                "free": _num(venue.free.get(c, ZERO)),
                "locked": _num(venue.used.get(c, ZERO)),
            }
            for c in currencies
        ]
        if params.get("omitZeroBalances") == "true":
            balances = [b for b in balances if Decimal(b["free"]) or Decimal(b["locked"])]
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": venue.now,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }


def _error_response(error: BinanceError) -> web.Response:
    return web.json_response({"code": error.code, "msg": error.msg}, status=error.status)


# -- the client -----------------------------------------------------------------------------


def binance_client(
    url: str,
    api_key: str = DEFAULT_API_KEY,
    secret: str = DEFAULT_SECRET,
    *,
    pro: bool = False,
    timeout_ms: int = 10_000,
    rate_limit_ms: float = 5.0,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """An unmodified ``ccxt.async_support.binance`` whose URLs are the server's.

    Configured to ask only what the server serves: spot markets only, no currencies (a
    ``sapi`` call), no clock adjustment, no warning for open orders of every symbol.
    ``rate_limit_ms``: ccxt's throttle per unit of request weight (Binance's own is 50 ms:
    a sync would spend seconds waiting for nothing on loopback). ccxt picks the error class
    of a Binance answer by the URL's host, and a loopback URL is none of Binance's, so the
    client gets the spot table merged into the common one: what ccxt raises for
    api.binance.com. ``pro`` is refused: the server serves no websockets yet.
    """
    if pro:
        raise NotImplementedError("the simulated Binance server serves no websockets (yet)")
    import ccxt.async_support as ccxt_async

    base = url.rstrip("/")
    exchange = ccxt_async.binance(
        {
            "apiKey": api_key,
            "secret": secret,
            "timeout": timeout_ms,
            "enableRateLimit": True,
            "rateLimit": rate_limit_ms,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "adjustForTimeDifference": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
                **dict(options or {}),
            },
        }
    )
    api = dict(exchange.urls["api"])
    for name in list(api):
        api[name] = None
    api.update(
        {
            "public": f"{base}/api/v3",
            "private": f"{base}/api/v3",
            "v1": f"{base}/api/v1",
        }
    )
    exchange.urls["api"] = {k: v for k, v in api.items() if v is not None}
    spot = exchange.exceptions.get("spot", {})
    exchange.exceptions = {
        **exchange.exceptions,
        "exact": {**exchange.exceptions["exact"], **spot.get("exact", {})},
        "broad": {**exchange.exceptions["broad"], **spot.get("broad", {})},
    }
    return exchange


# -- the server as a subprocess ------------------------------------------------------------


def fetch_truth(url: str, timeout: float = 10.0) -> ServerTruth:
    """``GET /_sim/truth`` of the server at ``url`` (blocking)."""
    with urllib.request.urlopen(f"{url}/_sim/truth", timeout=timeout) as answer:
        return ServerTruth.from_json(json.load(answer))


class ServerProcess:
    """A server running in a subprocess: ``url``, ``pid``, ``truth()``, ``stop()`` (also as a
    context manager, which stops it however the block ends)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.pid = process.pid
        self.log = log

    def truth(self, timeout: float = 10.0) -> ServerTruth:
        """``GET /_sim/truth`` (blocking: from a test, not from the loop of an engine that the
        answer would wait on)."""
        return fetch_truth(self.url, timeout)

    async def truth_async(self, timeout: float = 10.0) -> ServerTruth:
        """``truth()`` from inside an event loop (in a thread, so the loop goes on)."""
        return await asyncio.to_thread(self.truth, timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the server saves its state and exits), SIGKILL after ``timeout``; the exit
        code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the server dies where it is (what it saved last is what a restart finds)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _root() -> str:
    """The directory holding the ``adapters`` package (for the child's import path)."""
    return str(Path(__file__).resolve().parents[2])


def start_server(
    *,
    seed: int = 0,
    faults: ServerFaults | None = None,
    tick_seconds: float = 1.0,
    balances: Mapping[str, Any] | None = None,
    partial_fills: bool = True,
    state: str | os.PathLike[str] | None = None,
    port: int = 0,
    api_key: str = DEFAULT_API_KEY,
    secret: str = DEFAULT_SECRET,
    log: str | os.PathLike[str] | None = None,
    ready_timeout: float = 30.0,
) -> ServerProcess:
    """Start ``python -m adapters.sim.server`` and wait for its ready line. It exits by itself
    if this process dies (it watches its parent). Its stderr goes to ``log`` (a temporary
    file by default); the secret reaches it through its environment, not its command line."""
    import tempfile

    args = [
        sys.executable,
        "-m",
        "adapters.sim.server",
        "--port",
        str(port),
        "--seed",
        str(seed),
        "--tick-seconds",
        repr(tick_seconds),
        "--faults",
        (faults or ServerFaults()).spec(),
        "--parent",
        str(os.getpid()),
    ]
    if balances is not None:
        args += ["--balances", ",".join(f"{c}={v}" for c, v in balances.items())]
    if not partial_fills:
        args.append("--no-partial-fills")
    if state is not None:
        args += ["--state", str(state)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_root(), env.get("PYTHONPATH")]))
    env["SIM_SERVER_API_KEY"] = api_key
    env["SIM_SERVER_SECRET"] = secret
    if log is None:
        handle, name = tempfile.mkstemp(prefix="sim-server-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    else:
        log_path = Path(log)
    with log_path.open("ab") as errors:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, env=env
        )
    try:
        line = _ready_line(process, ready_timeout)
        ready = json.loads(line)
        return ServerProcess(process, str(ready["url"]), log_path)
    except BaseException:
        if process.poll() is None:
            process.kill()
        process.wait()
        raise


def _ready_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    import selectors

    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the sim server printed no ready line in {timeout} s")
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"the sim server exited ({process.wait()}) before it was ready")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


# -- the command line -----------------------------------------------------------------------


def _balances(text: str) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        currency, sep, amount = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"balance {part!r} is not CURRENCY=AMOUNT")
        found[currency.strip()] = Decimal(amount)
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m adapters.sim.server",
        description="A Binance-compatible spot REST server over the simulated venue, on"
        " loopback. Prints one JSON line {url, pid} when ready; SIGTERM stops it.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick-seconds", type=float, default=1.0)
    parser.add_argument(
        "--faults", default="", help="e.g. slow=0.05,rate_limit=0.05,delay=2.5 (all=R: every kind)"
    )
    parser.add_argument("--balances", type=_balances, default=None, help="USDT=100000,BTC=1")
    parser.add_argument("--no-partial-fills", action="store_true")
    parser.add_argument("--state", default=None, help="keep the venue here across restarts")
    parser.add_argument(
        "--parent", type=int, default=None, help="exit when this process is no longer the parent"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    server = SimServer(
        seed=args.seed,
        faults=ServerFaults.parse(args.faults),
        tick_seconds=args.tick_seconds,
        balances=args.balances,
        partial_fills=not args.no_partial_fills,
        api_key=os.environ.get("SIM_SERVER_API_KEY", DEFAULT_API_KEY),
        secret=os.environ.get("SIM_SERVER_SECRET", DEFAULT_SECRET),
        state=args.state,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with server.running(args.host, args.port):
        sys.stdout.write(json.dumps({"url": server.url, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        while not stopping.is_set():
            if args.parent is not None and os.getppid() != args.parent:
                break  # the parent died: no orphan
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
