"""The reducer's laws, one property per test, each named after its law (eventsrc.testing)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsrc import (
    REGISTRY,
    Cash,
    Codec,
    Event,
    ManualClock,
    Note,
    PositionObserved,
    State,
    StrategyStarted,
    Trace,
    fold,
    reduce,
    replay_from_trace,
    save_snapshot,
    state_hash,
    trace_tail,
)
from eventsrc.clock import datetime_ns
from eventsrc.codec import stamp
from eventsrc.reducer import READS
from eventsrc.state import DERIVED
from eventsrc.testing import (
    FillHistory,
    VenueHistory,
    check_fold_composes,
    check_idempotent,
    check_order_insensitive,
    event_streams,
    fill_histories,
    malformed_observations,
    shuffled,
    stamp_all,
    strategy_started,
    venue_histories,
)
from eventsrc.testing import events as events_of_kinds


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
    assert (any_order.filled, any_order.cost, any_order.fees) == (
        last.filled,
        last.cost,
        tuple((f.currency, f.cost) for f in last.fees or () if f.cost),
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
    quote = history.symbol.split("/")[1]
    assert (order.filled, order.cost, order.fee(quote)) == (
        history.filled,
        history.cost,
        history.fee,
    )
    fills = order.trades
    assert sum((f.amount for f in fills), Decimal(0)) == history.filled
    assert sum((f.cost for f in fills), Decimal(0)) == history.cost
    assert sum((f.fee(quote) for f in fills), Decimal(0)) == history.fee
    assert all(f.amount >= 0 and f.cost >= 0 for f in fills)
    assert {f.trade_id for f in fills if not f.emulated} == {t.trade_id for t in trades}
    if history.filled:
        assert order.average == DERIVED.divide(history.cost, history.filled)
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


# -- laws of the core you can trust with money (issue 8) --------------------------------------


def _fold_both_ways(state: State, event: Event) -> tuple[str, str, str]:
    """The state after ``event`` folded as the live engine folds it (the event), as replay
    folds it (its view, decoded from its bytes), and decoded in full: their hashes."""
    codec = Codec()
    seq = state.seq + 1
    live = attrs.evolve(event, seq=seq, ts=0)
    payload = codec.encode(live)
    view = codec.view_decoder(event.kind, event.version, READS)
    assert view is not None, f"{event.kind} is folded, so replay decodes its view"
    decoded = view(payload)
    decoded.seq = seq
    full = stamp(codec.decode(event.kind, event.version, payload), seq, 0)
    return (
        state_hash(reduce(state, live)),
        state_hash(reduce(state, decoded)),
        state_hash(reduce(state, full)),
    )


@given(stream=event_streams(), data=st.data())
def test_every_event_folds_to_the_same_state_live_and_replayed(
    stream: list[Event], data: st.DataObject
) -> None:
    """One path: a handler sees the same view whether the event came from the engine or from
    the trace's bytes; an event of any kind, with its request and its order where it has one."""
    events = stamp_all(stream)
    at = data.draw(st.integers(1, len(events) - 1)) if len(events) > 1 else 1
    state = fold(events[:at])
    folded = [e for e in events[at:] if type(e) in READS]
    kinds = [cls for cls in READS if cls is not StrategyStarted]
    extra = data.draw(st.lists(events_of_kinds(kinds), max_size=3))
    for event in [*folded[:3], *extra]:
        live, replayed, full = _fold_both_ways(state, event)
        assert live == replayed == full, event.kind


def test_every_folded_kind_is_in_the_law_above() -> None:
    """The law draws its events from event_streams() and testing.events(): every kind the
    reducer folds must come out of one of them, so none escapes it."""
    assert {c.kind for c in READS} <= {info.name for info in REGISTRY.kinds()}


@settings(max_examples=60)
@given(history=venue_histories(), data=st.data())
def test_cash_equals_the_venues_balance_after_every_report_in_any_arrival_order(
    history: VenueHistory, data: st.DataObject
) -> None:
    """A balance report that already includes a fill, folded before the fill's reports, does
    not count it twice; one from before a fill does not lose it; in any arrival order."""
    arrival = data.draw(shuffled(list(history.reports)))
    state = fold([strategy_started()])
    seen: list[Event] = []
    for event in arrival:
        state = reduce(state, event)
        seen.append(event)
        expected = history.expected_cash(seen)
        shown = {c: v.total for c, v in state.cash.items()}
        assert {c: v for c, v in shown.items() if v} == {c: v for c, v in expected.items() if v}
    assert not state.anomalies
    end = max(e.exchange_ts or 0 for e in history.reports)
    assert {c: v.total for c, v in state.cash.items()} == history.balance_at(end)


@given(history=fill_histories(max_fills=6), data=st.data())
def test_fills_are_never_negative_never_repeat_a_trade_and_sum_to_the_order(
    history: FillHistory, data: st.DataObject
) -> None:
    """Whatever reports and trades of an order are missing (an earlier trade, a report in the
    middle), in any order: every fill has an amount and cost >= 0, a real trade is one fill,
    and the fills add up to the order's filled and cost; with every trade or every report,
    those are the venue's totals."""
    reports = data.draw(st.lists(st.sampled_from(history.observations), unique=True))
    trades = (
        data.draw(st.lists(st.sampled_from(history.trades), unique=True)) if history.trades else []
    )
    arrival = data.draw(st.permutations([*reports, *trades]))
    order = fold(arrival, fold([strategy_started()])).orders.get(history.order_id)
    if order is None:
        return
    assert all(f.amount >= 0 and f.cost >= 0 for f in order.fills)
    real = [f.trade_id for f in order.fills if not f.emulated]
    assert sorted(real) == sorted(t.trade_id for t in trades)  # type: ignore[type-var]
    assert sum((f.amount for f in order.fills), Decimal(0)) == order.filled
    assert sum((f.cost for f in order.fills), Decimal(0)) == order.cost
    if len(trades) == len(history.trades) or history.observations[-1] in reports:
        assert (order.filled, order.cost) == (history.filled, history.cost)


@given(
    reports=st.lists(
        st.tuples(st.sampled_from([None, "long", "short"]), st.sampled_from(["0", "0.5", "2"])),
        min_size=1,
    )
)
def test_in_one_way_mode_a_market_holds_what_its_last_report_says(
    reports: list[tuple[str | None, str]],
) -> None:
    perp = "BTC/USDT:USDT"
    reports = [(side, n) if side else (None, "0") for side, n in reports]
    state = fold(
        [
            StrategyStarted("USDT", (perp,), margin=True),
            *(PositionObserved(side=side, contracts=Decimal(n), asset=perp) for side, n in reports),
        ]
    )
    side, n = reports[-1]
    expected = {} if side is None or n == "0" else {(perp, side): Decimal(n)}
    assert {k: p.contracts for k, p in state.positions.items()} == expected
    assert not state.anomalies


@given(st.datetimes(timezones=st.just(dt.UTC)))
def test_a_datetime_is_its_exact_nanoseconds(moment: dt.datetime) -> None:
    micros = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    assert datetime_ns(moment) == micros * 1000


def test_replay_until_and_tail_since_a_time_include_the_event_stamped_at_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trace"
    with Trace.open(path, "w", clock=ManualClock(1_700_000_000_000_000_000, 1000)) as trace:
        trace.extend(Note(str(i)) for i in range(40))
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    with Trace.open(path) as trace:
        for event in trace:
            assert event.ts is not None and event.seq is not None
            at = epoch + dt.timedelta(microseconds=event.ts // 1000)
            assert replay_from_trace(trace, until=at).seq == event.seq
            assert trace_tail(trace, 100, since=at)[0].seq == event.seq


@given(stream=event_streams())
def test_the_fold_does_not_depend_on_the_callers_decimal_context(stream: list[Event]) -> None:
    """ccxt's decimal_to_precision sets the thread's decimal context to round half up (and
    callers may set any precision): the reducer's arithmetic runs in its own contexts."""
    import decimal

    events = stamp_all(stream)
    expected = state_hash(fold(events))
    odd = decimal.Context(prec=6, rounding=decimal.ROUND_UP, traps=[decimal.Underflow])
    with decimal.localcontext(odd):
        assert state_hash(fold(events)) == expected
