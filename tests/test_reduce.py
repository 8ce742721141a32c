"""The reducer, case by case: lifecycles, cash, margin, prices, watchers, totality."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import attrs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsrc import (
    Balance,
    BalanceObserved,
    CancelObserved,
    Codec,
    Decision,
    Event,
    Fee,
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
from eventsrc.state import replace
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
        fees=(Fee("USDT", D(cost) / 1000),),
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
    # Refused before it reached the venue: it does not exist, unlike a request with no answer.
    failed = reduce(requested, LocalCheckFailed("not enough USDT", client_order_id="c1"))
    assert (failed.requests["c1"].status, failed.requests["c1"].reason) == (
        "rejected",
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
        fees=(Fee("USDT", D("0.04")),),
    )
    state = fold([SPOT, observed("0.4", "40")])
    assert [f.emulated for f in state.orders["o1"].trades] == [True]
    state = reduce(state, trade)
    order = state.orders["o1"]
    assert [(f.trade_id, f.emulated) for f in order.trades] == [("t1", False)]
    assert (order.filled, order.cost, order.fees) == (D("0.4"), D(40), (("USDT", D("0.04")),))
    assert state.cash["BTC"].total == D("0.4")  # counted once
    assert state.cash["USDT"].total == -D(40) - D("0.04")


def test_spot_cash_is_replaced_by_the_venue_then_moved_by_fills() -> None:
    balance = BalanceObserved(
        balances=(Balance("USDT", D(1000), D(900), D(100)), Balance("DOGE", D(5), D(5), D(0)))
    )
    state = fold([SPOT, balance, observed("0.5", "50")])
    assert state.cash["DOGE"].total == D(5)  # every currency the venue reports is kept
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
    assert {c: v.total for c, v in reduce(closed, balance).cash.items()} == {
        "USDT": D(10),
        "BTC": D(1),
    }


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
        assert after == replace(state, seq=after.seq)
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
        fees=(Fee("USDT", D("0.1")),),
    )
    fields.update(kw)
    return TradeObserved(**fields)  # type: ignore[arg-type]


def test_a_report_without_fees_does_not_undo_fees_known_from_trades() -> None:
    state = fold([SPOT_BTC, trade(), order_report("2", "200", side="buy")])
    order = state.orders["o1"]
    assert (order.filled, order.cost, order.fee("USDT")) == (D(2), D(200), D("0.1"))
    assert sum((f.fee("USDT") for f in order.trades), D(0)) == D("0.1")
    assert all(f.fee("USDT") >= 0 for f in order.trades)
    assert state.cash["USDT"].total == -D(200) - D("0.1")


def test_side_and_fee_currency_count_whichever_report_brings_them() -> None:
    first = order_report("0", "0", side="buy")
    second = order_report("1", "100", fees=[Fee(None, D("0.1"))])
    third = order_report("1", "100", fees=[Fee("USDT", D("0.1"))])
    for arrival in ([first, second, third], [third, second, first], [second, third, first]):
        state = fold([SPOT_BTC, *arrival])
        assert state.cash["BTC"].total == D(1), arrival
        assert state.cash["USDT"].total == -D(100) - D("0.1"), arrival


def test_a_trade_is_the_same_whichever_arrives_first_and_a_repeat_is_no_anomaly() -> None:
    bare = trade(side=None, fees=[Fee(None, D("0.1"))])
    report = order_report("1", "100", side="buy", fees=[Fee("USDT", D("0.1"))])
    one = fold([SPOT_BTC, bare, report])
    other = fold([SPOT_BTC, report, bare])
    assert one.orders["o1"] == other.orders["o1"]
    assert one.orders["o1"].trades == other.orders["o1"].trades
    assert one.orders["o1"].trades[0].side == "buy"
    again = reduce(one, trade(side=None, fees=[Fee(None, D("0.1"))], exchange_ts=123, cost=None))
    assert not again.anomalies


def test_fills_add_up_to_the_totals_when_one_amount_is_reported_twice() -> None:
    state = fold(
        [
            SPOT_BTC,
            order_report("1", "100", side="buy"),
            order_report("1", "100", side="buy", fees=[Fee("USDT", D("0.1"))]),
        ]
    )
    order = state.orders["o1"]
    assert order.fee("USDT") == D("0.1")
    assert sum((f.fee("USDT") for f in order.trades), D(0)) == D("0.1")
    assert sum((f.amount for f in order.trades), D(0)) == D(1)


def test_a_rebate_is_a_negative_fee_not_an_anomaly() -> None:
    state = fold([SPOT_BTC, order_report("1", "100", side="buy", fees=[Fee("USDT", D("-0.02"))])])
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


def test_every_currency_the_venue_reports_is_kept_so_a_report_can_correct_it() -> None:
    balance = BalanceObserved(balances=(Balance("DOGE", D(5)), Balance("USDT", D(1))))
    assert {c: v.total for c, v in fold([balance]).cash.items()} == {"DOGE": D(5), "USDT": D(1)}
    margin = StrategyStarted("", ("BTC/USDT:USDT",), margin=True)
    assert set(fold([margin, balance]).cash) == {"DOGE", "USDT"}


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


# -- a core you can trust with money: one regression per defect -----------------------------

PERP = "BTC/USDT:USDT"
MARGIN = StrategyStarted("USDT", (PERP, "BTC/USDT"), margin=True)


def position(side: str | None, contracts: str, **kw: object) -> PositionObserved:
    return PositionObserved(side=side, contracts=D(contracts), asset=PERP, **kw)  # type: ignore[arg-type]


def test_a_flat_position_closes_it_and_a_one_way_flip_leaves_one_position() -> None:
    long = fold([MARGIN, position("long", "0.5")])
    flat = reduce(long, position(None, "0"))  # how ccxt and the simulated venue say "flat"
    assert not flat.positions and not flat.anomalies
    flipped = reduce(long, position("short", "0.3"))
    assert list(flipped.positions) == [(PERP, "short")] and not flipped.anomalies
    assert reduce(long, position("short", "0.3", hedged=False)).positions == flipped.positions
    both = reduce(long, position("short", "0.3", hedged=True))  # hedge mode: side by side
    assert set(both.positions) == {(PERP, "long"), (PERP, "short")}
    assert "no side" in reduce(long, position(None, "1")).anomalies[2].reason


def test_of_two_different_balances_dated_the_same_millisecond_the_later_arrival_wins() -> None:
    # A venue that moves twice in one millisecond (a fill, then another) reports both
    # balances with one date: the one that arrived later was taken later. (It used to be the
    # larger total, whatever came when: a sale's lower balance could never replace it.)
    richer = BalanceObserved(balances=(Balance("USDT", D(1000)),), exchange_ts=5)
    poorer = BalanceObserved(balances=(Balance("USDT", D(900)),), exchange_ts=5)
    assert fold([SPOT_BTC, richer, poorer]).cash["USDT"].total == D(900)
    assert fold([SPOT_BTC, poorer, richer]).cash["USDT"].total == D(1000)
    # A repeat of an earlier report, arriving last, is stale: it changes nothing.
    assert fold([SPOT_BTC, richer, poorer, poorer]).cash["USDT"].total == D(900)


def test_a_balance_that_already_includes_a_fill_does_not_count_it_again() -> None:
    start = fold([SPOT_BTC, BalanceObserved(balances=(Balance("USDT", D(1000)),), exchange_ts=1)])
    # The venue fills 1 BTC for 100 USDT at 1500 ms and reports its balance at 2000 ms; the
    # balance arrives first.
    balance = BalanceObserved(
        balances=(Balance("USDT", D(900)), Balance("BTC", D(1))), exchange_ts=2000
    )
    report = order_report("1", "100", side="buy", status="closed", last_trade_timestamp=1500)
    fill = trade(amount=D(1), cost=D(100), fees=None, exchange_ts=1500)
    for arrival in ([balance, report, fill], [report, balance, fill], [fill, report, balance]):
        state = fold(arrival, start)
        assert (state.cash["USDT"].total, state.cash["BTC"].total) == (D(900), D(1)), arrival
    # A fill after the report is not in it.
    later = trade("t2", amount=D(1), cost=D(100), fees=None, exchange_ts=2500)
    state = fold([balance, report, fill, later], start)
    assert (state.cash["USDT"].total, state.cash["BTC"].total) == (D(800), D(2))


def test_contract_fills_never_move_spot_cash_whatever_the_strategys_flag() -> None:
    contract = order_report("0.01", "650", asset=PERP, side="buy", status="closed")
    state = fold([MARGIN, BalanceObserved(balances=(Balance("USDT", D(1000)),)), contract])
    assert state.orders["o1"].filled == D("0.01")
    assert {c: v.total for c, v in state.cash.items()} == {"USDT": D(1000)}
    # A spot strategy cannot be started with a contract market ...
    with pytest.raises(ValueError, match="contract markets BTC/USDT:USDT"):
        StrategyStarted("USDT", (PERP,))
    # ... and one recorded anyway (an older trace) is an anomaly, its contracts still no cash.
    codec = Codec()
    payload = msgspec.msgpack.encode({"main_currency": "USDT", "universe": [PERP]})
    spot = fold([codec.decode("strategy_started", 1, payload), contract])
    assert "contract markets" in spot.anomalies[0].reason
    assert not spot.cash and spot.orders["o1"].filled == D("0.01")
    refused = reduce(spot, OrderRequested("c9", "buy", "market", D(1), asset=PERP))
    assert "contract market" in refused.anomalies[2].reason


def test_fees_in_several_currencies_are_each_charged_to_their_own_currency() -> None:
    state = fold(
        [
            SPOT_BTC,
            trade("t1", amount=D("0.5"), cost=D(50), fees=[Fee("BNB", D("0.1"))]),
            trade("t2", amount=D("0.5"), cost=D(50), fees=[Fee("BTC", D("0.0005"))]),
        ]
    )
    order = state.orders["o1"]
    assert order.fees == (("BNB", D("0.1")), ("BTC", D("0.0005")))
    cash = {c: v.total for c, v in state.cash.items()}
    assert cash == {"BNB": D("-0.1"), "BTC": D("0.9995"), "USDT": D(-100)}
    # A report of the order's totals that names both fees charges neither again.
    both = order_report(
        "1", "100", side="buy", fees=[Fee("BNB", D("0.1")), Fee("BTC", D("0.0005"))]
    )
    after = reduce(state, both)
    assert (after.orders["o1"].fills, after.orders["o1"].fees) == (order.fills, order.fees)
    assert after.cash == state.cash


def test_a_fee_in_a_currency_outside_the_universe_is_corrected_by_the_next_report() -> None:
    state = fold([SPOT_BTC, trade(fees=[Fee("BNB", D("0.1"))])])
    assert state.cash["BNB"].total == D("-0.1")  # charged: no report of BNB yet
    reported = reduce(state, BalanceObserved(balances=(Balance("BNB", D("4.9")),)))
    assert reported.cash["BNB"].total == D("4.9")


def test_a_refused_retry_is_not_a_refused_order() -> None:
    request = OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")
    timed_out = OrderRequestFailed(client_order_id="c1", error="RequestTimeout")
    duplicate = OrderRejected(client_order_id="c1", error="DuplicateOrderId", message="taken")
    state = fold([SPOT, request, timed_out, request, duplicate])
    assert state.requests["c1"].status == "acknowledged"  # the first attempt took effect
    found = reduce(state, observed("0", "0"))
    assert found.orders["o1"].status == "open"
    # Named first, then a retry refused for whatever reason: the order stands.
    named = fold([SPOT, request, observed("0", "0"), request, duplicate])
    assert named.orders["o1"].status == "open"
    broke = OrderRejected(client_order_id="c1", error="InsufficientFunds")
    assert reduce(named, broke).orders["o1"].status == "open"
    # A refusal after an attempt that got no answer leaves the request unknown.
    assert fold([SPOT, request, timed_out, request, broke]).requests["c1"].status == "failed"
    # And a refusal of a refusal-only history (the rejection arriving before the report)
    # does not survive the venue's report of the order.
    late = fold([SPOT, request, broke, observed("0.4", "40")])
    assert late.orders["o1"].status == "partially_filled"


def test_an_acknowledgement_folded_twice_or_after_the_report_changes_nothing() -> None:
    request = OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")
    ack = OrderAcknowledged(client_order_id="c1", order_id="o1")  # no symbol: the request's
    once = fold([SPOT, request, ack])
    assert not once.anomalies and once.orders["o1"].status == "acknowledged"
    assert reduce(once, attrs.evolve(ack, seq=2)) == once
    reported = fold([SPOT, request, observed("0.4", "40"), ack])
    assert not reported.anomalies
    assert reported.orders["o1"] == fold([SPOT, request, observed("0.4", "40")]).orders["o1"]


def test_a_missing_trade_before_the_latest_is_emulated_where_it_was_missing() -> None:
    state = fold(
        [
            SPOT_BTC,
            order_report("0.4", "4", side="buy"),
            order_report("0.5", "104", side="buy"),
            trade("t2", amount=D("0.1"), cost=D(100), fees=None),
        ]
    )
    order = state.orders["o1"]
    assert [(f.trade_id, f.amount, f.cost) for f in order.fills] == [
        (None, D("0.4"), D(4)),
        ("t2", D("0.1"), D(100)),
    ]
    assert (order.filled, order.cost) == (D("0.5"), D(104))


def test_when_reports_and_trades_disagree_on_cost_the_trades_win_and_it_is_an_anomaly() -> None:
    # The venue's cost comes from a rounded average; the trades are what happened.
    state = fold(
        [
            SPOT_BTC,
            trade("t1", amount=D("0.3"), cost=D("30.001"), fees=None),
            trade("t2", amount=D("0.7"), cost=D("70.003"), fees=None),
            order_report("1", "100", side="buy", average=D(100), status="closed"),
        ]
    )
    order = state.orders["o1"]
    assert (order.filled, order.cost) == (D(1), D("100.004"))
    assert sum((f.cost for f in order.fills), D(0)) == order.cost
    (anomaly,) = state.anomalies.values()
    assert anomaly.seq == 3 and "100.004" in anomaly.reason and "trades are taken" in anomaly.reason
    assert state.cash["USDT"].total == D("-100.004")


def test_money_arithmetic_is_exact_beyond_28_digits() -> None:
    big = fold(
        [
            SPOT_BTC,
            order_report(
                "0.000000000000000001", "0.0000000000000001", amount=D(10**12), side="buy"
            ),
        ]
    )
    assert big.orders["o1"].remaining == D("999999999999.999999999999999999")
    # A sum that would have to round is refused as an anomaly, never rounded silently.
    tiny = order_report("1E-300", "1", amount=D("1E+19"), order_id="o2", side="buy")
    state = reduce(big, tiny)
    assert "cannot be used" in state.anomalies[2].reason and "o2" not in state.orders


def test_a_kind_class_cannot_be_registered_under_a_second_name() -> None:
    from eventsrc import REGISTRY

    with pytest.raises(ValueError, match="already registered as kind 'note'"):
        REGISTRY.kind("note_alias")(Note)
    assert Note.kind == "note" and REGISTRY.by_name("note_alias") is None


def test_state_values_compare_by_content_not_by_where_in_the_trace_they_came_from() -> None:
    from eventsrc.state import Fill, Position, Reported, When

    pairs = [
        (When(5, 5, 1), When(5, 5, 2), When(5, 6, 1)),
        (
            Reported(D(1), D(1), D(0), 5, 1),
            Reported(D(1), D(1), D(0), 5, 9),
            Reported(D(2), D(2), D(0), 5, 1),
        ),
        (
            Fill("o", "BTC/USDT", "buy", D(1), D(2), (), "t", False, 5, seq=1),
            Fill("o", "BTC/USDT", "buy", D(1), D(2), (), "t", False, 5, seq=7),
            Fill("o", "BTC/USDT", "buy", D(1), D(3), (), "t", False, 5, seq=1),
        ),
        (
            Position("X", "long", D(1), seq=1),
            Position("X", "long", D(1), seq=2),
            Position("X", "short", D(1), seq=1),
        ),
    ]
    for value, same, other in pairs:
        assert (value == same, value != same, hash(value) == hash(same)) == (True, False, True)
        assert (value == other, value != other) == (False, True)


# -- regressions from the adversarial review of the new reducer --------------------------------


def test_a_trade_the_reports_already_hold_is_never_counted_again() -> None:
    """Trades placed in the segments they belong to, even undated: 0.5 BTC filled as 0.2 @ 91,
    0.1 @ 90, 0.1 @ 91, 0.1 @ 90; reports after the second fill and the last; trades "9" and
    "11" only (the ids sort as numbers)."""
    reports = [
        order_report("0.3", "27.2", amount=D("0.5"), side="buy"),
        order_report("0.5", "45.3", amount=D("0.5"), side="buy", status="closed"),
    ]
    for t11 in (
        trade("11", amount=D("0.1"), cost=D("9.1"), fees=None),
        trade("11", amount=D("0.1"), cost=D("9.1"), fees=None, exchange_ts=40),
    ):
        state = fold(
            [SPOT_BTC, *reports, trade("9", amount=D("0.2"), cost=D("18.2"), fees=None), t11]
        )
        order = state.orders["o1"]
        assert (order.filled, order.cost, order.status) == (D("0.5"), D("45.3"), "closed")
        assert {c: v.total for c, v in state.cash.items()} == {"BTC": D("0.5"), "USDT": D("-45.3")}

    # Costs from a rounded average (99.00): the trades still fit where their amounts do.
    def averaged(filled: str, status: str = "open") -> OrderObserved:
        report = order_report(filled, "0", average=D("99.00"), amount=D("0.7"), side="buy")
        return attrs.evolve(report, cost=None, status=status)

    state = fold(
        [
            SPOT_BTC,
            averaged("0.2"),
            averaged("0.4"),
            averaged("0.7", "closed"),
            trade("t2", amount=D("0.2"), cost=D("19.8002"), fees=None),
            trade("t3", amount=D("0.3"), cost=D("29.7003"), fees=None),
        ]
    )
    assert state.orders["o1"].filled == D("0.7") and state.cash["BTC"].total == D("0.7")
    # A dated trade is not placed by time past an undated report it may belong before.
    state = fold(
        [
            SPOT_BTC,
            order_report("0.2", "18.0", amount=D("0.5"), side="buy"),
            order_report(
                "0.5", "45.0", amount=D("0.5"), side="buy", status="closed", last_trade_timestamp=30
            ),
            trade("t1", amount=D("0.1"), cost=D("9.0"), fees=None, exchange_ts=20),
            trade("t2", amount=D("0.3"), cost=D("27.0"), fees=None),
        ]
    )
    assert (state.orders["o1"].filled, state.orders["o1"].cost) == (D("0.5"), D("45.0"))
    assert not state.anomalies


def test_a_trade_reported_again_completes_what_its_first_report_left_out() -> None:
    start = fold([SPOT_BTC, BalanceObserved(balances=(Balance("USDT", D(1000)),), exchange_ts=1)])
    balance = BalanceObserved(
        balances=(Balance("USDT", D(900)), Balance("BTC", D(1))), exchange_ts=2000
    )
    cases = [  # a streamed message without something, and the REST backfill with it
        (trade(side=None), trade()),
        (trade(fees=[Fee(None, D("0.1"))]), trade()),
        (trade(fees=None), trade(exchange_ts=1500, fees=None)),
    ]
    for sparse, full in cases:
        one = fold([balance, sparse, full], start)
        other = fold([balance, full, sparse], start)
        assert one.orders["o1"] == other.orders["o1"] and one.cash == other.cash
        assert not one.anomalies and not other.anomalies
    dated = fold([balance, trade(fees=None), trade(exchange_ts=1500, fees=None)], start)
    assert (dated.cash["USDT"].total, dated.cash["BTC"].total) == (D(900), D(1))
    with_fee = fold([trade(fees=[Fee(None, D("0.1"))]), trade()], start)
    assert with_fee.cash["USDT"].total == D(1000) - D(100) - D("0.1")
    clash = fold([trade(side="buy"), trade(side="sell")], start)
    assert "other side" in clash.anomalies[3].reason


def test_fees_the_venue_reported_are_never_lost() -> None:
    # A trade that says nothing of its fee does not make the report's fee zero.
    state = fold(
        [
            SPOT_BTC,
            order_report("1", "100", side="buy", fees=[Fee("USDT", D("0.1"))]),
            trade(fees=None),
        ]
    )
    assert state.orders["o1"].fees == (("USDT", D("0.1")),)
    assert state.cash["USDT"].total == D("-100.1")
    # A report naming fees, a later one not, and a trade naming its own.
    state = fold(
        [
            SPOT_BTC,
            order_report(
                "0.5", "50", side="buy", fees=[Fee("USDT", D("0.05"))], last_trade_timestamp=10
            ),
            order_report("1", "100", side="buy", fees=None, last_trade_timestamp=20),
            trade("t2", amount=D("0.5"), cost=D(50), fees=[Fee("USDT", D("0.05"))], exchange_ts=20),
        ]
    )
    order = state.orders["o1"]
    assert order.fees == (("USDT", D("0.1")),)
    assert all(f.fee("USDT") >= 0 for f in order.fills)


def test_the_state_hash_is_the_same_under_every_hash_seed() -> None:
    """Equal amounts written differently (1.0 and 1) must not make the state depend on a map's
    iteration order, or verify() would see a divergence in another process."""
    import os
    import subprocess
    import sys

    child = """
from decimal import Decimal as D
from eventsrc import Fee, OrderObserved, StrategyStarted, fold, state_hash
from eventsrc.testing import stamp_all
events = stamp_all([
    StrategyStarted("USDT", ("BTC/USDT",)),
    OrderObserved(order_id="o1", asset="BTC/USDT", side="buy", status="open", amount=D(2),
                  filled=D("1.0"), cost=D(100), fees=None),
    OrderObserved(order_id="o1", asset="BTC/USDT", side="buy", status="open", amount=D(2),
                  filled=D("1"), cost=D(100), fees=(Fee("USDT", D("0.1")),)),
])
print(state_hash(fold(events)))
"""
    root = str(Path(__file__).resolve().parents[1])
    hashes = {
        subprocess.run(
            [sys.executable, "-c", child],
            env=dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=root),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in range(6)
    }
    assert len(hashes) == 1, hashes


def test_a_report_that_dates_only_its_cancel_does_not_date_its_fill() -> None:
    """Filled at 1000 ms, canceled at 3000: the report's last update is not its fill's time.
    A balance at 4000 ms includes the fill whatever the order; one at 2000 ms cannot tell from
    the dates, so the arrival order decides (the report came first: the balance includes it)."""
    start = fold([SPOT_BTC, BalanceObserved(balances=(Balance("USDT", D(1000)),), exchange_ts=1)])
    report = order_report(
        "0.5", "50", amount=D(1), side="buy", status="canceled", last_update_timestamp=3000
    )
    for ms in (2000, 4000):
        balance = BalanceObserved(
            balances=(Balance("USDT", D(950)), Balance("BTC", D("0.5"))), exchange_ts=ms
        )
        state = fold([report, balance], start)
        assert (state.cash["USDT"].total, state.cash["BTC"].total) == (D(950), D("0.5"))
    late = BalanceObserved(
        balances=(Balance("USDT", D(950)), Balance("BTC", D("0.5"))), exchange_ts=4000
    )
    state = fold([late, report], start)
    assert (state.cash["USDT"].total, state.cash["BTC"].total) == (D(950), D("0.5"))


def test_an_attempt_with_no_answer_outranks_a_refusal_in_either_order() -> None:
    request = OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")
    refused = OrderRejected(client_order_id="c1", error="InsufficientFunds")
    timed_out = OrderRequestFailed(client_order_id="c1", error="RequestTimeout")
    for outcomes in ([refused, request, timed_out], [timed_out, request, refused]):
        assert fold([SPOT, request, *outcomes]).requests["c1"].status == "failed"


def test_empty_ids_are_no_ids_and_folding_twice_changes_nothing() -> None:
    request = OrderRequested("c1", "buy", "limit", D(1), D(100), asset="BTC/USDT")
    ack = attrs.evolve(OrderAcknowledged(client_order_id="c1", order_id=""), seq=2)
    once = fold([SPOT, request, ack])
    assert "no order id" in once.anomalies[2].reason
    assert reduce(once, ack) == once
    assert "no trade id" in reduce(once, trade(trade_id="")).anomalies[3].reason


def test_fills_that_cannot_move_cash_are_never_silent() -> None:
    upper = fold([SPOT_BTC, order_report("1", "100", side="BUY")])
    assert "side is 'BUY'" in upper.anomalies[1].reason and not upper.orders
    odd = fold(
        [
            StrategyStarted("USDT", ("BTCUSDT",)),
            order_report("1", "100", asset="BTCUSDT", side="buy"),
        ]
    )
    assert "not ccxt symbols" in odd.anomalies[0].reason
    assert "not a ccxt symbol" in (odd.orders["o1"].disagreement or "")
    sideless = fold([SPOT_BTC, order_report("1", "100")])
    assert "side" in (sideless.orders["o1"].disagreement or "") and not sideless.cash
    told = reduce(sideless, order_report("1", "100", side="buy"))
    assert told.orders["o1"].disagreement is None and told.cash["BTC"].total == D(1)


def test_a_currency_listed_twice_differently_in_one_balance_report_is_an_anomaly() -> None:
    twice = BalanceObserved(balances=(Balance("USDT", D(1)), Balance("USDT", D(2))))
    state = fold([SPOT, twice])
    assert "twice" in state.anomalies[1].reason and not state.cash
    same = BalanceObserved(balances=(Balance("USDT", D(1)), Balance("USDT", D(1))))
    assert fold([SPOT, same]).cash["USDT"].total == D(1)
