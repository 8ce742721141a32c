"""Shared fixtures: a fresh trace directory per test, a deterministic clock, and each test
in a decimal context of its own."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from eventsrc import ManualClock

settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("ci")


@pytest.fixture
def trace_path(tmp_path: Path) -> Path:
    return tmp_path / "trace"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ns=1_700_000_000_000_000_000, step_ns=1_000)


@pytest.fixture(autouse=True)
def own_decimal_context() -> Iterator[None]:
    """ccxt's decimal_to_precision changes the thread's decimal context for good (rounding
    half up, Underflow trapped); a test that calls it must not change how later tests round."""
    with decimal.localcontext(decimal.Context()):
        yield


@pytest.fixture
def tail_unsealed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a trace leaves its last, partial unit in the write-ahead segment only (as a
    writer that died after its last fsync leaves it), instead of sealing it into the body."""
    import eventsrc.trace.trace as trace_module

    monkeypatch.setattr(trace_module, "seal_tail", lambda root, end: 0)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The summary tables of the reliability runs (crash, soak) this session ran."""
    from tests.reliability import REPORTS

    if REPORTS:
        terminalreporter.section("reliability runs")
        for report in REPORTS:
            terminalreporter.write_line(report.table())
            terminalreporter.write_line("")
