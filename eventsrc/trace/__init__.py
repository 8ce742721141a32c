"""The trace: an append-only event log (Zarr body + write-ahead segment). See ``trace.py``."""

from eventsrc.trace.integrity import Integrity
from eventsrc.trace.record import NO_CAUSE, NO_EXCHANGE_TS
from eventsrc.trace.recovery import Recovery, Tail
from eventsrc.trace.trace import Durability, Mode, Trace

__all__ = [
    "NO_CAUSE",
    "NO_EXCHANGE_TS",
    "Durability",
    "Integrity",
    "Mode",
    "Recovery",
    "Tail",
    "Trace",
]
