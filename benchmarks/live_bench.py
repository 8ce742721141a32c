"""The live engine's own overhead (issue 9): what an event costs between a producer handing it
to the engine and the producer being woken with it appended and folded.

Against SimExchange with zero latency, on its virtual clock:

- per event: ``await engine.record(event)`` for realistic tickers, timed with the wall clock
  (median and p99), at durability "group" and "sync", with no other task running (what is
  timed is the engine, not the watchers' work in between);
- the baseline, measured in the same run: the same events appended to a trace, read back and
  folded with ``reduce`` directly, one at a time, with no engine (what any engine must do);
  the engine's own overhead is the difference of the medians (target < 100 us, "group");
- events/s recorded through the engine while its watchers run (balance, two tickers, the
  orders and trades of two markets: seven producers), the watchers' own events included.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import synthetic
from adapters.sim import SimExchange
from adapters.venue import CcxtVenue
from benchmarks._harness import parse_args, report, target
from eventsrc import Engine, Event, State, TickerObserved, Trace, reduce

UNIVERSE = ("BTC/USDT", "ETH/USDT")


def tickers(n: int) -> list[Event]:
    pool = [e for e in synthetic.stream(20 * n + 100, seed=5) if isinstance(e, TickerObserved)]
    found: list[Event] = [e for e in pool if e.asset in UNIVERSE]
    return found[:n]


def baseline(path: Path, events: list[Event], durability: str) -> list[float]:
    """Microseconds per event: append + read back + fold, no engine."""
    times: list[float] = []
    with Trace.open(path, "w", durability=durability) as trace:  # type: ignore[arg-type]
        state = State()
        for event in events:
            began = time.perf_counter_ns()
            seq = trace.append(event)
            state = reduce(state, trace[seq])
            times.append((time.perf_counter_ns() - began) / 1000)
    return times


async def through_engine(
    path: Path, events: list[Event], durability: str, watchers: bool
) -> tuple[list[float], float]:
    """Microseconds per ``engine.record`` round trip, and events/s over the whole run (every
    event recorded, the watchers' own included)."""
    ex = SimExchange(seed=1)
    times: list[float] = []
    async with Engine.open(
        path,
        CcxtVenue(ex),
        universe=UNIVERSE,
        main_currency="USDT",
        clock=ex.clock,
        durability=durability,  # type: ignore[arg-type]
        watchers=watchers,
        tickers=watchers,
    ) as engine:
        if watchers:  # and the orders and trades watchers of both markets
            for symbol in UNIVERSE:
                engine._watch_orders_of(symbol)
        before = len(engine.trace)
        began_run = time.perf_counter()
        for event in events:
            began = time.perf_counter_ns()
            await engine.record(event)
            times.append((time.perf_counter_ns() - began) / 1000)
        elapsed = time.perf_counter() - began_run
        recorded = len(engine.trace) - before
    return times, recorded / elapsed


def p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 2_000 if args.quick else 20_000
    n_sync = 300 if args.quick else 2_000
    events = tickers(n)
    work = Path(tempfile.mkdtemp(prefix="live-bench-"))
    results: dict[str, Any] = {"events": n, "events_sync": n_sync}
    try:
        for durability, count in (("group", n), ("sync", n_sync)):
            batch = events[:count]
            base = baseline(work / f"base-{durability}", batch, durability)
            ours, _ = asyncio.run(
                through_engine(work / f"engine-{durability}", batch, durability, False)
            )
            _, rate = asyncio.run(
                through_engine(work / f"busy-{durability}", batch, durability, True)
            )
            results[f"{durability}_engine_median_us"] = statistics.median(ours)
            results[f"{durability}_engine_p99_us"] = p99(ours)
            results[f"{durability}_baseline_median_us"] = statistics.median(base)
            results[f"{durability}_baseline_p99_us"] = p99(base)
            results[f"{durability}_engine_vs_baseline_median"] = statistics.median(
                ours
            ) / statistics.median(base)
            results[f"{durability}_overhead_median_us"] = statistics.median(
                ours
            ) - statistics.median(base)
            results[f"{durability}_events_per_s_with_watchers"] = rate
    finally:
        shutil.rmtree(work, ignore_errors=True)
    targets = {
        "group_overhead_median_us": target(results["group_overhead_median_us"], 100.0, "<="),
    }
    report("live", results, targets, args.json)


if __name__ == "__main__":
    main()
