"""What every command shares."""

from __future__ import annotations

import argparse


def count(text: str) -> int:
    """A whole number >= 0, for argparse."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


class CommandError(Exception):
    """A command that cannot do what it was asked: its message is the one line the user sees
    (exit status 2)."""
