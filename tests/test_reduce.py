"""The reducer, case by case: lifecycles, cash, margin, prices, watchers, totality."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import attrs
from hypothesis import given
from hypothesis import strategies as st

from eventsrc import (
    Balance,
    BalanceObserved,
    CancelObserved,
    Decision,
    Event,
    LocalCheckFailed,
    Note,
    OHLCVObserved,
    OrderAcknowledged,
    OrderObserved,
    OrderRejected,
    OrderRequested,
    OrderRequestFailed,
    PositionObserved,
    StrategyStarted,
    StrategyStopped,
    TickerObserved,
    TradeObserved,
    UnknownEvent,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    WatcherStopped,
    fold,
    reduce,
)
from eventsrc.testing import events, stamp_all

D = Decimal
SPOT = StrategyStarted("USDT", ("BTC/USDT", "ETH/USDT"))


def observed(filled: str, cost: str, status: str = "open", **kw: object) -> OrderObserved:
    fields: dict[str, object] = dict(
        order_id="o1",
        client_order_id="c1",
        asset="BTC/USDT",
        side="buy",
        order_type="limit",
        status=status,
        price=D(100),
        amount=D(1),
        filled=D(filled),
        cost=D(cost),
        fee_cost=D(cost) / 1000,
        fee_currency="USDT",
    )
    fields.update(kw)
    return OrderObserved(**fields)  # type: ignore[arg-type]


def test_an_order_goes_through_its_lifecycle() -> None:
    request = OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")
    states = [fold([SPOT, request])]
    assert states[-1].requests["c1"].status == "requested"
    assert states[-1].order("c1") == states[-1].requests["c1"]
    ack = OrderAcknowledged(client_order_id="c1", order_id="o1", asset="BTC/USDT")
    for event in (ack, observed("0", "0"), observed("0.4", "40"), observed("1", "100", "closed")):
        states.append(reduce(states[-1], event))
    statuses = [s.order("c1").status for s in states]  # type: ignore[union-attr]
    assert statuses == ["requested", "acknowledged", "open", "partially_filled", "closed"]
    final = states[-1]
    assert not final.requests and final.client_orders["c1"] == "o1"
    assert final.orders["o1"].remaining == 0


def test_local_outcomes_of_requests() -> None:
    requested = fold([SPOT, OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")])
    failed = reduce(requested, LocalCheckFailed("not enough USDT", client_order_id="c1"))
    assert (failed.requests["c1"].status, failed.requests["c1"].reason) == (
        "failed",
        "not enough USDT",
    )
    rejected = reduce(requested, OrderRejected(client_order_id="c1", error="InsufficientFunds"))
    assert rejected.requests["c1"].status == "rejected"
    # A request that got no answer may still have placed the order: a later report wins.
    lost = reduce(requested, OrderRequestFailed(client_order_id="c1", error="RequestTimeout"))
    assert lost.requests["c1"].status == "failed"
    found = reduce(lost, observed("0", "0"))
    assert found.orders["o1"].status == "open" and "c1" not in found.requests


def test_a_cancel_is_never_undone_by_a_late_report() -> None:
    state = fold([SPOT, observed("0.2", "20"), CancelObserved(order_id="o1", status="canceled")])
    assert state.orders["o1"].status == "canceled"
    late = reduce(state, observed("0.3", "30"))
    assert late.orders["o1"].status == "canceled"
    assert late.orders["o1"].filled == D("0.3")


def test_progress_never_goes_backwards() -> None:
    state = fold([SPOT, observed("0.6", "60"), observed("0.2", "20")])
    order = state.orders["o1"]
    assert (order.filled, order.cost) == (D("0.6"), D("60"))
    assert [f.amount for f in order.trades] == [D("0.2"), D("0.4")]  # both reported points


def test_a_real_trade_replaces_the_emulated_fill_it_explains() -> None:
    trade = TradeObserved(
        trade_id="t1",
        order_id="o1",
        asset="BTC/USDT",
        side="buy",
        price=D(100),
        amount=D("0.4"),
        cost=D(40),
        fee_cost=D("0.04"),
        fee_currency="USDT",
    )
    state = fold([SPOT, observed("0.4", "40")])
    assert [f.emulated for f in state.orders["o1"].trades] == [True]
    state = reduce(state, trade)
    order = state.orders["o1"]
    assert [(f.trade_id, f.emulated) for f in order.trades] == [("t1", False)]
    assert (order.filled, order.cost, order.fee_cost) == (D("0.4"), D(40), D("0.04"))
    assert state.cash["BTC"].total == D("0.4")  # counted once
    assert state.cash["USDT"].total == -D(40) - D("0.04")


def test_spot_cash_is_replaced_by_the_venue_then_moved_by_fills() -> None:
    balance = BalanceObserved(
        balances=(Balance("USDT", D(1000), D(900), D(100)), Balance("DOGE", D(5), D(5), D(0)))
    )
    state = fold([SPOT, balance, observed("0.5", "50")])
    assert "DOGE" not in state.cash  # not a currency of the universe
    usdt = state.cash["USDT"]
    fee = D(50) / 1000
    assert (usdt.total, usdt.free, usdt.used) == (D(950) - fee, D(850) - fee, D(100))
    assert state.cash["BTC"].total == D("0.5")
    corrected = reduce(state, BalanceObserved(balances=(Balance("USDT", D(949), D(949)),)))
    assert corrected.cash["USDT"] == type(usdt)(D(949), D(949), D(0))


def test_margin_positions_come_and_go_with_the_venue() -> None:
    start = StrategyStarted("USDT", ("BTC/USDT:USDT",), margin=True)
    long = PositionObserved(
        side="long", contracts=D("0.5"), entry_price=D(100), asset="BTC/USDT:USDT"
    )
    state = fold([start, long])
    assert state.positions[("BTC/USDT:USDT", "long")].contracts == D("0.5")
    closed = reduce(state, PositionObserved(side="long", contracts=D(0), asset="BTC/USDT:USDT"))
    assert not closed.positions
    balance = BalanceObserved(balances=(Balance("USDT", D(10)), Balance("BTC", D(1))))
    assert set(reduce(closed, balance).cash) == {"USDT"}


def test_prices_come_from_tickers_and_candles() -> None:
    state = fold(
        [
            SPOT,
            TickerObserved(asset="BTC/USDT", bid=D(99), ask=D(101)),
            TickerObserved(asset="ETH/USDT", last=D(3000), bid=D(2999), ask=D(3001)),
            OHLCVObserved(asset="BTC/USDT", timeframe="1m", close=D(102)),
            TickerObserved(asset="ETH/USDT", last=D("NaN")),
        ]
    )
    assert dict(state.last_price) == {"BTC/USDT": D(102), "ETH/USDT": D(3000)}


def test_watcher_health_counts_errors_and_gaps_once_each() -> None:
    stream = stamp_all(
        [
            WatcherStarted("orders:BTC/USDT"),
            WatcherError("orders:BTC/USDT", "NetworkError", "reset"),
            WatcherReconnected("orders:BTC/USDT"),
            WatcherError("orders:BTC/USDT", "RequestTimeout"),
        ]
    )
    state = fold(stream)
    health = state.watchers["orders:BTC/USDT"]
    assert (health.status, health.errors, health.gaps, health.last_error) == (
        "error",
        2,
        1,
        "RequestTimeout",
    )
    assert reduce(state, stream[-1]) == state  # the same error again is not a new one
    assert (
        fold([*stream, WatcherStopped("orders:BTC/USDT")]).watchers["orders:BTC/USDT"].status
        == "stopped"
    )


def test_a_retried_request_is_the_same_order_and_a_reused_client_id_is_an_anomaly() -> None:
    request = OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")
    state = fold([SPOT, request, request])
    assert not state.anomalies and len(state.requests) == 1
    other = OrderRequested("c1", "sell", "limit", D(1), D(100), asset="BTC/USDT")
    assert "reused" in fold([SPOT, request, other]).anomalies[2].reason


def test_a_trade_reported_again_with_other_contents_is_an_anomaly() -> None:
    trade = TradeObserved(
        trade_id="t1", order_id="o1", asset="BTC/USDT", side="buy", price=D(100), amount=D(1)
    )
    state = fold([SPOT, trade, trade])
    assert not state.anomalies
    changed = fold(
        [
            SPOT,
            trade,
            TradeObserved(
                trade_id="t1",
                order_id="o1",
                asset="BTC/USDT",
                side="buy",
                price=D(101),
                amount=D(1),
            ),
        ]
    )
    assert "other amounts" in changed.anomalies[2].reason
    assert changed.orders["o1"].cost == D(100)


def test_events_that_change_no_state_only_advance_the_seq() -> None:
    state = fold([SPOT])
    for event in (
        Note("hello"),
        Decision("buy the dip"),
        UnknownEvent(kind_name="future", kind_version=3, data={}),
    ):
        after = reduce(state, event)
        assert after.seq == state.seq + 1
        assert after == attrs.evolve(state, seq=after.seq)
        state = after
    stopped = reduce(state, StrategyStopped("done"))
    assert not stopped.config.running and stopped.config.main_currency == "USDT"


@given(stream=st.lists(events(), max_size=30))
def test_reduce_is_total_on_any_well_formed_events(stream: list[Event]) -> None:
    """Whatever the values (NaN, infinities, unknown symbols, empty ids), it never raises."""
    fold([SPOT, *stream])


# -- regressions from review ------------------------------------------------------------------

SPOT_BTC = StrategyStarted("USDT", ("BTC/USDT",))


def order_report(filled: str, cost: str, **kw: object) -> OrderObserved:
    fields: dict[str, object] = dict(
        order_id="o1",
        asset="BTC/USDT",
        status="open",
        amount=D(2),
        filled=D(filled),
        cost=D(cost),
    )
    fields.update(kw)
    return OrderObserved(**fields)  # type: ignore[arg-type]


def trade(trade_id: str = "t1", **kw: object) -> TradeObserved:
    fields: dict[str, object] = dict(
        trade_id=trade_id,
        order_id="o1",
        asset="BTC/USDT",
        side="buy",
        amount=D(1),
        cost=D(100),
        price=D(100),
        fee_cost=D("0.1"),
        fee_currency="USDT",
    )
    fields.update(kw)
    return TradeObserved(**fields)  # type: ignore[arg-type]


def test_a_report_without_fees_does_not_undo_fees_known_from_trades() -> None:
    state = fold([SPOT_BTC, trade(), order_report("2", "200", side="buy")])
    order = state.orders["o1"]
    assert (order.filled, order.cost, order.fee_cost) == (D(2), D(200), D("0.1"))
    assert sum((f.fee_cost for f in order.trades), D(0)) == D("0.1")
    assert all(f.fee_cost >= 0 for f in order.trades)
    assert state.cash["USDT"].total == -D(200) - D("0.1")


def test_side_and_fee_currency_count_whichever_report_brings_them() -> None:
    first = order_report("0", "0", side="buy")
    second = order_report("1", "100", fee_cost=D("0.1"))
    third = order_report("1", "100", fee_cost=D("0.1"), fee_currency="USDT")
    for arrival in ([first, second, third], [third, second, first], [second, third, first]):
        state = fold([SPOT_BTC, *arrival])
        assert state.cash["BTC"].total == D(1), arrival
        assert state.cash["USDT"].total == -D(100) - D("0.1"), arrival


def test_a_trade_is_the_same_whichever_arrives_first_and_a_repeat_is_no_anomaly() -> None:
    bare = trade(side=None, fee_currency=None)
    report = order_report("1", "100", side="buy", fee_cost=D("0.1"), fee_currency="USDT")
    one = fold([SPOT_BTC, bare, report])
    other = fold([SPOT_BTC, report, bare])
    assert one.orders["o1"] == other.orders["o1"]
    assert one.orders["o1"].trades == other.orders["o1"].trades
    assert one.orders["o1"].trades[0].side == "buy"
    again = reduce(one, trade(side=None, fee_currency=None, exchange_ts=123, cost=None))
    assert not again.anomalies


def test_fills_add_up_to_the_totals_when_one_amount_is_reported_twice() -> None:
    state = fold(
        [
            SPOT_BTC,
            order_report("1", "100", side="buy"),
            order_report("1", "100", side="buy", fee_cost=D("0.1"), fee_currency="USDT"),
        ]
    )
    order = state.orders["o1"]
    assert order.fee_cost == D("0.1")
    assert sum((f.fee_cost for f in order.trades), D(0)) == D("0.1")
    assert sum((f.amount for f in order.trades), D(0)) == D(1)


def test_a_rebate_is_a_negative_fee_not_an_anomaly() -> None:
    state = fold(
        [SPOT_BTC, order_report("1", "100", side="buy", fee_cost=D("-0.02"), fee_currency="USDT")]
    )
    assert not state.anomalies
    assert state.cash["USDT"].total == -D(100) + D("0.02")


def test_a_position_with_a_non_finite_number_is_an_anomaly() -> None:
    start = StrategyStarted("USDT", ("BTC/USDT:USDT",), margin=True)
    state = fold(
        [
            start,
            PositionObserved(
                side="long", contracts=D(1), unrealized_pnl=D("NaN"), asset="BTC/USDT:USDT"
            ),
        ]
    )
    assert not state.positions and "unrealized_pnl" in state.anomalies[1].reason


def test_a_request_folded_again_after_the_venue_named_it_is_a_retry() -> None:
    request = OrderRequested("c1", "buy", "market", D(1), asset="BTC/USDT")
    named = order_report(
        "0.9999",
        "100.9899",
        client_order_id="c1",
        side="buy",
        price=D(101),
        amount=D("0.9999"),
        status="closed",
    )
    state = fold([SPOT_BTC, request, named, request])
    assert not state.anomalies


def test_a_cancel_still_under_way_changes_nothing() -> None:
    state = fold([SPOT_BTC, order_report("0", "0"), CancelObserved(order_id="o1", status="open")])
    assert state.orders["o1"].status == "open"


def test_the_mid_price_is_exact_whatever_the_callers_decimal_context() -> None:
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 3
        state = fold([SPOT_BTC, TickerObserved(asset="BTC/USDT", bid=D("100.01"), ask=D("100.02"))])
    assert state.last_price["BTC/USDT"] == D("100.015")


def test_balances_outside_the_configured_currencies_are_ignored() -> None:
    balance = BalanceObserved(balances=(Balance("DOGE", D(5)), Balance("USDT", D(1))))
    assert not fold([balance]).cash  # before StrategyStarted there is no universe
    margin = StrategyStarted("", ("BTC/USDT:USDT",), margin=True)
    assert not fold([margin, balance]).cash


def test_replay_folds_kinds_it_does_not_know_and_older_schemas(tmp_path: Path) -> None:
    from eventsrc import EventRegistry, Trace, replay_from_trace
    from eventsrc.events import REGISTRY

    custom = EventRegistry()
    for info in REGISTRY.kinds():
        custom.kind(info.name, info.version, info.upgrades)(info.cls)

    @custom.kind("custom_signal")
    @attrs.frozen
    class CustomSignal(Event):
        strength: int

    path = tmp_path / "trace"
    events = [SPOT_BTC, CustomSignal(3), TickerObserved(asset="BTC/USDT", last=D(5)), Note("x")]
    with Trace.open(path, "w", registry=custom) as trace:
        trace.extend(events)
    with Trace.open(path) as trace:  # the default registry knows no custom_signal
        state = replay_from_trace(trace)
    assert state.seq == 3 and state.last_price["BTC/USDT"] == D(5)
