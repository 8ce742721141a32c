"""What every benchmark shares: argument parsing, repeats, the machine description, the report.

Output format (DESIGN.md "Benchmarks"): a human-readable table, then with ``--json`` one JSON
object on the last line of stdout: ``{"bench", "machine", "results", "targets"}`` where each
target is ``{"value", "target", "op", "met"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--quick", action="store_true", help="a small size, for smoke tests")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure")
    return parser.parse_args()


def machine() -> dict[str, Any]:
    versions = {}
    for dist in ("zarr", "numcodecs", "numpy", "msgspec", "attrs", "cattrs", "eventsourcing"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_1min": load,
        "versions": versions,
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    runs: dict[str, Callable[[], object]], repeats: int, setup: Callable[[str], None] | None = None
) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved repeat by repeat (noise hits all)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            if setup is not None:
                setup(name)
            times[name].append(timed(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def target(value: float, goal: float, op: str) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal
    return {"value": value, "target": goal, "op": op, "met": met}


def report(
    bench: str, results: dict[str, Any], targets: dict[str, dict[str, Any]], as_json: bool
) -> None:
    width = max(len(k) for k in results) + 2
    print(f"== {bench}")
    for key, value in results.items():
        shown = f"{value:,.4g}" if isinstance(value, float) else f"{value:,}"
        print(f"  {key:<{width}} {shown}")
    print("targets:")
    for key, t in targets.items():
        mark = "met" if t["met"] else "MISSED"
        print(f"  {key:<{width}} {t['value']:,.4g} {t['op']} {t['target']:,} -> {mark}")
    sys.stdout.flush()
    if as_json:
        doc = {"bench": bench, "machine": machine(), "results": results, "targets": targets}
        print(json.dumps(doc))
