"""What caused an event and what it caused, through the envelope's ``cause``: the seq of the
command an event answers (the ``cause`` column holds it), or the client order id of the order
request it answers (kept in the payload; the column then holds ``NO_CAUSE``).

Both directions are found from the envelope columns first; payloads are decoded only for the
few candidates the columns leave: events of kinds that name an order by client order id, of
the same asset.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from eventsrc import NO_CAUSE, Event, OrderRequested, Trace

__all__ = ["Lineage", "lineage"]


@attrs.frozen
class Lineage:
    cause: Event | None
    """The event ``cause`` names (None: none, or not found in the trace)."""
    effects: tuple[Event, ...]
    """The first ``limit`` events whose cause is this event, oldest first."""
    more_effects: int
    """How many more there are beyond ``effects``."""


def _codes_with_field(trace: Trace, field: str) -> list[int]:
    """The kind codes of ``trace`` whose registered class has ``field``."""
    codes = []
    for code, (name, _version) in enumerate(trace.code_table("kind")):
        info = trace.registry.by_name(name)
        if info is not None and any(a.name == field for a in attrs.fields(info.cls)):
            codes.append(code)
    return codes


def _candidates(
    trace: Trace, event: Event, kind_codes: list[int], before: bool
) -> np.ndarray[Any, Any]:
    """Seqs before (or after) ``event`` of one of ``kind_codes``, of its asset, whose cause
    column says the cause is not a seq."""
    assert event.seq is not None
    kinds = trace.column("kind")
    mask = np.isin(kinds, np.asarray(kind_codes, dtype=np.int64))
    mask &= trace.column("cause") == NO_CAUSE
    if event.asset is not None:
        asset_codes = trace.code_table("asset")
        code = asset_codes.index(event.asset) if event.asset in asset_codes else -1
        mask &= trace.column("asset") == code
    seqs = np.arange(len(kinds))
    mask &= seqs < event.seq if before else seqs > event.seq
    return np.flatnonzero(mask)


def lineage(trace: Trace, event: Event, limit: int = 20) -> Lineage:
    """What caused ``event`` (read from ``trace``) and what it caused (see the module
    docstring)."""
    seq = event.seq
    assert seq is not None
    cause: Event | None = None
    if isinstance(event.cause, int) and not isinstance(event.cause, bool):
        if 0 <= event.cause < len(trace):
            cause = trace[event.cause]
    elif isinstance(event.cause, str):
        wanted = event.cause
        requests = [
            code
            for code, (name, _v) in enumerate(trace.code_table("kind"))
            if name == OrderRequested.kind
        ]
        for found in reversed(_candidates(trace, event, requests, before=True).tolist()):
            request = trace[found]
            if getattr(request, "client_order_id", None) == wanted:
                cause = request
                break
    effects = set(np.flatnonzero(trace.column("cause") == seq).tolist())
    client_order_id = getattr(event, "client_order_id", None)
    if isinstance(event, OrderRequested) and client_order_id:
        codes = _codes_with_field(trace, "client_order_id")
        for found in _candidates(trace, event, codes, before=False).tolist():
            if trace[found].cause == client_order_id:
                effects.add(found)
    ordered = sorted(effects)
    return Lineage(
        cause,
        tuple(trace[s] for s in ordered[:limit]),
        max(0, len(ordered) - limit),
    )
