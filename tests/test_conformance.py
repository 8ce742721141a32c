"""Recorded answers of real venues through the real ccxt classes, ``CcxtVenue``, a trace and
the fold (``tests.conformance``), ccxt's error mapping below its HTTP layer, and the engine
on top. Sockets are refused throughout; nothing sleeps for real."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from adapters.venue import CcxtVenue
from eventsrc import OrderObserved, StrategyStarted, fold
from eventsrc.venue import NotFound
from tests.ccxt_fixtures import fixture, no_network
from tests.conformance.offline import answer_with, offline_exchange

D = Decimal


@pytest.fixture(autouse=True)
def sockets_refused() -> Iterator[None]:
    with no_network():
        yield


def bybit_list(*orders: dict[str, Any]) -> dict[str, Any]:
    """bybit's v5 answer listing ``orders`` (an order list, open or history)."""
    return {
        "retCode": "0",
        "retMsg": "OK",
        "result": {"nextPageCursor": "", "category": "linear", "list": list(orders)},
        "retExtInfo": {},
        "time": "1758189954146",
    }


def recorded_bybit_order(method: str) -> dict[str, Any]:
    body = fixture("bybit")["methods"][method][0]["httpResponse"]
    order: dict[str, Any] = copy.deepcopy(body["result"]["list"][0])
    return order


def test_bybit_looks_an_order_up_among_open_then_closed_orders_as_ccxt_advises() -> None:
    """bybit's unified accounts refuse ``fetchOrder`` (ccxt asks for ``fetchOpenOrder`` or
    ``fetchClosedOrder``): a closed order is found in the order history."""
    closed = recorded_bybit_order("fetchClosedOrder")
    ex = offline_exchange(fixture("bybit"))
    answer_with(
        ex,
        lambda method, url: bybit_list(closed) if "/order/history" in url else bybit_list(),
    )
    venue = CcxtVenue(ex)
    (event,) = asyncio.run(venue.fetch_order("BTC/USDT:USDT", closed["orderId"]))
    assert isinstance(event, OrderObserved)
    assert (event.order_id, event.status, event.filled, event.cost) == (
        closed["orderId"],
        "closed",
        D("0.001"),
        D("123.498"),
    )
    ex = offline_exchange(fixture("bybit"))
    answer_with(ex, lambda method, url: bybit_list())
    with pytest.raises(NotFound):
        asyncio.run(CcxtVenue(ex).fetch_order("BTC/USDT:USDT", closed["orderId"]))
