"""``CcxtVenue``: any ccxt exchange object (``ccxt.async_support``, ``ccxt.pro``, or the
simulated exchange, which speaks ccxt) as the engine's ``eventsrc.venue.Venue``.

It wraps the exchange unchanged (but for turning ccxt's rate limiter on, filtering its logger
and refusing its answers that are not JSON, see below) and is the one place ccxt meets the
core: every answer becomes events (``adapters.observations`` reads the dicts; ``source``
names the call, ``raw`` keeps ccxt's dict verbatim) and every exception a ``VenueError``
(``venue_error``):

- ``OrderNotFound`` -> ``NotFound``;
- ``NetworkError`` and its subclasses (timeouts, the venue unavailable or in maintenance,
  DDoS protection, rate limits, invalid nonces), ``BadResponse``/``NullResponse``,
  ``CancelPending`` and any other ``OperationFailed`` -> ``Unreachable``: the request may or
  may not have taken effect. So does anything that is not a ccxt error at all (an exception
  from deep inside a library), and a ccxt error outside both branches (``UnsubscribeError``):
  when the outcome is unknown, the engine must check, not assume.
- every other ``ExchangeError`` (``InsufficientFunds``, ``InvalidOrder``, ``DuplicateOrderId``,
  ``BadRequest``, ``BadSymbol``, ``AuthenticationError``, ``PermissionDenied``,
  ``NotSupported``, ``ExchangeClosedByUser``, ...) -> ``Refused``. ``OrderNotCached`` (ccxt has
  no copy of the order in its local cache) is Refused, not NotFound: it says nothing of
  whether the venue has the order.

Secrets: the exchange's credentials (``apiKey``, ``secret``, ``password``, ``uid``,
``privateKey``, ``twofa``, ``token``: whichever are set, read at each use) are replaced by
``***`` in every error message and every raw payload, as written and in their JSON-escaped
and URL-encoded forms, and so are signatures and keys named in a message's query string or
headers. The normalized fields of events are the venue's own identifiers and numbers and are
left alone. ccxt's own logger (which logs request headers at debug level) gets a filter that
scrubs its lines too; ccxt's ``verbose`` mode prints to stdout and cannot be filtered: leave it
off. An error is raised without its ccxt exception attached (``__context__`` is None), so no
traceback can show the unscrubbed message.

Malformed answers (``Unreachable("BadResponse")``, so the engine checks rather than assumes):
an answer that is not the structure asked for, one ccxt's parser could not read
(``_events``), an order, cancel or ticker answer about another order or market than the one
asked for, a cancel answer naming no order, and an answer that is not JSON (``ccxt``'s REST
``handle_errors`` is wrapped to say so: its parsers make an empty answer of text, which would
be taken for the venue's: no positions, no trades).
A time the venue gives is taken only from 1970 to the year 10000 (``to_ms``): beyond, it is
no time, and 10**40 could not even be written to a trace.

Paging (``fetch_closed_orders``, ``fetch_my_trades``): ccxt answers the OLDEST ``limit`` items
from ``since`` on, so the adapter asks again from the newest timestamp it got (inclusive: items
sharing that millisecond are asked for again and de-duplicated by id) until a page brings
nothing new, then once more from the millisecond after it, until that brings nothing either.
More items in one millisecond than fit in one page cannot all be reached by ``since``; ask for
bigger pages (``page_limit``) on venues where that can happen.
"""

from __future__ import annotations

import functools
import logging
import re
import urllib.parse
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import ccxt
import msgspec

from adapters.observations import (
    balance_observed,
    carries_state,
    client_order_id_of,
    order_observed,
    position_observed,
    raw_payload,
    ticker_observed,
    to_decimal,
    to_ms,
    trade_observed,
)
from adapters.watchers import WatcherSettings, watcher_for
from eventsrc.events import (
    CancelObserved,
    Event,
    Observation,
    OrderAcknowledged,
    OrderRequested,
    PositionObserved,
)
from eventsrc.venue import STREAMS, Market, NotFound, Refused, Unreachable, VenueError, Watcher

__all__ = [
    "CREDENTIALS",
    "HAS",
    "CcxtVenue",
    "Secrets",
    "market_of",
    "venue_error",
]

T = TypeVar("T")
E = TypeVar("E", bound=Event)
_log = logging.getLogger(__name__)

CREDENTIALS = ("apiKey", "secret", "password", "uid", "privateKey", "twofa", "token")
"""The ccxt exchange attributes whose values never leave the adapter."""

HAS = {
    "orders": "watchOrders",
    "trades": "watchMyTrades",
    "balance": "watchBalance",
    "positions": "watchPositions",
    "ticker": "watchTicker",
}
"""Each stream's capability in ccxt's ``exchange.has``."""

_WATCH = {
    "orders": "watch_orders",
    "trades": "watch_my_trades",
    "balance": "watch_balance",
    "positions": "watch_positions",
    "ticker": "watch_ticker",
}

# -- ccxt's exceptions -> venue errors ----------------------------------------------------------

_ERRORS: tuple[tuple[type[BaseException], type[VenueError]], ...] = (
    # most specific first: the first class in an exception's MRO that is listed here decides
    (ccxt.OrderNotFound, NotFound),
    (ccxt.OrderNotCached, Refused),
    (ccxt.NetworkError, Unreachable),
    (ccxt.BadResponse, Unreachable),
    (ccxt.OperationFailed, Unreachable),
    (ccxt.ExchangeError, Refused),
    (ccxt.BaseError, Unreachable),
)
_BY_CLASS = dict(_ERRORS)

_RETRY_AFTER = re.compile(
    r"retry[\s_-]*after\W{0,3}?(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?)?\b",
    re.IGNORECASE,
)
_SIGNED = re.compile(
    r"""(?ix)
    \b([\w-]*?(?:signature|sign|api[_-]?key|apikey|passphrase|secret|access[_-]?key|token))
    ("?\s*[:=]\s*"?)
    ([^\s&"',;}]+)
    """
)


def retry_after(exc: BaseException, message: str) -> float | None:
    """The seconds the venue asked to wait before retrying: the exception's ``retry_after``
    attribute if it has one, else a "retry after N[s|ms]" in its message."""
    hint = getattr(exc, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and hint >= 0:
        return float(hint)
    found = _RETRY_AFTER.search(message)
    if found is None:
        return None
    value = float(found.group(1))
    unit = (found.group(2) or "s").lower()
    return value / 1000 if unit.startswith("m") else value


def venue_error(exc: BaseException, secrets: Secrets | None = None) -> VenueError:
    """The core's error for an exception a ccxt call raised: NotFound, Refused or Unreachable
    (see the module docstring), ``error`` its class name, ``message`` what it said with every
    secret removed."""
    text = str(exc)
    message = secrets.text(text) if secrets is not None else text
    kind = next((_BY_CLASS[c] for c in type(exc).__mro__ if c in _BY_CLASS), Unreachable)
    hint = retry_after(exc, message) if kind is Unreachable else None
    return kind(type(exc).__name__, message, retry_after=hint)


# -- secrets ----------------------------------------------------------------------------------


class Secrets:
    """An exchange's credentials, and their removal from text and raw payloads."""

    MASK = "***"
    SUBSTRING_MIN = 6
    """Credentials at least this long are masked wherever they occur, shorter ones only
    where a whole string (a word, in text) is one."""

    def __init__(self, exchange: Any) -> None:
        self._exchange = weakref.ref(exchange) if _weakrefable(exchange) else lambda: exchange
        self._values: tuple[str, ...] = ()
        self._forms: tuple[str, ...] = ()
        self._whole: frozenset[str] = frozenset()
        self._needles: tuple[bytes, ...] = ()

    def _refresh(self) -> None:
        exchange = self._exchange()
        values = tuple(
            sorted(
                {
                    v
                    for v in (getattr(exchange, name, None) for name in CREDENTIALS)
                    if isinstance(v, str) and v
                },
                key=lambda v: (-len(v), v),  # longest first: one may contain another
            )
        )
        if values == self._values:
            return
        # a credential too short to be a real one ("k" in a test) is masked only where a
        # whole string is it: masked inside other text it would garble every payload
        long = [v for v in values if len(v) >= self.SUBSTRING_MIN]
        forms = {
            form
            for v in long
            for form in (v, urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v))
        }
        self._values = values
        self._whole = frozenset(v for v in values if len(v) < self.SUBSTRING_MIN)
        self._forms = tuple(sorted(forms, key=lambda v: (-len(v), v)))
        self._needles = tuple(
            {f.encode() for f in forms}
            | {msgspec.json.encode(v)[1:-1] for v in long}
            | {msgspec.json.encode(v) for v in self._whole}
        )

    def values(self) -> tuple[str, ...]:
        """The credentials set on the exchange now."""
        self._refresh()
        return self._values

    def _replace(self, text: str) -> str:
        if text in self._whole:
            return self.MASK
        for form in self._forms:
            if form in text:
                text = text.replace(form, self.MASK)
        for short in self._whole:
            if short in text:
                text = re.sub(rf"(?<![\w-]){re.escape(short)}(?![\w-])", self.MASK, text)
        return text

    def text(self, text: str) -> str:
        """``text`` with every credential, and every signature or key it names, masked."""
        self._refresh()
        return _SIGNED.sub(lambda m: m.group(1) + m.group(2) + self.MASK, self._replace(text))

    def raw(self, raw: bytes) -> bytes:
        """A raw payload (JSON bytes) with every credential masked wherever it occurs: in a
        string, a key, or a number that spells it."""
        self._refresh()
        if not raw or not any(n in raw for n in self._needles):
            return raw
        clean = msgspec.json.encode(self._walk(msgspec.json.decode(raw)))
        if any(n in clean for n in self._needles):  # an encoding not foreseen: keep nothing
            return msgspec.json.encode(f"{self.MASK} (the payload held a credential)")
        return clean

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._replace(value)
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            spelled = repr(value)
            return self.MASK if any(f in spelled for f in self._forms) else value
        return value

    def event(self, event: E) -> E:
        """``event`` with its raw payload scrubbed (the same event if it held no secret)."""
        if isinstance(event, Observation) and event.raw:
            clean = self.raw(event.raw)
            if clean is not event.raw:
                return attrs.evolve(event, raw=clean)
        return event


def _weakrefable(value: Any) -> bool:
    try:
        weakref.ref(value)
    except TypeError:
        return False
    return True


class _ScrubbedLog(logging.Filter):
    """Masks the credentials of every wrapped exchange in the records of ccxt's logger (it
    logs each request's headers, API key included, at debug level)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: weakref.WeakValueDictionary[int, Secrets] = weakref.WeakValueDictionary()

    def filter(self, record: logging.LogRecord) -> bool:
        wrapped = [s for s in list(self.secrets.values()) if s.values()]
        if not wrapped:
            return True
        message = record.getMessage()
        clean = message
        for secrets in wrapped:
            clean = secrets.text(clean)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            for secrets in wrapped:
                text = secrets.text(text)
            record.exc_text, record.exc_info = text, None
        return True


_LOG_FILTERS: dict[str, _ScrubbedLog] = {}


def _scrub_logs(exchange: Any, secrets: Secrets) -> None:
    logger = getattr(exchange, "logger", None)
    if not isinstance(logger, logging.Logger):
        return
    scrubbed = _LOG_FILTERS.get(logger.name)
    if scrubbed is None:
        scrubbed = _LOG_FILTERS[logger.name] = _ScrubbedLog()
        logger.addFilter(scrubbed)
    scrubbed.secrets[id(secrets)] = secrets


# -- answers that are not JSON -----------------------------------------------------------------


def _is_json(text: str) -> bool:
    try:
        msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return True


def _refuse_text_answers(exchange: Any) -> None:
    """Make ``exchange`` (a ccxt REST exchange) raise ``BadResponse`` for a 2xx answer that is
    not what a venue answers in JSON: ccxt hands such a body (truncated, an error page) to its
    parsers as text, and they make of it an empty answer (no positions, no trades, a balance
    of nothing) that would be taken for the venue's. A read (GET) must be a JSON object or
    array; a write may answer nothing, or a JSON scalar (an order id, say). It wraps the
    exchange's own ``handle_errors``, which ccxt calls with every answer, JSON or not."""
    handle = getattr(exchange, "handle_errors", None)
    if handle is None or getattr(handle, "refuses_text", False):
        return

    def handle_errors(
        code: Any,
        reason: Any,
        url: Any,
        method: Any,
        headers: Any,
        body: Any,
        response: Any,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        result = handle(
            code, reason, url, method, headers, body, response, request_headers, request_body
        )
        if response is None and isinstance(code, int) and 200 <= code < 300:
            text = body.strip() if isinstance(body, str) else ""
            if method == "GET" or (text and not _is_json(text)):
                raise ccxt.BadResponse(f"{exchange.id} {method} {url}: the answer is not JSON")
        return result

    handle_errors.refuses_text = True  # type: ignore[attr-defined]
    exchange.handle_errors = handle_errors


# -- markets ----------------------------------------------------------------------------------


def _step(value: Any, precision_mode: int) -> Decimal | None:
    """ccxt's precision as a step: a tick size as it is, a number of decimal places as a
    power of ten; significant digits have no fixed step (None)."""
    number = to_decimal(value)
    if number is None or not number.is_finite():
        return None
    if precision_mode == ccxt.TICK_SIZE:
        return number if number > 0 else None
    if precision_mode == ccxt.DECIMAL_PLACES and number == number.to_integral_value():
        return Decimal(1).scaleb(-int(number))
    return None


def market_of(market: Mapping[str, Any], precision_mode: int = ccxt.TICK_SIZE) -> Market:
    """A ccxt unified market as the engine's ``Market``."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    amount_limits = limits.get("amount") or {}
    cost_limits = limits.get("cost") or {}
    return Market(
        symbol=str(market["symbol"]),
        base=str(market.get("base") or ""),
        quote=str(market.get("quote") or ""),
        settle=None if market.get("settle") is None else str(market["settle"]),
        contract=bool(market.get("contract") or market.get("swap") or market.get("future")),
        amount_step=_step(precision.get("amount"), precision_mode),
        price_step=_step(precision.get("price"), precision_mode),
        min_amount=to_decimal(amount_limits.get("min")),
        min_cost=to_decimal(cost_limits.get("min")),
        contract_size=to_decimal(market.get("contractSize")),
    )


# -- the venue --------------------------------------------------------------------------------


def _exact_float(value: Decimal, name: str) -> float:
    """ccxt takes amounts and prices as floats: refuse one that a float would change."""
    number = float(value)
    if not value.is_finite() or Decimal(repr(number)) != value:
        raise Refused("InvalidOrder", f"{name} {value} cannot be sent exactly (as a float)")
    return number


def _key(item: Mapping[str, Any]) -> object:
    found = item.get("id")
    return ("id", str(found)) if found is not None else ("raw", raw_payload(item))


def _same_order(
    order: Mapping[str, Any], source: str, order_id: str | None, client_order_id: str | None = None
) -> None:
    """Refuse an answer about another order than the one asked for (a malformed response):
    one that names another id, or another client order id where it was asked by that."""
    named = order.get("id")
    if order_id is not None and named is not None and str(named) != order_id:
        raise Unreachable("BadResponse", f"{source} of order {order_id} answered order {named}")
    named = order.get("clientOrderId")
    if order_id is None and client_order_id is not None and named not in (None, client_order_id):
        raise Unreachable(
            "BadResponse", f"{source} of client order id {client_order_id} answered {named}"
        )


class CcxtVenue:
    """A ccxt exchange object as a ``Venue`` (see the module docstring).

    ``watcher_settings``: the knobs of the watchers ``watcher()`` makes. ``page_limit``: the
    ``limit`` asked for on each page (None: the venue's default). ``max_pages``: a paging that
    has not ended after this many pages is an error (Unreachable), never a silent cut.
    """

    def __init__(
        self,
        exchange: Any,
        *,
        watcher_settings: WatcherSettings | None = None,
        page_limit: int | None = None,
        max_pages: int = 10_000,
    ) -> None:
        self.exchange = exchange
        self.watcher_settings = watcher_settings or WatcherSettings()
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.secrets = Secrets(exchange)
        self._markets: dict[str, Market] | None = None
        if getattr(exchange, "enableRateLimit", True) is not True:
            _log.info("%s: turning ccxt's rate limiter on", self.name)
            exchange.enableRateLimit = True
        _scrub_logs(exchange, self.secrets)
        _refuse_text_answers(exchange)

    @property
    def name(self) -> str:
        return str(getattr(self.exchange, "id", None) or type(self.exchange).__name__)

    # -- plumbing ---------------------------------------------------------------------------

    async def _ask(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await a ccxt call; its exception becomes a VenueError (CancelledError, which is not
        an Exception, always propagates)."""
        try:
            return await call()
        except Exception as exc:
            error = venue_error(exc, self.secrets)
        raise error  # outside the handler: the ccxt exception is not attached to it

    def _events(self, source: str, read: Callable[[], list[Event]]) -> list[Event]:
        """The events ``read`` makes of an answer, scrubbed; an answer that cannot be read is
        a malformed response (Unreachable: what the call did is not known)."""
        try:
            events = read()
        except VenueError:
            raise
        except Exception as exc:
            error = Unreachable(
                "BadResponse",
                self.secrets.text(f"{source}: the answer could not be read: {exc!r}"),
            )
        else:
            return [self.secrets.event(e) for e in events]
        raise error

    @staticmethod
    def _one(answer: Any, source: str) -> Mapping[str, Any]:
        if not isinstance(answer, Mapping):
            raise Unreachable("BadResponse", f"{source} answered a {type(answer).__name__}")
        return answer

    @staticmethod
    def _many(answer: Any, source: str) -> list[Mapping[str, Any]]:
        if not isinstance(answer, list | tuple):
            raise Unreachable("BadResponse", f"{source} answered a {type(answer).__name__}")
        odd = [type(item).__name__ for item in answer if not isinstance(item, Mapping)]
        if odd:
            raise Unreachable("BadResponse", f"{source} answered a list holding {odd[0]}")
        return list(answer)

    async def _pages(
        self,
        fetch: Callable[[int | None, int | None], Awaitable[Any]],
        since_ms: int | None,
        source: str,
    ) -> list[Mapping[str, Any]]:
        """Every item from ``since_ms`` on, page by page, each once (see the module
        docstring); without ``since_ms``, the one page the venue gives."""
        limit = self.page_limit
        if since_ms is None:
            return self._many(await self._ask(lambda: fetch(None, limit)), source)
        found: dict[object, Mapping[str, Any]] = {}
        since, stepped = since_ms, False
        for _ in range(self.max_pages):
            page = self._many(await self._ask(functools.partial(fetch, since, limit)), source)
            fresh, newest = 0, since
            for item in page:
                key = _key(item)
                if key not in found:
                    found[key] = item
                    fresh += 1
                stamp = to_ms(item.get("timestamp"))
                if stamp is not None and stamp > newest:
                    newest = stamp
            if fresh:
                since, stepped = newest, False
            elif page and not stepped:
                since, stepped = newest + 1, True
            else:
                return list(found.values())
        raise Unreachable(
            "BadResponse", f"{source}: paging from {since_ms} did not end in {self.max_pages} pages"
        )

    def _has(self, capability: str) -> bool:
        has = getattr(self.exchange, "has", None) or {}
        return bool(has.get(capability))

    # -- the Venue protocol -----------------------------------------------------------------

    async def load_markets(self) -> dict[str, Market]:
        if self._markets is None:
            markets = self._one(await self._ask(self.exchange.load_markets), "load_markets")
            mode = getattr(self.exchange, "precisionMode", ccxt.TICK_SIZE)
            try:
                self._markets = {
                    str(symbol): market_of(m, mode)
                    for symbol, m in markets.items()
                    if isinstance(m, Mapping)
                }
            except Exception as exc:
                error = Unreachable("BadResponse", f"load_markets: {exc!r}")
            else:
                return dict(self._markets)
            raise error
        return dict(self._markets)

    def can_watch(self, stream: str) -> bool:
        if stream not in HAS:
            raise ValueError(f"no stream {stream!r}: one of {', '.join(STREAMS)}")
        return self._has(HAS[stream]) and hasattr(self.exchange, _WATCH[stream])

    def can_fetch_trades(self) -> bool:
        return self._has("fetchMyTrades")

    async def create_order(self, request: OrderRequested) -> list[Event]:
        symbol = request.asset
        if not symbol:
            raise Refused("ArgumentsRequired", "an order request names its market (asset)")
        amount = _exact_float(request.amount, "amount")
        price = None if request.price is None else _exact_float(request.price, "price")
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.time_in_force:
            params["timeInForce"] = request.time_in_force
        if request.post_only:
            params["postOnly"] = True
        if request.reduce_only:
            params["reduceOnly"] = True
        answer = await self._ask(
            lambda: self.exchange.create_order(
                symbol, request.order_type, request.side, amount, price, params
            )
        )
        cause = request.seq if request.seq is not None else request.client_order_id
        order = self._one(answer, "create_order")
        order_id = order.get("id")
        if order_id is None or order_id == "":
            raise Unreachable(
                "BadResponse",
                f"create_order answered without an order id: the order {request.client_order_id}"
                " may exist (fetch it by its client order id)",
            )

        def read() -> list[Event]:
            raw = raw_payload(order)
            events: list[Event] = [
                OrderAcknowledged(
                    client_order_id=request.client_order_id,
                    order_id=str(order_id),
                    asset=symbol,
                    exchange_ts=to_ms(order.get("timestamp")),
                    source="create_order",
                    cause=cause,
                    raw=raw,
                )
            ]
            if carries_state(order):
                observed = order_observed(order, source="create_order", cause=cause)
                events.append(
                    attrs.evolve(
                        observed,
                        asset=observed.asset or symbol,
                        client_order_id=observed.client_order_id or request.client_order_id,
                    )
                )
            return events

        return self._events("create_order", read)

    async def cancel_order(self, symbol: str, order_id: str) -> list[Event]:
        """A CancelObserved, and the order as the answer shows it. Both name the order by the
        id asked for, and by its own client order id: binance answers a cancel under the
        cancel request's own one (``clientOrderId``; the order's is ``origClientOrderId``),
        which ccxt reads as the order's (``client_order_id_of`` reads the order's). An answer
        about another order is a malformed response."""
        answer = await self._ask(lambda: self.exchange.cancel_order(order_id, symbol))
        order = self._one(answer, "cancel_order")
        _same_order(order, "cancel_order", order_id)
        if order.get("id") is None and order.get("status") is None:
            # what ccxt's parser makes of a body it could not read (text, ``{}``): it says
            # nothing of the order, not that the cancel took
            raise Unreachable("BadResponse", "cancel_order: the answer names no order")

        def read() -> list[Event]:
            events: list[Event] = [
                CancelObserved(
                    order_id=order_id,
                    client_order_id=client_order_id_of(order),
                    status=None if order.get("status") is None else str(order["status"]),
                    asset=symbol,
                    exchange_ts=to_ms(order.get("timestamp")),
                    source="cancel_order",
                    raw=raw_payload(order),
                )
            ]
            if carries_state(order):
                observed = order_observed(order, source="cancel_order")
                events.append(
                    attrs.evolve(observed, order_id=order_id, asset=observed.asset or symbol)
                )
            return events

        return self._events("cancel_order", read)

    async def fetch_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> list[Event]:
        if order_id is None and client_order_id is None:
            raise Refused("ArgumentsRequired", "fetch_order needs an order id or a client one")
        params = (
            {}
            if client_order_id is None or order_id is not None
            else {"clientOrderId": client_order_id}
        )
        if self._has("fetchOpenOrder") and self._has("fetchClosedOrder"):
            # Venues that have these (bybit) may refuse fetchOrder itself (bybit's unified
            # accounts: ArgumentsRequired, and only the last 500 orders): ccxt's way is to ask
            # the open orders, then the closed ones. Open first: an order seen closed stays so.
            try:
                answer = await self._ask(
                    lambda: self.exchange.fetch_open_order(order_id, symbol, params)
                )
            except NotFound:
                answer = await self._ask(
                    lambda: self.exchange.fetch_closed_order(order_id, symbol, params)
                )
        else:
            answer = await self._ask(lambda: self.exchange.fetch_order(order_id, symbol, params))
        order = self._one(answer, "fetch_order")
        _same_order(order, "fetch_order", order_id, client_order_id)
        return self._events("fetch_order", lambda: [order_observed(order, source="fetch_order")])

    async def fetch_order_trades(self, symbol: str, order_id: str) -> list[Event]:
        source = "fetch_order_trades"
        if self._has("fetchOrderTrades"):
            answer = await self._ask(lambda: self.exchange.fetch_order_trades(order_id, symbol))
            trades = self._many(answer, source)
        elif self._has("fetchMyTrades"):
            # the account's trades from the order's placement on, of this order
            (order,) = await self.fetch_order(symbol, order_id)
            since = order.exchange_ts
            trades = [
                t
                for t in await self._pages(
                    lambda s, n: self.exchange.fetch_my_trades(symbol, s, n), since, source
                )
                if str(t.get("order")) == order_id
            ]
        else:
            return []
        return self._events(source, lambda: [trade_observed(t, source=source) for t in trades])

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Event]:
        source = "fetch_open_orders"
        orders = self._many(
            await self._ask(lambda: self.exchange.fetch_open_orders(symbol)), source
        )
        return self._events(source, lambda: [order_observed(o, source=source) for o in orders])

    async def fetch_closed_orders(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        source = "fetch_closed_orders"
        if self._has("fetchClosedOrders") or not self._has("fetchOrders"):
            orders = await self._pages(
                lambda s, n: self.exchange.fetch_closed_orders(symbol, s, n), since_ms, source
            )
        else:  # all orders, the open ones left out
            every = await self._pages(
                lambda s, n: self.exchange.fetch_orders(symbol, s, n), since_ms, source
            )
            orders = [o for o in every if o.get("status") != "open"]
        return self._events(source, lambda: [order_observed(o, source=source) for o in orders])

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        source = "fetch_my_trades"
        trades = await self._pages(
            lambda s, n: self.exchange.fetch_my_trades(symbol, s, n), since_ms, source
        )
        return self._events(source, lambda: [trade_observed(t, source=source) for t in trades])

    async def fetch_balance(self) -> list[Event]:
        source = "fetch_balance"
        balance = self._one(await self._ask(self.exchange.fetch_balance), source)
        return self._events(source, lambda: [balance_observed(balance, source=source)])

    async def fetch_positions(self, symbols: Sequence[str]) -> list[Event]:
        source = "fetch_positions"
        wanted = list(symbols)
        answer = await self._ask(lambda: self.exchange.fetch_positions(wanted or None))
        positions = self._many(answer, source)
        if wanted:  # some venues answer every market whatever was asked
            positions = [p for p in positions if p.get("symbol") in wanted]

        def read() -> list[Event]:
            events: list[Event] = [position_observed(p, source=source) for p in positions]
            reported = {e.asset for e in events}
            events.extend(
                PositionObserved(side=None, contracts=Decimal(0), asset=symbol, source=source)
                for symbol in wanted
                if symbol not in reported
            )
            return events

        return self._events(source, read)

    async def fetch_ticker(self, symbol: str) -> list[Event]:
        source = "fetch_ticker"
        ticker = self._one(await self._ask(lambda: self.exchange.fetch_ticker(symbol)), source)
        named = ticker.get("symbol")
        if named is not None and named != symbol:
            raise Unreachable("BadResponse", f"{source} of {symbol} answered {named}'s")

        def read() -> list[Event]:
            observed = ticker_observed(ticker, source=source)
            return [attrs.evolve(observed, asset=observed.asset or symbol)]

        return self._events(source, read)

    async def set_leverage(self, symbol: str, leverage: Decimal) -> None:
        if not leverage.is_finite() or leverage <= 0:
            raise Refused("BadRequest", f"leverage {leverage} must be a positive number")
        # venues take whole leverages as integers (binance refuses "5.0")
        number: int | float = (
            int(leverage) if leverage == leverage.to_integral_value() else float(leverage)
        )
        await self._ask(lambda: self.exchange.set_leverage(number, symbol))

    def watcher(self, stream: str, symbol: str | None = None) -> Watcher:
        return watcher_for(self, stream, symbol, self.watcher_settings)

    # -- streams ----------------------------------------------------------------------------

    async def watch(self, stream: str, symbol: str | None = None) -> list[Event]:
        """The next update(s) of ``stream`` (ccxt's ``watch_*``), as events."""
        if stream not in _WATCH:
            raise ValueError(f"no stream {stream!r}: one of {', '.join(STREAMS)}")
        source = _WATCH[stream]
        watch = getattr(self.exchange, source)
        if stream == "orders":
            orders = self._many(await self._ask(lambda: watch(symbol)), source)
            return self._events(source, lambda: [order_observed(o, source=source) for o in orders])
        if stream == "trades":
            trades = self._many(await self._ask(lambda: watch(symbol)), source)
            return self._events(source, lambda: [trade_observed(t, source=source) for t in trades])
        if stream == "balance":
            balance = self._one(await self._ask(watch), source)
            return self._events(source, lambda: [balance_observed(balance, source=source)])
        if stream == "positions":
            wanted = None if symbol is None else [symbol]
            positions = self._many(await self._ask(lambda: watch(wanted)), source)
            return self._events(
                source, lambda: [position_observed(p, source=source) for p in positions]
            )
        ticker = self._one(await self._ask(lambda: watch(symbol)), source)
        return self._events(source, lambda: [ticker_observed(ticker, source=source)])
