"""Offline analytics' figures (issue 12): the columnar fast paths against decoding everything.

Workload: a 1M-event trace from ``adapters.synthetic`` (tickers ~60%, orders with partial
fills and their trades ~30%, balances ~8%), 500 orders, built once per run in a temp dir.
Measured in one run, each against its baseline:

- (a) a kind/time filter selecting ~1% of the events (balance reports inside a time window),
  with ``projections.selection.select`` (envelope columns, then only those payloads decoded),
  vs decoding the whole trace and filtering the events (target >= 20x);
- (b) the fills table and the lifecycles' latency stats (only the order events decoded and
  folded) vs a full ``replay_from_trace`` (reported as a ratio);
- (c) the ``ts`` column to a pandas Series (``envelope_series``) vs pandas reading the same
  column from a Parquet file (target >= 1x).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import synthetic
from benchmarks._harness import parse_args, report, target, timed
from eventsrc import Trace, replay_from_trace
from projections.extra import require
from projections.fills import fill_rows
from projections.frames import envelope_series
from projections.lifecycles import latency_stats, lifecycles
from projections.selection import Selection, select

ORDERS = 500
KIND = "balance_observed"


def build(path: Path, n: int) -> None:
    with Trace.open(path, "w", durability="none") as trace:
        trace.extend(synthetic.stream(n, seed=11, orders=ORDERS))


def one_percent(trace: Trace) -> Selection:
    """Balance reports inside the time window that holds ~1% of all events among them."""
    kinds = trace.code_table("kind")
    codes = [c for c, (name, _) in enumerate(kinds) if name == KIND]
    ts = trace.column("ts")
    hits = ts[np.isin(trace.column("kind"), codes)]
    want = max(1, len(ts) // 100)
    start = (len(hits) - want) // 2
    since, until = int(hits[start]), int(hits[min(len(hits) - 1, start + want - 1)])
    import datetime as dt

    def at(ns: int) -> dt.datetime:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)

    # microsecond bounds: widen by one microsecond each side so the window holds both ends
    return Selection(
        kinds=frozenset({KIND}),  # type: ignore[arg-type]
        since=at(since - 1000),
        until=at(until + 1000),
    )


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 50_000 if args.quick else 1_000_000
    repeats = args.repeats or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="analytics-bench-"))
    results: dict[str, Any] = {"events": n, "orders": ORDERS}
    try:
        path = work / "trace"
        results["build_s"] = timed(lambda: build(path, n))
        with Trace.open(path) as trace:
            selection = one_percent(trace)
            chosen: list[int] = []

            def columnar() -> None:
                chosen[:] = [e.seq or 0 for e in select(trace, selection)]

            def decode_all() -> None:
                found = [e.seq for e in trace if selection(e)]
                assert len(found) == len(chosen)

            columnar()
            results["filter_selected"] = len(chosen)
            results["filter_selected_fraction"] = len(chosen) / n
            times: dict[str, list[float]] = {"columnar": [], "decode_all": []}
            for _ in range(repeats):
                times["columnar"].append(timed(columnar))
                times["decode_all"].append(timed(decode_all))
            col_s, all_s = (statistics.median(times[k]) for k in ("columnar", "decode_all"))
            results["filter_columnar_s"] = col_s
            results["filter_decode_all_s"] = all_s
            results["filter_speedup"] = all_s / col_s

            fills_n: list[int] = []

            def fills_and_latency() -> None:
                fills_n[:] = [len(fill_rows(trace))]
                latency_stats(lifecycles(trace))

            def full_replay() -> None:
                replay_from_trace(trace)

            times = {"fills": [], "replay": []}
            for _ in range(repeats):
                times["fills"].append(timed(fills_and_latency))
                times["replay"].append(timed(full_replay))
            fills_s, replay_s = (statistics.median(times[k]) for k in ("fills", "replay"))
            results["fills_rows"] = fills_n[0]
            results["fills_and_latency_s"] = fills_s
            results["full_replay_s"] = replay_s
            results["fills_and_latency_vs_replay"] = replay_s / fills_s

            pd = require("pandas", "the pandas figures")
            pa = require("pyarrow", "the Parquet figures")
            pq = require("pyarrow.parquet", "the Parquet figures")

            parquet = work / "ts.parquet"
            series = envelope_series(trace, "ts")
            pq.write_table(
                pa.table({"ts": pa.array(series.array, type=pa.timestamp("ns", tz="UTC"))}),
                str(parquet),
            )

            def to_pandas() -> None:
                with Trace.open(path) as fresh:  # a fresh reader: no column cached
                    envelope_series(fresh, "ts")

            def from_parquet() -> None:
                pd.read_parquet(parquet, columns=["ts"])

            assert pd.read_parquet(parquet, columns=["ts"])["ts"].equals(series)
            times = {"ours": [], "parquet": []}
            for _ in range(max(repeats, 5)):
                times["ours"].append(timed(to_pandas))
                times["parquet"].append(timed(from_parquet))
            ours_s, parquet_s = (statistics.median(times[k]) for k in ("ours", "parquet"))
            results["ts_to_pandas_s"] = ours_s
            results["ts_from_parquet_s"] = parquet_s
            results["ts_to_pandas_vs_parquet"] = parquet_s / ours_s
    finally:
        shutil.rmtree(work, ignore_errors=True)
    targets = {
        "filter_speedup": target(results["filter_speedup"], 20.0, ">="),
        "ts_to_pandas_vs_parquet": target(results["ts_to_pandas_vs_parquet"], 1.0, ">="),
    }
    report("analytics", results, targets, args.json)


if __name__ == "__main__":
    main()
