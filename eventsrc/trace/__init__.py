"""The trace: an append-only event log (Zarr body + write-ahead segment). See ``trace.py``."""

from eventsrc.trace.record import NO_CAUSE, NO_EXCHANGE_TS
from eventsrc.trace.trace import Durability, Mode, Recovery, Trace

__all__ = ["NO_CAUSE", "NO_EXCHANGE_TS", "Durability", "Mode", "Recovery", "Trace"]
