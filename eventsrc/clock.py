"""Clocks: the core reads time and waits only through one of these, so tests and replays
control it (a test runs in virtual time and never sleeps for real).

A ``Clock`` tells the time (``now_ns``) and waits (``async sleep``); the trace only tells the
time (``TimeSource``). The simulated exchange's clocks are Clocks too, so engine and venue
share one time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def datetime_ns(moment: dt.datetime, name: str = "time") -> int:
    """An aware datetime as integer nanoseconds since the epoch, exactly (no float on the way:
    ``timestamp()`` is a float, and an event stamped exactly at the bound would be lost)."""
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (with a timezone)")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


class TimeSource(Protocol):
    """Something that tells the current wall-clock time in integer nanoseconds since the epoch."""

    def now_ns(self) -> int: ...


class Clock(TimeSource, Protocol):
    """A time source that can also wait: ``sleep(seconds)`` returns once that much of its time
    has passed (a virtual clock moves its time instead of sleeping)."""

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    """The real wall clock (``time.time_ns``), sleeping for real."""

    __slots__ = ()

    def now_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0))


class ManualClock:
    """A clock that moves only when told to; for tests and simulations.

    ``step_ns`` advances it by that much after every reading, so successive readings differ.
    """

    __slots__ = ("_now", "_step")

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000, step_ns: int = 0) -> None:
        self._now = start_ns
        self._step = step_ns

    def now_ns(self) -> int:
        now = self._now
        self._now = now + self._step
        return now

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError(f"a clock does not go backwards (advance by {ns} ns)")
        self._now += ns

    def set(self, now_ns: int) -> None:
        self._now = now_ns

    async def sleep(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` at once and let other tasks run."""
        self.advance(max(round(seconds * 1_000_000_000), 0))
        await asyncio.sleep(0)
