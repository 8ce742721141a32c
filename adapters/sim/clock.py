"""Time for the simulated exchange: virtual (tests run a simulated day in seconds) or real.

A virtual clock moves only when someone sleeps on it: ``sleep(s)`` advances it by ``s`` at
once and yields to the event loop. Two tasks sleeping at once each advance it, so virtual
time is not wall-clock-faithful under concurrency, but it is deterministic: the same calls
in the same order see the same times.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["RealClock", "SimClock", "VirtualClock"]

DEFAULT_START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


class SimClock(Protocol):
    """A clock the simulated exchange reads in ms; it is an ``eventsrc.Clock`` too (``now_ns``
    and ``sleep``), so an engine and the venue it trades on share one time."""

    def now_ms(self) -> int: ...

    def now_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class VirtualClock:
    """Virtual time in ms; starts at ``start_ms`` and moves by ``sleep`` and ``advance``."""

    def __init__(self, start_ms: int = DEFAULT_START_MS) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def now_ns(self) -> int:
        return self._now * 1_000_000

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"virtual time does not go backwards ({seconds} s)")
        self._now += round(seconds * 1000)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0))
        await asyncio.sleep(0)


class RealClock:
    """The wall clock, for the demo."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
