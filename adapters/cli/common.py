"""What every command shares: argument types, the error a command raises to stop with one
clear line, and how a command that runs the engine shows its alerts about the trace."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from typing import Any

import tqdm


class CommandError(Exception):
    """A command cannot do what was asked (an unknown kind, a seq past the end, ...): ``main``
    prints the message as one line on stderr and exits with ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def count(text: str) -> int:
    """A whole number >= 0, for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def seconds(text: str) -> float:
    """A number of seconds > 0, for argparse."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


_WHOLE = re.compile(r"[+-]?\d+")


def seq_or_time(text: str) -> int | dt.datetime:
    """A seq (a whole number >= 0) or an ISO-8601 time (``2025-01-01``,
    ``2025-01-01T12:00:00Z``, ``2025-01-01 12:00:00.5+02:00``; a time with no zone is UTC,
    as every time the commands print is), for argparse."""
    text = text.strip()
    if _WHOLE.fullmatch(text):
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"a seq is 0 or more, not {value}")
        return value
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a seq (a whole number) nor an ISO-8601 time "
            "(e.g. 2025-01-01T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def trace_alert(what: str, message: str, event: Any) -> None:
    """The engine's alert hook for the commands that run it: the trace's alerts (recording
    suspended because the disk is full or read-only, resumed, a stop while it was) as one
    warning line each on stderr, above any progress bar; the others are in the trace."""
    if what == "trace":
        tqdm.tqdm.write(f"eventsrc: warning: {' '.join(message.split())}", file=sys.stderr)
