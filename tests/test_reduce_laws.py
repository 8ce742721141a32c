"""The reducer's laws, one property per test, each named after its law (eventsrc.testing)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsrc import Cash, Event, State, Trace, fold, reduce, replay_from_trace, save_snapshot
from eventsrc.testing import (
    FillHistory,
    check_fold_composes,
    check_idempotent,
    check_order_insensitive,
    event_streams,
    fill_histories,
    malformed_observations,
    shuffled,
    stamp_all,
    strategy_started,
)


def money(state: State) -> Any:
    """What must not depend on arrival order: cash, positions, orders with fills and fees."""
    return (dict(state.cash), dict(state.positions), dict(state.orders))


def trace_path(factory: pytest.TempPathFactory) -> Path:
    return factory.mktemp("laws") / "trace"


@settings(max_examples=40)
@given(stream=event_streams())
def test_replay_of_a_trace_equals_the_state_folded_while_it_was_written(
    tmp_path_factory: pytest.TempPathFactory, stream: list[Event]
) -> None:
    path = trace_path(tmp_path_factory)
    live = State()
    with Trace.open(path, "w", durability="none", unit=64, record_chunk=16) as trace:
        for event in stream:
            seq = trace.append(event)
            live = reduce(live, trace[seq])
    with Trace.open(path) as trace:
        assert replay_from_trace(trace) == live


@given(stream=event_streams(), cut=st.floats(0, 1))
def test_fold_of_a_concatenation_equals_folding_the_second_part_from_the_first(
    stream: list[Event], cut: float
) -> None:
    events = stamp_all(stream)
    at = int(len(events) * cut)
    check_fold_composes(reduce, State(), events[:at], events[at:])


@settings(max_examples=30)
@given(stream=event_streams(), cut=st.floats(0, 1))
def test_snapshot_plus_tail_equals_full_replay(
    tmp_path_factory: pytest.TempPathFactory, stream: list[Event], cut: float
) -> None:
    path = trace_path(tmp_path_factory)
    with Trace.open(path, "w", durability="none", unit=64, record_chunk=16) as trace:
        trace.extend(stream)
        at = int((len(trace) - 1) * cut)
        save_snapshot(trace, replay_from_trace(trace, until=at))
    with Trace.open(path) as trace:
        full = fold(trace)
        assert replay_from_trace(trace) == full
        assert replay_from_trace(trace, until=at) == fold(trace.iter(0, at + 1))


@given(stream=event_streams(), data=st.data())
def test_folding_the_same_observation_twice_equals_folding_it_once(
    stream: list[Event], data: st.DataObject
) -> None:
    events = stamp_all(stream)
    at = data.draw(st.integers(0, len(events) - 1))
    check_idempotent(reduce, fold(events[:at]), events[at])


@given(history=fill_histories(), data=st.data())
def test_the_reports_of_one_order_in_any_order_give_the_state_of_its_highest_progress_report(
    history: FillHistory, data: st.DataObject
) -> None:
    start = fold([strategy_started()])
    reports = list(history.observations)
    permuted = data.draw(st.permutations(reports))
    in_order = fold(reports, start).orders[history.order_id]
    any_order = fold(permuted, start).orders[history.order_id]
    assert any_order == in_order
    last = reports[-1]
    assert (any_order.filled, any_order.cost, any_order.fee_cost) == (
        last.filled,
        last.cost,
        last.fee_cost,
    )
    expected_status = last.status
    if last.status == "open" and history.filled:
        expected_status = "partially_filled"
    assert any_order.status == expected_status


@given(history=fill_histories(sparse=True), data=st.data())
def test_any_interleaving_of_one_fill_history_gives_the_same_cash_position_fills_and_fees(
    history: FillHistory, data: st.DataObject
) -> None:
    start = fold([strategy_started()])
    events = history.events()
    reordered = data.draw(shuffled(events))
    check_order_insensitive(reduce, start, events, reordered, money)
    fills = {order_id: order.trades for order_id, order in fold(events, start).orders.items()}
    again = {order_id: order.trades for order_id, order in fold(reordered, start).orders.items()}
    assert again == fills


@given(history=fill_histories(max_fills=8), keep=st.lists(st.booleans(), min_size=8))
def test_after_n_partial_fills_filled_and_cost_equal_the_venue_totals_exactly(
    history: FillHistory, keep: list[bool]
) -> None:
    """With every trade, some, or none (a venue with no trades endpoint: fills emulated)."""
    trades = [t for t, k in zip(history.trades, keep, strict=False) if k]
    state = fold([strategy_started(), *history.observations, *trades])
    order = state.orders[history.order_id]
    assert (order.filled, order.cost, order.fee_cost) == (history.filled, history.cost, history.fee)
    fills = order.trades
    assert sum((f.amount for f in fills), Decimal(0)) == history.filled
    assert sum((f.cost for f in fills), Decimal(0)) == history.cost
    assert sum((f.fee_cost for f in fills), Decimal(0)) == history.fee
    assert {f.trade_id for f in fills if not f.emulated} == {t.trade_id for t in trades}
    if history.filled:
        assert order.average == history.cost / history.filled
    base, quote = history.symbol.split("/")
    sign = 1 if history.side == "buy" else -1
    no_cash = Cash()
    assert state.cash.get(base, no_cash).total == sign * history.filled
    assert state.cash.get(quote, no_cash).total == -sign * history.cost - history.fee


@given(stream=event_streams(), bad=malformed_observations(), data=st.data())
def test_a_malformed_observation_is_an_anomaly_and_changes_nothing_else(
    stream: list[Event], bad: Event, data: st.DataObject
) -> None:
    events = stamp_all(stream)
    at = data.draw(st.integers(1, len(events)))
    before = fold(events[:at])
    after = reduce(before, bad)
    assert set(after.anomalies.keys()) - set(before.anomalies.keys()) == {before.seq + 1}
    assert after.anomalies[before.seq + 1].kind == bad.kind
    for name in ("config", "last_price", "account", "book", "watchers"):
        assert getattr(after, name) == getattr(before, name), name
