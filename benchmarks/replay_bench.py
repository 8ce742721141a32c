"""Replay's figures (issue 3): full replay vs decode-only, snapshot replay, peak memory.

Workload: a 1M-event trace from ``adapters.synthetic`` with ~500 orders over the whole stream,
each filled in hundreds of small steps (order reports and their trades), tickers (~65%) and
balances, so the state stays bounded while the trace grows. Measured in one run:

- full replay: ``replay_from_trace`` on a fresh reader, no snapshot (read, decode, fold);
- decode-only: the same payload bytes (already in memory) decoded with msgspec, the fastest
  Python decoder, both untyped (dicts, decimals left as strings: the practical limit) and into
  typed Structs with the events' fields (decimals parsed: what exact money needs);
- replay of the last 1% from a snapshot vs full replay;
- peak resident memory (VmHWM) of a full replay in a fresh process, at 100k and at 1M events;
- one order filled in many steps (a report and a dated trade per fill, reports first): the cost
  of one more event at 250 fills and at 1,000 (linear per event is 4x; quadratic 16x).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import synthetic
from benchmarks._harness import parse_args, report, target, timed
from benchmarks.trace_bench import struct_twins
from eventsrc import (
    REGISTRY,
    Event,
    Fee,
    OrderObserved,
    State,
    StrategyStarted,
    Trace,
    TradeObserved,
    reduce,
    replay_from_trace,
    save_snapshot,
)
from eventsrc.testing import stamp_all

ORDERS = 500


def build(path: Path, n: int) -> None:
    with Trace.open(path, "w", durability="none") as trace:
        trace.extend(synthetic.stream(n, seed=11, orders=ORDERS))


def payloads(path: Path) -> list[tuple[str, bytes]]:
    """Every event's (kind name, payload bytes), read from the trace once."""
    with Trace.open(path) as trace:
        kinds = trace.code_table("kind")
        return [(kinds[code][0], payload) for _, _, code, payload in trace.records()]


PEAK = """
import sys
sys.path.insert(0, {root!r})
from eventsrc import Trace, replay_from_trace
with Trace.open({path!r}) as trace:
    state = replay_from_trace(trace)
# VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited by fork)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(int(status[0]) * 1024, len(state.orders))
"""


def peak_rss(path: Path) -> int:
    code = PEAK.format(root=str(Path(__file__).resolve().parents[1]), path=str(path))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[0])


def one_more_event_ms(fills: int) -> float:
    """Milliseconds to fold one more trade of an order already holding ``fills`` fills."""
    symbol, start = "BTC/USDT", 1_700_000_000_000
    reports: list[Event] = []
    trades: list[Event] = []
    filled = cost = Decimal(0)
    for i in range(1, fills + 1):
        amount, price = Decimal("0.001"), Decimal(100 + i)
        filled, cost = filled + amount, cost + amount * price
        fee = (Fee("USDT", amount * price / 1000),)
        trades.append(
            TradeObserved(
                trade_id=f"t{i}",
                order_id="o",
                asset=symbol,
                side="buy",
                amount=amount,
                cost=amount * price,
                fees=fee,
                exchange_ts=start + i,
            )
        )
        reports.append(
            OrderObserved(
                order_id="o",
                asset=symbol,
                side="buy",
                status="open",
                amount=Decimal(fills),
                filled=filled,
                cost=cost,
                fees=(Fee("USDT", cost / 1000),),
                last_trade_timestamp=start + i,
            )
        )
    events = stamp_all([StrategyStarted("USDT", (symbol,)), *reports, *trades])
    state = State()
    for event in events[:-20]:
        state = reduce(state, event)
    began = time.perf_counter()
    for event in events[-20:]:
        state = reduce(state, event)
    return (time.perf_counter() - began) / 20 * 1e3


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 20_000 if args.quick else 1_000_000
    small_n = n // 10
    repeats = args.repeats or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    results: dict[str, Any] = {"events": n, "orders": ORDERS}
    try:
        big, small = work / "big", work / "small"
        build(big, n)
        build(small, small_n)

        blobs = payloads(big)
        classes = {info.name: info.cls for info in REGISTRY.kinds()}
        twins = struct_twins({classes[k] for k, _ in blobs})
        typed = {
            k: msgspec.msgpack.Decoder(twins[classes[k]]).decode
            for k in classes
            if classes[k] in twins
        }
        untyped = msgspec.msgpack.Decoder().decode

        def decode_untyped() -> None:
            for _, payload in blobs:
                untyped(payload)

        def decode_typed() -> None:
            for kind, payload in blobs:
                typed[kind](payload)

        def full() -> None:
            with Trace.open(big) as trace:
                replay_from_trace(trace)

        times: dict[str, list[float]] = {"untyped": [], "typed": [], "full": []}
        for _ in range(repeats):
            times["untyped"].append(timed(decode_untyped))
            times["typed"].append(timed(decode_typed))
            times["full"].append(timed(full))
        untyped_s, typed_s, full_s = (
            statistics.median(times[k]) for k in ("untyped", "typed", "full")
        )
        results["replay_full_per_s"] = n / full_s
        results["decode_only_untyped_per_s"] = n / untyped_s
        results["decode_only_typed_per_s"] = n / typed_s
        results["replay_vs_decode_untyped"] = untyped_s / full_s
        results["replay_vs_decode_typed"] = typed_s / full_s
        fastest = min(untyped_s, typed_s)

        # The last 1% from a snapshot.
        with Trace.open(big) as trace:
            at = n - n // 100 - 1
            save_snapshot(trace, replay_from_trace(trace, until=at))

        def from_snapshot() -> None:
            with Trace.open(big) as trace:
                replay_from_trace(trace)

        snap_s = statistics.median(timed(from_snapshot) for _ in range(max(repeats, 5)))
        results["replay_last_1pct_from_snapshot_s"] = snap_s
        results["replay_full_s"] = full_s
        results["snapshot_speedup"] = full_s / snap_s

        results["peak_rss_mb_small"] = peak_rss(small) / 2**20
        results["peak_rss_mb_big"] = peak_rss(big) / 2**20
        results["peak_rss_big_vs_small"] = results["peak_rss_mb_big"] / results["peak_rss_mb_small"]

        few, many = (250, 1000) if not args.quick else (50, 200)
        results[f"one_more_event_ms_order_of_{few}_fills"] = few_ms = min(
            one_more_event_ms(few) for _ in range(repeats)
        )
        results[f"one_more_event_ms_order_of_{many}_fills"] = many_ms = min(
            one_more_event_ms(many) for _ in range(repeats)
        )
        results["one_more_event_many_vs_few"] = many_ms / few_ms
    finally:
        shutil.rmtree(work, ignore_errors=True)

    targets = {
        "replay_vs_fastest_decode_only": target(fastest / full_s, 0.4, ">="),
        "snapshot_speedup_last_1pct": target(results["snapshot_speedup"], 50.0, ">="),
        "peak_memory_1m_vs_100k": target(results["peak_rss_big_vs_small"], 1.5, "<="),
        # 4x the fills: at most ~linear per event (quadratic would be 16x).
        "one_more_event_4x_fills": target(results["one_more_event_many_vs_few"], 6.0, "<="),
    }
    report("replay", results, targets, args.json)


if __name__ == "__main__":
    main()
