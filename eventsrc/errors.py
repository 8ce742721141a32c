"""The errors eventsrc raises: one base class, one subclass per thing a caller can act on."""

from __future__ import annotations


class EventsrcError(Exception):
    """Base class of every error eventsrc raises on purpose."""


class TraceError(EventsrcError):
    """A trace cannot be opened, read or written as asked."""


class NotATrace(TraceError):
    """The path exists but holds no eventsrc trace."""


class TraceNotFound(TraceError, FileNotFoundError):
    """There is no trace at the path (and the mode does not create one)."""


class TraceExists(TraceError, FileExistsError):
    """Mode "w" creates a new trace, and one is already there."""


class TraceVersionError(TraceError):
    """The trace was written in a format version this eventsrc cannot read."""


class TraceLocked(TraceError):
    """Another writer holds the trace's exclusive lock."""


class TraceCorrupted(TraceError):
    """Recorded data fails its checks; the message names where."""


class TraceStorageError(TraceError):
    """The file system refused what the trace needs (permissions, a read-only or full disk);
    the message names the path and the cause."""


class TraceClosed(TraceError):
    """The trace was used after close()."""


class TraceReadOnly(TraceError):
    """A write was attempted on a trace opened with mode="r"."""


class EventNotSerializable(EventsrcError, TypeError):
    """An event cannot be encoded; nothing was written."""


class UnknownEventKind(EventsrcError, TypeError):
    """An object that is not a registered event kind was given where an event belongs."""
