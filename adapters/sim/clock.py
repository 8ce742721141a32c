"""Time for the simulated exchange: virtual (tests run a simulated day in seconds) or real.

A virtual clock moves only when someone sleeps on it, in one of two ways:

- by default, ``sleep(s)`` advances it by ``s`` at once and yields to the event loop. Two tasks
  sleeping at once each advance it, so virtual time is not faithful under concurrency, but it
  is deterministic, and a test can drive it with nothing but ``asyncio.sleep(0)``;
- ``faithful=True`` makes it a scheduler: ``sleep(s)`` waits until the clock reads ``s`` later,
  and the clock moves on (to the earliest sleeper's deadline) only once every task of the
  event loop waits, so concurrent tasks share one time: five watchers each sleeping 1 s make
  one virtual second pass, not five. Deterministic too; a task spinning on
  ``asyncio.sleep(0)`` holds time still. (It reads asyncio's ready queue to know the loop is
  idle; on a loop without one it falls back to the default.)
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
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
    """Virtual time in ms; starts at ``start_ms``, moves by ``sleep`` (see the module
    docstring) and ``advance``."""

    def __init__(self, start_ms: int = DEFAULT_START_MS, *, faithful: bool = False) -> None:
        self._now = start_ms
        self.faithful = faithful
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        return self._now

    def now_ns(self) -> int:
        return self._now * 1_000_000

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"virtual time does not go backwards ({seconds} s)")
        self._now += round(seconds * 1000)

    async def sleep(self, seconds: float) -> None:
        ms = max(round(seconds * 1000), 0)
        loop = asyncio.get_running_loop()
        if (
            ms == 0
            or not self.faithful
            or not isinstance(getattr(loop, "_ready", None), collections.deque)
        ):
            self._now += ms
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + ms, next(self._order), wake))
        driver = self._driver
        if driver is None or driver.done() or driver.get_loop() is not loop:
            self._driver = loop.create_task(self._drive(), name="virtual-clock")
        try:
            await wake
        finally:
            wake.cancel()  # a cancelled sleeper: the driver skips it

    async def _drive(self) -> None:
        """Wake the sleepers in deadline order, moving the clock to each deadline once every
        other task waits."""
        loop = asyncio.get_running_loop()
        ready: collections.deque[object] = loop._ready  # type: ignore[attr-defined]
        sleepers = self._sleepers
        while True:
            await asyncio.sleep(0)
            while ready:  # someone can still run at this time: let them
                await asyncio.sleep(0)
            while sleepers and sleepers[0][2].done():
                heapq.heappop(sleepers)
            if not sleepers:
                return
            deadline = sleepers[0][0]
            if deadline > self._now:
                self._now = deadline
            while sleepers and sleepers[0][0] <= self._now:
                _, _, wake = heapq.heappop(sleepers)
                if not wake.done():
                    wake.set_result(None)


class RealClock:
    """The wall clock, for the demo."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
