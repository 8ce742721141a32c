"""One projection over many traces with Dask, the results concatenated with a ``trace`` column
naming where each row came from: locally by default, on a ``dask.distributed`` cluster when
given a client.

A projection is any ``projection(trace) -> part`` where a part is rows (a list of dicts), a
pandas DataFrame, or a 1-D numpy structured array. Each task gets the trace's *location* and
opens it read-only itself (``open_trace``), so it runs the same on a thread, in a child process
or on a distributed worker; an open Trace is never pickled. The projection is (cloudpickle
pickles lambdas and closures too). Tasks are impure: a trace is append-only but may grow, so a
cluster never reuses an earlier answer for the same location.

Results keep the order of the locations given, whatever order the tasks finish in. Rows and
frames concatenate to one DataFrame (a frame's own index is kept, as ``pandas.concat`` does);
structured arrays to one structured array with a ``trace`` field first.

A trace that fails (cannot be opened, or the projection raises on it) never disappears: ``each``
reports every trace's ``Outcome`` (its part, or its ``Failure``: the error and the traceback
from where it ran); ``over`` raises ``ProjectionFailed`` naming every trace that failed, and
why. To go on without them: ``concat([o for o in each(...) if o.failure is None])``.

Local scheduler: threads by default, because nothing is pickled or started (it works from any
script, with or without an ``if __name__ == "__main__"`` guard) and reading the Zarr columns
releases the GIL. A projection that folds payloads is GIL-bound, though: measured here (2 cores,
4 traces of 40k synthetic events, ``replay_from_trace`` each) sync 3.3 s, threads 3.5 s,
processes 3.4-3.6 s with the workers' start-up. For such work on a big machine pass
``scheduler="processes"`` (the script then needs the ``__main__`` guard: workers are spawned),
or a client of a ``LocalCluster`` of processes.

Needs dask and distributed (``pip install 'eventsrc[analytics]'``), imported only when used.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np

from eventsrc import EventsrcError, Trace
from projections.extra import require

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

__all__ = [
    "TRACE",
    "Failure",
    "Location",
    "Outcome",
    "ProjectionFailed",
    "Scheduler",
    "concat",
    "each",
    "open_trace",
    "over",
]

Location = str | os.PathLike[str]
"""Where a trace is: a local path, or a store URL of a sealed trace (``zip://``,
``memory://``, ``s3://``, any fsspec URL: see ``Trace.open_store``)."""
Scheduler = Literal["threads", "processes", "sync"]
TRACE = "trace"
"""The column (or structured field) naming the trace a row came from."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PURPOSE = "running a projection over many traces"


def open_trace(location: Location) -> Trace:
    """Open the trace at ``location`` read-only: the one place a location becomes a Trace.

    A local path opens with ``Trace.open(path, "r")`` (its write-ahead tail included); a store
    URL (``scheme://...``) with ``Trace.open_store``, which reads a sealed trace from any Zarr
    store (credentials and endpoints from the environment, as fsspec reads them)."""
    if isinstance(location, str) and _URL.match(location):
        return Trace.open_store(location)
    return Trace.open(location, "r")


def trace_name(location: Location) -> str:
    """What the ``trace`` column says for ``location``: the path or URL as given."""
    return os.fspath(location)


@attrs.frozen
class Failure:
    """Why the projection gave nothing for one trace."""

    trace: str
    error: str
    """The exception's class name (e.g. ``TraceNotFound``)."""
    message: str
    details: str
    """The traceback, formatted where it was raised (a worker's, on a cluster)."""

    def __str__(self) -> str:
        return f"{self.trace}: {self.error}: {self.message}"


@attrs.frozen
class Outcome:
    """What one trace gave: its part (with no ``trace`` column yet), or its failure."""

    trace: str
    part: Any = None
    failure: Failure | None = None


class ProjectionFailed(EventsrcError):
    """The projection failed on some traces; ``failures`` says which and why."""

    def __init__(self, failures: Sequence[Failure]) -> None:
        self.failures = tuple(failures)
        listed = "; ".join(str(f) for f in self.failures)
        super().__init__(f"projection failed on {len(self.failures)} trace(s): {listed}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.failures,))


def _project(location: Location, projection: Callable[[Trace], Any]) -> Outcome:
    """One task: open the trace here, run the projection, close it; a failure becomes data (so
    one bad trace neither stops the others nor loses its own name on the way back)."""
    name = trace_name(location)
    try:
        with open_trace(location) as trace:
            return Outcome(name, part=projection(trace))
    except Exception as exc:
        failure = Failure(name, type(exc).__name__, str(exc), traceback.format_exc())
        return Outcome(name, failure=failure)


def each(
    traces: Iterable[Location],
    projection: Callable[[Trace], Any],
    *,
    client: Client | None = None,
    progress: bool = True,
    scheduler: Scheduler = "threads",
) -> list[Outcome]:
    """Run ``projection`` on every trace, one Dask task each, and return every trace's
    ``Outcome`` in the order given. On ``client``'s cluster when one is given, else locally
    with ``scheduler``. ``progress``: a bar on stderr (tasks done of all)."""
    dask = require("dask", _PURPOSE)
    locations = list(traces)
    # Impure: the same location may hold more events next time (see the module docstring).
    task = dask.delayed(_project, pure=False)
    tasks = [task(location, projection) for location in locations]
    if client is not None:
        return _on_cluster(client, tasks, progress)
    if progress:
        diagnostics = require("dask.diagnostics", _PURPOSE)
        with diagnostics.ProgressBar(out=sys.stderr):
            return list(dask.compute(*tasks, scheduler=scheduler))
    return list(dask.compute(*tasks, scheduler=scheduler))


def _on_cluster(client: Client, tasks: list[Any], progress: bool) -> list[Outcome]:
    distributed = require("distributed", _PURPOSE)
    futures = client.compute(tasks)
    try:
        if progress:
            from tqdm import tqdm

            done = distributed.as_completed(futures)
            for _ in tqdm(done, total=len(futures), desc="traces", unit="trace"):
                pass
        outcomes: list[Outcome] = client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
    return outcomes


def over(
    traces: Iterable[Location],
    projection: Callable[[Trace], Any],
    *,
    client: Client | None = None,
    progress: bool = True,
    scheduler: Scheduler = "threads",
) -> pd.DataFrame | np.ndarray[Any, Any]:
    """``projection`` over every trace (see ``each``), concatenated (see ``concat``); raises
    ProjectionFailed naming every trace it failed on."""
    outcomes = each(traces, projection, client=client, progress=progress, scheduler=scheduler)
    return concat(outcomes)


def concat(outcomes: Iterable[Outcome]) -> pd.DataFrame | np.ndarray[Any, Any]:
    """The outcomes' parts as one table with a ``trace`` column first: a DataFrame from rows or
    frames, a structured array from structured arrays. Raises ProjectionFailed if any outcome
    is a failure, ValueError if a part already has a ``trace`` column, TypeError if the parts
    are of different sorts or of none of these. No outcomes: an empty frame with ``trace``."""
    found = list(outcomes)
    failures = [o.failure for o in found if o.failure is not None]
    if failures:
        raise ProjectionFailed(failures)
    pd = require("pandas", _PURPOSE)
    if not found:
        return pd.DataFrame({TRACE: []})
    sorts = {_sort(o, pd.DataFrame) for o in found}
    if len(sorts) > 1:
        raise TypeError(f"a projection's parts must all be of one sort, not {sorted(sorts)}")
    sort = sorts.pop()
    if sort == "rows":
        rows = [_tagged_row(o.trace, row) for o in found for row in o.part]
        return pd.DataFrame(rows) if rows else pd.DataFrame({TRACE: []})
    if sort == "frame":
        return pd.concat([_tagged_frame(o.trace, o.part) for o in found])
    width = max(1, *(len(o.trace) for o in found))
    return np.concatenate([_tagged_array(o.trace, o.part, width) for o in found])


def _sort(outcome: Outcome, frame: type[Any]) -> str:
    part = outcome.part
    if isinstance(part, (list, tuple)) and all(isinstance(row, Mapping) for row in part):
        return "rows"
    if isinstance(part, np.ndarray) and part.dtype.names is not None and part.ndim == 1:
        return "structured array"
    if isinstance(part, frame):
        return "frame"
    raise TypeError(
        f"{outcome.trace}: a projection must return rows (a list of dicts), a pandas DataFrame "
        f"or a 1-D numpy structured array, not {type(part).__name__}"
    )


def _collision(name: str) -> ValueError:
    return ValueError(f"{name}: the projection's result already has a {TRACE!r} column")


def _tagged_row(name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    if TRACE in row:
        raise _collision(name)
    return {TRACE: name, **row}


def _tagged_frame(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    if TRACE in frame.columns:
        raise _collision(name)
    tagged = frame.copy(deep=False)
    tagged.insert(0, TRACE, name)
    return tagged


def _tagged_array(name: str, part: np.ndarray[Any, Any], width: int) -> np.ndarray[Any, Any]:
    names = part.dtype.names or ()
    if TRACE in names:
        raise _collision(name)
    fields = part.dtype.fields or {}
    dtype = np.dtype([(TRACE, f"U{width}"), *((n, fields[n][0]) for n in names)])
    tagged = np.empty(len(part), dtype)
    tagged[TRACE] = name
    for field in names:
        tagged[field] = part[field]
    return tagged
