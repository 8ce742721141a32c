"""Real ccxt exchange classes with no network under them: recorded bodies fed where ccxt's
transport would return them, at one of two depths.

- ``answer_with`` replaces the exchange's ``fetch`` (ccxt's HTTP hook, called after the request
  is built and signed): everything above it is real ccxt code, but ccxt's error handling
  (``handle_errors``, ``handle_http_status_code``) does not run, as in ccxt's own static tests.
- ``OfflineSession`` replaces the aiohttp session one level lower, so ccxt's real ``fetch``
  runs: it decodes the body, and maps an error body or HTTP status to its own exception.

``no_network`` refuses sockets meanwhile, so nothing can leave the machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import ccxt.async_support as ccxt_async

__all__ = [
    "CREDENTIALS",
    "OfflineSession",
    "Reply",
    "answer_with",
    "offline_exchange",
]

CREDENTIALS = {
    "apiKey": "conformance-api-key",
    # base64, as some venues (kraken) decode their secret to sign
    "secret": "Y29uZm9ybWFuY2Utc2VjcmV0",
    "password": "conformance-password",
    "uid": "conformance-uid",
}
"""Made-up credentials, long enough that the venue adapter masks them only where they occur
(a short one is masked wherever a whole string equals it, which could touch a payload)."""


async def _no_wait(*args: Any, **kwargs: Any) -> None:
    return None


def offline_exchange(fixture: Mapping[str, Any], module: Any = ccxt_async, **config: Any) -> Any:
    """The fixture's exchange class from ``module`` (``ccxt.async_support`` or ``ccxt.pro``),
    with its options and markets, and ccxt's rate limiter let through at once (it waits in
    real time; nothing is sent anyway). Its transport is the caller's to set."""
    cls = getattr(module, str(fixture["exchange"]))
    ex = cls({**CREDENTIALS, "options": dict(fixture.get("options") or {}), **config})
    ex.set_markets({s: ex.safe_market_structure(m) for s, m in fixture["markets"].items()})
    ex.throttle = _no_wait
    ex.timeout_on_exit = 0  # close() sleeps this long (ms), in real time
    return ex


def answer_with(ex: Any, answer: Callable[[str, str], Any]) -> list[tuple[str, str]]:
    """Replace ``ex.fetch`` by ``answer(method, url)`` (the decoded body); the requests made
    are listed in the list returned."""
    calls: list[tuple[str, str]] = []

    async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        calls.append((method, url))
        return answer(method, url)

    ex.fetch = fetch
    return calls


Reply = tuple[int, Any] | BaseException
"""What the offline session answers a request: (HTTP status, body: JSON-able or text), or an
exception aiohttp would raise (a timeout, a connection error)."""


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            418: "I'm a teapot",
            429: "Too Many Requests",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(status, "")
        self._text = body if isinstance(body, str) else json.dumps(body)
        json_body = not isinstance(body, str)
        self.headers = {"Content-Type": "application/json" if json_body else "text/html"}
        self.content = self._text.encode()

    async def text(self, errors: str = "strict") -> str:
        return self._text

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Request:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    async def __aenter__(self) -> _Response:
        await asyncio.sleep(0)
        if isinstance(self.reply, BaseException):
            raise self.reply
        return _Response(*self.reply)

    async def __aexit__(self, *exc: object) -> None:
        return None


class OfflineSession:
    """An aiohttp ``ClientSession`` stand-in for ``ex.session``: ``route(method, url)`` says
    what each request gets. ccxt's own ``fetch`` then runs in full, error handling included."""

    def __init__(self, route: Callable[[str, str], Reply]) -> None:
        self.route = route
        self.calls: list[tuple[str, str]] = []
        self.closed = False
        self.headers: dict[str, str] = {}  # ccxt adds a session's default headers

    def _request(self, method: str) -> Callable[..., _Request]:
        def request(url: Any, **kwargs: Any) -> _Request:
            self.calls.append((method, str(url)))
            return _Request(self.route(method, str(url)))

        return request

    def __getattr__(self, name: str) -> Callable[..., _Request]:
        if name in ("get", "post", "put", "delete", "patch"):
            return self._request(name.upper())
        raise AttributeError(name)

    async def close(self) -> None:
        self.closed = True

    def install(self, ex: Any) -> OfflineSession:
        ex.session = self
        ex.own_session = False
        return self
