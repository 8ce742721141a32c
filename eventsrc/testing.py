"""Hypothesis strategies for eventsrc events, for the project's tests and for users' own.

``events()`` draws any registered kind (or only the kinds given), every field drawn from its
type hint: exact Decimals, bytes, nested attrs values, optional fields sometimes None. Requires
hypothesis (``pip install eventsrc[testing]``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Union, get_args, get_origin

import attrs
from hypothesis import strategies as st

from eventsrc.events import REGISTRY, Event, EventRegistry

__all__ = ["decimals", "event_of", "events", "strategy_for", "symbols"]

INT64 = (-(2**63), 2**63 - 1)

symbols = st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT", "XRP/EUR"])
"""A few market symbols in ccxt form."""


def decimals(allow_infinity: bool = True) -> st.SearchStrategy[Decimal]:
    """Exact decimals as exchanges report them, plus the odd extreme (no NaN: NaN != NaN)."""
    return st.one_of(
        st.integers(0, 10**12).map(lambda i: Decimal(i).scaleb(-8)),
        st.decimals(allow_nan=False, allow_infinity=allow_infinity),
    )


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the type hint ``tp`` as event fields use them."""
    if tp is type(None) or tp is None:
        return st.none()
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in get_args(tp)])
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin in (dict, Mapping):
        key, value = get_args(tp)
        return st.dictionaries(strategy_for(key), strategy_for(value), max_size=4)
    if tp is Decimal:
        return decimals()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(*INT64)
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is str:
        return st.text(max_size=24)
    if tp is bytes:
        return st.binary(max_size=64)
    if attrs.has(tp):
        return _builds(tp)
    if tp is Any:
        return st.none() | st.integers() | st.text(max_size=8)
    raise TypeError(f"no strategy for {tp!r}")


_ENVELOPE: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.none(),
    "ts": st.none(),
    "exchange_ts": st.none() | st.integers(0, 4_102_444_800_000),
    "asset": st.none() | symbols,
    "source": st.sampled_from(["", "watch_orders", "watch_ticker", "strategy", "sync"]),
    "cause": st.none() | st.integers(0, 2**40) | st.text(min_size=1, max_size=20),
}


def _builds(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {
        a.name: _ENVELOPE.get(a.name) if a.name in _ENVELOPE else strategy_for(hints[a.name])
        for a in attrs.fields(cls)
    }
    return st.builds(cls, **fields)  # type: ignore[arg-type]


def event_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Events of one registered kind."""
    return _builds(cls)


def events(
    kinds: Sequence[type[Event]] | None = None, registry: EventRegistry = REGISTRY
) -> st.SearchStrategy[Event]:
    """Events of any registered kind (or only of ``kinds``), before a trace stamps them."""
    classes = list(kinds) if kinds is not None else [info.cls for info in registry.kinds()]
    return st.one_of([event_of(cls) for cls in classes])
