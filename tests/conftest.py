"""Shared fixtures: a fresh trace directory per test, and a deterministic clock."""

from __future__ import annotations

from pathlib import Path

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
