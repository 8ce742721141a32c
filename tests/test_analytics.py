"""The read models of projections/ against traces of known events, value by value; the
columnar selection against a full decode-and-filter; the exports' dtypes."""

from __future__ import annotations

import datetime as dt
import io
import tempfile
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import synthetic
from eventsrc import (
    Balance,
    BalanceObserved,
    Event,
    Fee,
    ManualClock,
    Note,
    OrderAcknowledged,
    OrderObserved,
    OrderRejected,
    OrderRequested,
    StrategyStarted,
    TickerObserved,
    Trace,
    TradeObserved,
    WatcherError,
    WatcherReconnected,
    WatcherStarted,
    replay_from_trace,
)
from projections.equity import history
from projections.fills import FILLS, fill_rows, fills_table
from projections.frames import to_arrow, to_numpy, to_pandas, to_parquet
from projections.health import anomalies, watcher_health
from projections.lifecycles import latency_stats, lifecycles, lifecycles_table
from projections.plots import plot_latency
from projections.selection import Selection, select
from projections.summary import all_fills

S = 1_000_000_000  # ns in a second
MS = 1_000_000
T0 = 1_735_689_600 * S  # 2025-01-01T00:00:00Z
BTC = "BTC/USDT"
WATCHER = "orders:BTC/USDT"
D = Decimal


def record(path: Path, stamped: Sequence[tuple[int, Event]]) -> Trace:
    """A trace holding ``stamped`` events, each recorded at its given ``ts`` (ns)."""
    clock = ManualClock(T0)
    with Trace.open(path, "w", durability="none", clock=clock) as trace:
        for ts, event in stamped:
            clock.set(ts)
            trace.append(event)
    return Trace.open(path)


def known_events() -> list[tuple[int, Event]]:
    t = T0 + 100 * S  # the first order's request
    return [
        (T0, StrategyStarted("USDT", (BTC,), exchange="sim", strategy="known", source="strategy")),
        (T0 + 1 * S, WatcherStarted(WATCHER, source=WATCHER)),
        (
            T0 + 2 * S,
            BalanceObserved(
                balances=(Balance("USDT", total=D(1000), free=D(1000), used=D(0)),),
                source="balance",
            ),
        ),
        (T0 + 3 * S, TickerObserved(asset=BTC, last=D(100), source="ticker")),
        (
            t,
            OrderRequested("c1", "buy", "limit", D(2), D(100), asset=BTC, source="strategy"),
        ),
        (
            t + 50 * MS,
            OrderAcknowledged(
                client_order_id="c1",
                order_id="o1",
                asset=BTC,
                exchange_ts=(t + 40 * MS) // MS,
                source="create_order",
            ),
        ),
        (
            t + 200 * MS,
            TradeObserved(
                trade_id="t1",
                order_id="o1",
                client_order_id="c1",
                side="buy",
                price=D(100),
                amount=D(1),
                cost=D(100),
                fees=(Fee("USDT", D("0.1")),),
                asset=BTC,
                exchange_ts=(t + 190 * MS) // MS,
                source=WATCHER,
            ),
        ),
        (
            t + 500 * MS,
            OrderObserved(
                order_id="o1",
                client_order_id="c1",
                side="buy",
                order_type="limit",
                status="closed",
                price=D(100),
                amount=D(2),
                filled=D(2),
                remaining=D(0),
                cost=D(201),
                fees=(Fee("USDT", D("0.2")),),
                asset=BTC,
                exchange_ts=(t + 490 * MS) // MS,
                last_trade_timestamp=(t + 490 * MS) // MS,
                source=WATCHER,
            ),
        ),
        (t + 60 * S, WatcherReconnected(WATCHER, gap_start_ts=t + 55 * S, source=WATCHER)),
        (
            t + 70 * S,
            OrderRequested("c2", "sell", "limit", D(1), D(110), asset=BTC, source="strategy"),
        ),
        (
            t + 70 * S + 10 * MS,
            OrderRejected(
                client_order_id="c2",
                error="InsufficientFunds",
                message="not enough BTC",
                asset=BTC,
                source="create_order",
            ),
        ),
        (t + 80 * S, WatcherError(WATCHER, "NetworkError", "connection reset", source=WATCHER)),
        (
            t + 81 * S,
            TradeObserved(
                trade_id="t9",
                order_id="o9",
                side="hold",
                price=D(1),
                amount=D(1),
                cost=D(1),
                asset=BTC,
                source=WATCHER,
            ),
        ),
    ]


T1 = T0 + 100 * S


@pytest.fixture
def known(tmp_path: Path) -> Iterator[Trace]:
    trace = record(tmp_path / "known", known_events())
    yield trace
    trace.close()


def test_fills_table_holds_each_fill_value_by_value(known: Trace) -> None:
    rows = fill_rows(known)
    assert [(r.seq, r.ts, r.asset, r.side) for r in rows] == [
        (6, T1 + 200 * MS, BTC, "buy"),
        (7, T1 + 500 * MS, BTC, "buy"),
    ]
    real, emulated = rows
    assert (real.amount, real.price, real.cost, real.fee, real.fee_currency) == (
        D(1),
        D(100),
        D(100),
        D("0.1"),
        "USDT",
    )
    assert (real.emulated, real.order_id, real.trade_id) == (False, "o1", "t1")
    assert real.exchange_ts == (T1 + 190 * MS) // MS
    assert (emulated.amount, emulated.price, emulated.cost, emulated.fee) == (
        D(1),
        D(101),
        D(101),
        D("0.1"),
    )
    assert (emulated.emulated, emulated.order_id, emulated.trade_id) == (True, "o1", None)


def test_fills_from_the_order_events_alone_equal_a_full_replays(tmp_path: Path) -> None:
    with Trace.open(tmp_path / "s", "w", durability="none") as trace:
        trace.extend(synthetic.stream(4000, seed=5, orders=15))
    with Trace.open(tmp_path / "s") as trace:
        state = replay_from_trace(trace)
        fast = fill_rows(trace)
        assert len(fast) > 10
        assert fast == fill_rows(trace, state)
        assert [(r.seq, r.amount, r.cost, r.fees, r.trade_id) for r in fast] == [
            (f.seq, f.amount, f.cost, f.fees, f.trade_id) for f in all_fills(state)
        ]


def test_order_lifecycles_time_every_step(known: Trace) -> None:
    first, second, stray = lifecycles(known)
    assert (first.client_order_id, first.order_id, first.asset, first.side) == (
        "c1",
        "o1",
        BTC,
        "buy",
    )
    assert first.status == "closed"
    assert (first.requested_seq, first.requested_ts) == (4, T1)
    assert first.acknowledged_ts == T1 + 50 * MS
    assert first.acknowledged_exchange_ts == (T1 + 40 * MS) // MS
    assert first.first_fill_ts == T1 + 200 * MS
    assert first.finished_ts == T1 + 500 * MS
    assert (first.acknowledge_ns, first.first_fill_ns, first.finish_ns, first.total_ns) == (
        50 * MS,
        150 * MS,
        300 * MS,
        500 * MS,
    )
    assert (second.client_order_id, second.status, second.side) == ("c2", "rejected", "sell")
    assert second.reason == "InsufficientFunds: not enough BTC"
    assert (second.acknowledge_ns, second.first_fill_ns) == (None, None)
    assert (second.finish_ns, second.total_ns) == (10 * MS, 10 * MS)
    # a trade of an order the trace never requested still gets a lifecycle, from its trade
    assert (stray.order_id, stray.requested_ts, stray.first_fill_ts) == ("o9", None, T1 + 81 * S)


def test_latency_stats_summarize_each_step(known: Trace) -> None:
    stats = {s.step: s for s in latency_stats(lifecycles(known))}
    assert (stats["acknowledge"].count, stats["acknowledge"].median) == (1, 50 * MS)
    assert stats["finish"].count == 2
    assert (stats["finish"].min, stats["finish"].max) == (10 * MS, 300 * MS)
    assert stats["finish"].median == 155 * MS
    assert stats["total"].p99 == pytest.approx(10 * MS + 0.99 * 490 * MS)


def test_cash_curve_follows_each_currency(known: Trace) -> None:
    found = history(known)
    assert [(p.seq, p.currency, p.total) for p in found.cash] == [
        (2, "USDT", D(1000)),
        (6, "BTC", D(1)),
        (6, "USDT", D("899.9")),
        (7, "BTC", D(2)),
        (7, "USDT", D("798.8")),
    ]
    assert [p.ts for p in found.cash][:2] == [T0 + 2 * S, T1 + 200 * MS]
    assert found.equity[-1].equity == D("998.8")  # 798.8 USDT + 2 BTC at 100


def test_watcher_health_counts_updates_gaps_stalls_and_errors(known: Trace) -> None:
    (row,) = watcher_health(known)
    assert row.watcher == WATCHER
    assert row.updates == 3  # the trade, the order report, the stray trade
    assert (row.starts, row.stops, row.errors, row.reconnects) == (1, 0, 1, 1)
    assert row.gap_ns == 5 * S
    # silences: start -> first update 99.2 s, 0.3 s, then 80.5 s to the stray trade
    assert row.stalls == 2
    assert row.longest_silence_ns == T1 + 200 * MS - (T0 + 1 * S)
    assert (row.first_ts, row.last_ts) == (T1 + 200 * MS, T1 + 81 * S)
    assert row.last_error == "NetworkError: connection reset"
    assert row.status == "error"
    (lenient,) = watcher_health(known, stall_ns=100 * S)
    assert lenient.stalls == 0


def test_anomalies_name_their_event_and_reason(known: Trace) -> None:
    (row,) = anomalies(known)
    assert (row.seq, row.ts, row.event_kind, row.asset, row.source) == (
        12,
        T1 + 81 * S,
        "trade_observed",
        BTC,
        WATCHER,
    )
    assert "side is 'hold'" in row.reason


# ---------------------------------------------------------------------------------------------
# The columnar selection


KINDS = ("note", "ticker", "watcher_started")
ASSETS = (None, "BTC/USDT", "ETH/USDT")
SOURCES = ("", "ticker", "strategy")


@st.composite
def stamped_events(draw: st.DrawFn) -> list[tuple[int, Event]]:
    n = draw(st.integers(0, 40))
    ts = T0
    out: list[tuple[int, Event]] = []
    for i in range(n):
        ts += draw(st.integers(0, 3)) * S
        kind = draw(st.sampled_from(KINDS))
        asset = draw(st.sampled_from(ASSETS))
        source = draw(st.sampled_from(SOURCES))
        event: Event
        if kind == "note":
            event = Note(f"n{i}", asset=asset, source=source)
        elif kind == "ticker":
            event = TickerObserved(asset=asset, last=D(i), source=source)
        else:
            event = WatcherStarted(f"w{i}", asset=asset, source=source)
        out.append((ts, event))
    return out


bounds = st.one_of(
    st.none(),
    st.integers(-2, 45),
    st.integers(-2, 130).map(lambda s: dt.datetime.fromtimestamp((T0 + s * S) / S, dt.UTC)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stamped_events(),
    st.none() | st.frozensets(st.sampled_from((*KINDS, "order_requested"))),
    st.none() | st.frozensets(st.sampled_from((*ASSETS, "SOL/USDT"))),
    st.none() | st.frozensets(st.sampled_from((*SOURCES, "nobody"))),
    bounds,
    bounds,
)
def test_columnar_selection_returns_what_decoding_everything_and_filtering_returns(
    stamped: list[tuple[int, Event]],
    kinds: frozenset[str] | None,
    assets: frozenset[str | None] | None,
    sources: frozenset[str] | None,
    since: int | dt.datetime | None,
    until: int | dt.datetime | None,
) -> None:
    selection = Selection(kinds, assets, sources, since, until)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as work, record(Path(work) / "t", stamped) as trace:
        fast = list(select(trace, selection))
        slow = [event for event in trace if selection(event)]
    assert fast == slow
    assert [e.seq for e in fast] == [e.seq for e in slow]


# ---------------------------------------------------------------------------------------------
# Exports


def test_numpy_export_keeps_money_exact_and_times_as_datetime64(known: Trace) -> None:
    array = to_numpy(fills_table(known))
    assert array.dtype["ts"] == np.dtype("datetime64[ns]")
    assert array.dtype["exchange_ts"] == np.dtype("datetime64[ns]")
    assert array.dtype["seq"] == np.dtype(np.int64)
    assert array.dtype["emulated"] == np.dtype(bool)
    assert array.dtype["amount"] == np.dtype(object)
    assert list(array["price"]) == [D(100), D(101)]
    assert all(type(v) is Decimal for v in array["cost"])
    assert array["ts"][0] == np.datetime64(T1 + 200 * MS, "ns")
    assert list(array["emulated"]) == [False, True]
    assert list(array["trade_id"]) == ["t1", None]


def test_arrow_export_types_money_as_decimal128_and_times_as_utc(known: Trace) -> None:
    pa = pytest.importorskip("pyarrow")
    table = to_arrow(fills_table(known))
    assert table.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("exchange_ts").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("amount").type == pa.decimal128(38, 0)
    assert table.schema.field("fee").type == pa.decimal128(38, 1)
    assert table.column("fee").to_pylist() == [D("0.1"), D("0.1")]
    assert table.column("exchange_ts").to_pylist()[0] == dt.datetime.fromtimestamp(
        (T1 + 190 * MS) / S, dt.UTC
    )
    assert table.schema.field("emulated").type == pa.bool_()
    assert table.schema.field("seq").type == pa.int64()


def test_pandas_export_has_utc_times_and_decimal_money(known: Trace) -> None:
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    frame = to_pandas(fills_table(known))
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["ts"][0] == pd.Timestamp(T1 + 200 * MS, unit="ns", tz="UTC")
    assert frame["price"].dtype == pd.ArrowDtype(pa.decimal128(38, 0))
    assert list(frame["price"]) == [D(100), D(101)]
    assert str(frame["seq"].dtype) == "Int64"
    assert str(frame["emulated"].dtype) == "boolean"
    objects = to_pandas(fills_table(known), money="object")
    assert objects["cost"].dtype == np.dtype(object)
    assert list(objects["cost"]) == [D(100), D(101)]
    lives = to_pandas(lifecycles_table(lifecycles(known)))
    assert str(lives["acknowledge_ns"].dtype) == "Int64"
    assert lives["acknowledge_ns"].tolist()[:2] == [50 * MS, pd.NA]
    assert lives["acknowledged_ts"].isna().tolist() == [False, True, True]


def test_parquet_export_reads_back_exactly(known: Trace, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    table = fills_table(known)
    to_parquet(table, tmp_path / "fills.parquet")
    back = pq.read_table(tmp_path / "fills.parquet")
    assert back.equals(to_arrow(table))
    assert back.column("cost").to_pylist() == [D(100), D(101)]
    assert list(FILLS) == back.column_names


def test_latency_histogram_is_a_png(known: Trace) -> None:
    pytest.importorskip("matplotlib")
    out = io.BytesIO()
    drawn = plot_latency(lifecycles(known), out)
    assert out.getvalue().startswith(b"\x89PNG")
    assert drawn == {"acknowledge": 1, "first_fill": 1, "finish": 2, "total": 2}
