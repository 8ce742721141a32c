"""Every benchmark runs with --quick and prints the agreed JSON shape, so none rots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*_bench.py"))


def test_there_are_benchmarks() -> None:
    assert BENCHMARKS


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick_run_prints_its_figures(bench: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(bench), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout.strip().splitlines()[-1])
    assert doc["bench"] == bench.stem.removesuffix("_bench")
    assert {"python", "cpus"} <= set(doc["machine"])
    assert doc["results"] and all(isinstance(v, int | float) for v in doc["results"].values())
    for name, t in doc["targets"].items():
        assert set(t) == {"value", "target", "op", "met"}, name
        assert t["op"] in (">=", "<=")
        assert t["met"] == (
            t["value"] >= t["target"] if t["op"] == ">=" else t["value"] <= t["target"]
        )
