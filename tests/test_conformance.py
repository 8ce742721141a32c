"""Recorded answers of real venues through the real ccxt classes, ``CcxtVenue``, a trace and
the fold (``tests.conformance``), ccxt's error mapping below its HTTP layer, and the engine
on top. Sockets are refused throughout; nothing sleeps for real."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from adapters.venue import CcxtVenue
from eventsrc import OrderObserved, StrategyStarted, fold
from eventsrc.testing import stamp_all
from eventsrc.venue import NotFound
from tests.ccxt_fixtures import FIXTURES, fixture, no_network
from tests.conformance import Case, Outcome, cases_in, run_cases, venue_files
from tests.conformance.__main__ import main as conformance_main
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


# -- every recorded case --------------------------------------------------------------------

CASES = [c for path in venue_files(FIXTURES) for c in cases_in(path)]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    with no_network():
        return {o.case.name: o for o in run_cases(CASES, tmp_path_factory.mktemp("cases"))}


def test_every_venue_file_in_the_fixtures_is_found() -> None:
    assert {c.venue for c in CASES} == {
        "binance",
        "bybit",
        "coinbase",
        "cryptocom",
        "kraken",
        "kucoin",
    }
    assert len(CASES) == 30


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_a_recorded_answer_becomes_the_events_and_state_ccxt_expects(
    name: str, outcomes: dict[str, Outcome]
) -> None:
    outcome = outcomes[name]
    assert outcome.skipped is None, outcome.skipped
    assert outcome.differences == ()
    assert outcome.events and all(e.seq is not None for e in outcome.events)
    assert outcome.state is not None and not outcome.state.anomalies


def test_raw_is_the_unified_dict_ccxt_returned_with_the_venue_payload(
    outcomes: dict[str, Outcome],
) -> None:
    outcome = outcomes["binance.fetchOrder[0]"]
    (event,) = outcome.events
    assert isinstance(event, OrderObserved)
    (answer,) = outcome.answers
    assert event.info() == json.loads(json.dumps(answer))
    body = fixture("binance")["methods"]["fetchOrder"][0]["httpResponse"]
    assert event.info()["info"] == body  # the venue's own body, inside ccxt's dict


def test_a_create_answered_with_ids_only_is_acknowledged_and_nothing_more(
    outcomes: dict[str, Outcome],
) -> None:
    outcome = outcomes["bybit.createOrder[0]"]
    assert [e.kind for e in outcome.events] == ["order_acknowledged"]
    assert outcome.state is not None
    order = outcome.state.orders["1609920528435648000"]
    assert (order.status, order.client_order_id, order.amount, order.price) == (
        "acknowledged",
        "1609920528444036608",
        D("0.1"),
        D(60),
    )


def tampered(case: Case, path: list[Any], value: Any) -> Case:
    expected = copy.deepcopy(case.expected)
    where = expected
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return attrs.evolve(case, expected=expected)


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


@pytest.mark.parametrize(
    ("name", "path", "value", "says"),
    [
        ("binance.fetchOrder[0]", ["filled"], 0.2, "filled"),
        ("kucoin.fetchMyTrades[0]", [0, "fee", "cost"], 0.1, "fee"),
        ("cryptocom.fetchBalance[0]", ["USDT", "free"], 1.5, "USDT"),
        ("binance.fetchPositions[0]", [0, "entryPrice"], 1.0, "entry"),
        ("kraken.fetchOrder[1]", ["status"], "canceled", "status"),
    ],
)
def test_an_answer_that_differs_from_expected_is_reported(
    name: str, path: list[Any], value: Any, says: str, tmp_path: Path
) -> None:
    (outcome,) = run_cases([tampered(by_name(name), path, value)], tmp_path)
    assert not outcome.ok
    assert any(says in d for d in outcome.differences), outcome.differences


def test_a_method_the_adapter_cannot_make_is_skipped_with_why(tmp_path: Path) -> None:
    case = attrs.evolve(by_name("kucoin.fetchBalance[0]"), method="fetchDeposits")
    (outcome,) = run_cases([case], tmp_path)
    assert outcome.skipped is not None and "fetchDeposits" in outcome.skipped
    assert not outcome.ok and outcome.events == ()


def test_the_report_runs_on_a_venue_file_it_has_never_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new file in the same format, of an exchange no test names (okx's ccxt class, fed
    kucoin's recorded bodies: its parsers will not read them as kucoin's do), is picked up,
    and the differences make the report fail; a copy under a new name that is right passes."""
    data = json.loads((FIXTURES / "kraken.json").read_text())
    (tmp_path / "kraken_copy.json").write_text(json.dumps(data))
    assert conformance_main(["--fixtures", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "kraken_copy  fetchOrder" in out and "4 cases from 1 venue files" in out
    wrong = json.loads((FIXTURES / "kucoin.json").read_text())
    wrong["exchange"] = "okx"
    (tmp_path / "okx_new.json").write_text(json.dumps(wrong))
    assert conformance_main(["--fixtures", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 9 and report["differ"] > 0
    assert {o["venue"] for o in report["outcomes"]} == {"kraken_copy", "okx_new"}


def test_the_laws_hold_across_every_order_and_trade_answer_of_a_venue(
    outcomes: dict[str, Outcome],
) -> None:
    """Every order and trade answer of a venue, folded in the order recorded, then all
    again in reverse (older after newer), gives the same orders and fills."""
    for venue in {c.venue for c in CASES}:
        events = [
            attrs.evolve(e, seq=None)
            for o in outcomes.values()
            if o.case.venue == venue and o.case.method not in ("fetchBalance", "fetchPositions")
            for e in o.events
        ]
        spot = [e for e in events if ":" not in (e.asset or "")]
        start = [StrategyStarted("USDT", tuple({e.asset for e in spot if e.asset}))]
        once = fold(stamp_all([*start, *spot]))
        again = fold(stamp_all([*start, *spot, *reversed(spot)]))
        assert again.orders == once.orders and again.cash == once.cash, venue
