"""Recorded exchange responses replayed offline through the real ccxt parsers.

The exchange's HTTP hook (``fetch``, called after request building and signing) is replaced by
one returning the recorded body, so everything above it is real ccxt code; sockets are refused
while a replay runs, so nothing can leave the machine.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import ccxt

FIXTURES = Path(__file__).with_name("fixtures") / "ccxt"


@cache
def fixture(exchange: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{exchange}.json").read_text())
    return data


@contextmanager
def no_network() -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a test tried to use the network")

    saved = socket.socket.connect, socket.getaddrinfo
    socket.socket.connect, socket.getaddrinfo = refuse, refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.getaddrinfo = saved  # type: ignore[method-assign]


def offline_exchange(exchange: str) -> Any:
    fx = fixture(exchange)
    ex = getattr(ccxt, exchange)(
        # a base64 secret: some venues (kraken) decode it to sign
        {
            "apiKey": "k",
            "secret": "c2VjcmV0",
            "enableRateLimit": False,
            "options": fx.get("options", {}),
        }
    )
    ex.set_markets({s: ex.safe_market_structure(m) for s, m in fx["markets"].items()})
    return ex


def replay(exchange: str, method: str, case: int = 0) -> Any:
    """What ccxt's ``method`` returns for a recorded case: a unified structure (or a list)."""
    recorded = fixture(exchange)["methods"][method][case]
    ex = offline_exchange(exchange)
    ex.fetch = lambda *args, **kwargs: recorded["httpResponse"]
    with no_network():
        return getattr(ex, method)(*recorded["input"])


def expected(exchange: str, method: str, case: int = 0) -> Any:
    return fixture(exchange)["methods"][method][case]["expected"]
