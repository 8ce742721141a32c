"""The event model: every exchange response and every local decision, as a frozen attrs class.

An event is an immutable value with an envelope (``seq``, ``ts``, ``exchange_ts``, ``asset``,
``source``, ``cause``) and the fields of its kind. ``seq`` and ``ts`` are left ``None`` by whoever
builds the event; ``Trace.append`` assigns them, and events read back from a trace carry them.

Each kind is registered under a stable name and a schema version (``@registry.kind("note")``);
the name, not the Python class name, is what a trace records, so classes may be renamed or moved.
Money is exact: every amount, price, cost and fee is a ``decimal.Decimal`` (never a float), and
decoding reads the recorded decimal string straight into a ``Decimal``.

Observations from an exchange keep the unified fields the reducer needs, typed, and the venue's
raw payload verbatim as ``raw`` (JSON bytes) that is decoded only when asked (``info()``).
Reading a venue's payloads into those fields is the venue adapter's job (for ccxt,
``adapters.observations``): the core knows its own events only.

Constructing an event checks the type of every field, so an event that could not be read back
never reaches a trace; decoding from a trace skips those checks (the data was checked on the way
in), which keeps replay fast. The checks are compiled per class into one function of plain
``type(v) is T`` tests (a hand-written walker of the type hints cost ~4 us a event; this costs
about as much as attrs' own ``__init__``).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

import attrs
import msgspec

from eventsrc.errors import UnknownEventKind

__all__ = [
    "REGISTRY",
    "Balance",
    "BalanceObserved",
    "CancelFailed",
    "CancelObserved",
    "CancelRequested",
    "Checkpoint",
    "Decision",
    "EngineError",
    "Event",
    "EventRegistry",
    "Fee",
    "KindInfo",
    "LocalCheckFailed",
    "Note",
    "OHLCVObserved",
    "Observation",
    "OrderAcknowledged",
    "OrderObserved",
    "OrderRejected",
    "OrderRequestFailed",
    "OrderRequested",
    "PositionObserved",
    "StrategyStarted",
    "StrategyStopped",
    "SyncCompleted",
    "SyncStarted",
    "TickerObserved",
    "TraceRecovered",
    "TradeObserved",
    "UnknownEvent",
    "WatcherError",
    "WatcherReconnected",
    "WatcherStarted",
    "WatcherStopped",
    "contract_symbols",
    "encode_raw",
]

E = TypeVar("E", bound="Event")
Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


@attrs.frozen(kw_only=True)
class Event:
    """The envelope every event carries.

    - ``seq``: position in the trace, dense from 0; assigned by ``Trace.append``.
    - ``ts``: local wall clock in ns, recorded at append; assigned by ``Trace.append``.
    - ``exchange_ts``: the venue's timestamp in ms, or None.
    - ``asset``: the market symbol (ccxt form, ``"BTC/USDT"``), or None.
    - ``source``: which watcher, command or strategy produced the event.
    - ``cause``: the seq (int) or client order id (str) of the command this answers, if any.
    """

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 0

    seq: int | None = None
    ts: int | None = None
    exchange_ts: int | None = None
    asset: str | None = None
    source: str = ""
    cause: int | str | None = None


@attrs.frozen(kw_only=True)
class Observation(Event):
    """An event observed from an exchange: typed unified fields plus the raw venue payload."""

    raw: bytes = b""

    def info(self) -> Any:
        """The venue's raw payload, decoded from its JSON bytes (None if none was kept)."""
        return msgspec.json.decode(self.raw) if self.raw else None


def encode_raw(payload: Any) -> bytes:
    """The raw venue payload as the JSON bytes an observation keeps (``None`` -> ``b""``)."""
    return b"" if payload is None else msgspec.json.encode(payload)


# ---------------------------------------------------------------------------------------------
# The registry


def _is_attrs(cls: type) -> bool:
    return attrs.has(cls)  # a plain bool: attrs.has() would narrow cls to AttrsInstance


@attrs.frozen
class KindInfo:
    """What the registry knows of one kind: its class, name, version and schema upgrades."""

    cls: type[Event]
    name: str
    version: int
    upgrades: Mapping[int, Upgrade]


class EventRegistry:
    """Maps stable kind names to event classes, with each kind's schema version.

    ``upgrades`` maps an old version ``v`` to a function turning a decoded payload (a dict) of
    version ``v`` into one of version ``v + 1``, so a trace written by an older version of a kind
    stays readable after the class changes.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, KindInfo] = {}
        self._by_class: dict[type[Event], KindInfo] = {}

    def kind(
        self,
        name: str,
        version: int = 1,
        upgrades: Mapping[int, Upgrade] | None = None,
        *,
        replace: bool = False,
    ) -> Callable[[type[E]], type[E]]:
        """Class decorator registering an attrs event class under ``name`` at ``version``."""
        if not name or not name.replace("_", "").isalnum() or name != name.lower():
            raise ValueError(f"a kind name is lower_snake_case letters and digits, not {name!r}")
        if version < 1:
            raise ValueError(f"kind {name!r}: version must be >= 1, not {version}")
        upgrades = dict(upgrades or {})
        missing = [v for v in range(1, version) if v not in upgrades]
        if upgrades and missing:
            raise ValueError(f"kind {name!r}: no upgrade from version(s) {missing}")

        def register(cls: type[E]) -> type[E]:
            if not (isinstance(cls, type) and issubclass(cls, Event) and _is_attrs(cls)):
                raise TypeError(f"{cls!r} is not an attrs subclass of eventsrc.Event")
            old = self._by_name.get(name)
            if old is not None and not replace and old.cls is not cls:
                raise ValueError(f"kind {name!r} is already registered to {old.cls.__qualname__}")
            known = self._by_class.get(cls)
            if known is not None and known.name != name:
                raise ValueError(
                    f"{cls.__qualname__} is already registered as kind {known.name!r}; a class "
                    f"is one kind (register a subclass to record it as {name!r} too)"
                )
            if old is not None:
                self._by_class.pop(old.cls, None)
            cls.kind = name
            cls.version = version
            _install_type_checks(cls)
            info = KindInfo(cls, name, version, upgrades)
            self._by_name[name] = info
            self._by_class[cls] = info
            return cls

        return register

    def info(self, cls: type[Event]) -> KindInfo:
        try:
            return self._by_class[cls]
        except KeyError:
            raise UnknownEventKind(
                f"{cls.__qualname__} is not a registered event kind "
                "(decorate it with @eventsrc.REGISTRY.kind(name))"
            ) from None

    def by_name(self, name: str) -> KindInfo | None:
        return self._by_name.get(name)

    def kinds(self) -> list[KindInfo]:
        return list(self._by_name.values())

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_class


REGISTRY = EventRegistry()
"""The registry of every built-in kind; users register their own kinds in it too."""


# ---------------------------------------------------------------------------------------------
# Field type checks, installed on each registered class's __init__


def _describe(tp: Any) -> str:
    if tp is type(None):
        return "None"
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp)


def _checker(tp: Any) -> Callable[[Any], bool]:
    if tp is Any:
        return lambda v: True
    if tp is type(None) or tp is None:
        return lambda v: v is None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_checker(a) for a in get_args(tp)]
        return lambda v: any(p(v) for p in parts)
    if origin is typing.Literal:
        allowed = get_args(tp)
        return lambda v: v in allowed
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _checker(args[0])
            return lambda v: type(v) is tuple and all(item(x) for x in v)
        items = [_checker(a) for a in args]
        return lambda v: (
            type(v) is tuple
            and len(v) == len(items)
            and all(c(x) for c, x in zip(items, v, strict=True))
        )
    if origin in (dict, Mapping):
        key, val = (_checker(a) for a in get_args(tp))
        return lambda v: isinstance(v, dict) and all(key(k) and val(x) for k, x in v.items())
    if tp is int:
        return lambda v: type(v) is int
    if tp is float:
        return lambda v: type(v) is float or type(v) is int
    if tp is bool:
        return lambda v: type(v) is bool
    if isinstance(tp, type):
        return lambda v: isinstance(v, tp)
    return lambda v: True


def _fast_test(tp: Any, value: str, names: dict[str, Any]) -> str | None:
    """A Python expression testing ``value`` against ``tp`` with plain identity checks, for
    the common types; None where only the general checker will do."""
    if tp is type(None) or tp is None:
        return f"{value} is None"
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        parts = [_fast_test(a, value, names) for a in get_args(tp)]
        if any(p is None for p in parts):
            return None
        return "(" + " or ".join(p for p in parts if p) + ")"
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and isinstance(args[0], type):
            item = args[0]
            if item in (int, str, bytes, Decimal) or _is_attrs(item):
                names[item.__name__] = item
                return (
                    f"(type({value}) is tuple and "
                    f"all([type(x) is {item.__name__} for x in {value}]))"
                )
        return None
    if tp is bool:
        return f"({value} is True or {value} is False)"
    if tp in (int, str, bytes, Decimal):
        names[tp.__name__] = tp
        return f"type({value}) is {tp.__name__}"
    return None


def _install_type_checks(cls: type[Event]) -> None:
    """Give ``cls`` a compiled ``__init__`` that checks every field's type, then sets the
    fields as attrs' own ``__init__`` would (same parameters, defaults, factories and
    converters): ``type(v) is T`` where it can (a few tens of ns a field), the general checker
    where it must; a value failing the fast test is given to the general checker before it is
    refused (so subclasses of str or Decimal are accepted, as ``isinstance`` would). A class's
    ``__check__`` method, if it has one, runs last: checks that relate several fields. None of
    this runs when msgspec decodes an event from a trace (an old trace stays readable whatever
    a newer check would say of it).

    Measured (benchmarks/codec_bench.py): wrapping attrs' ``__init__`` and reading every
    field back cost ~2.2x a plain attrs class; checking the parameters before setting them,
    and setting each through its slot's descriptor (~40 ns a field against ~70 for
    ``object.__setattr__``), about as much as attrs' ``__init__`` alone. A class attrs gave
    validators or ``__attrs_post_init__`` keeps attrs' ``__init__``, wrapped."""
    if getattr(cls.__init__, "__eventsrc_checked__", None) is cls:
        return
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    names: dict[str, Any] = {
        "_refuse": _refuse,
        "cls": cls,
        "_set": object.__setattr__,
        "NOTHING": attrs.NOTHING,
    }
    own = not hasattr(cls, "__attrs_post_init__") and all(a.validator is None for a in fields)
    positional: list[str] = []
    keywords: list[str] = []
    body: list[str] = []
    checks: list[str] = []
    for i, a in enumerate(fields):
        tp = hints[a.name]
        names[f"ok{i}"] = _checker(tp)
        names[f"tp{i}"] = tp
        value = a.alias if own else f"self.{a.name}"
        test = _fast_test(tp, value, names) or "False"
        checks += [
            f"    if not {test} and not ok{i}({value}):",
            f"        _refuse(cls, {a.name!r}, tp{i}, {value})",
        ]
        if not own:
            continue
        default = a.default
        if default is attrs.NOTHING:
            param = a.alias
        elif isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                own = False
                continue
            names[f"factory{i}"] = default.factory
            param = f"{a.alias}=NOTHING"
            body.append(f"    if {a.alias} is NOTHING: {a.alias} = factory{i}()")
        else:
            names[f"default{i}"] = default
            param = f"{a.alias}=default{i}"
        (keywords if a.kw_only else positional).append(param)
        if a.converter is not None:
            names[f"convert{i}"] = a.converter
            body.append(f"    {a.alias} = convert{i}({a.alias})")
    if own:
        signature = ", ".join(["self", *positional, *(["*", *keywords] if keywords else [])])
        lines = [f"def __init__({signature}):", *body, *checks]
        for i, a in enumerate(fields):
            slot = inspect.getattr_static(cls, a.name, None)
            if isinstance(slot, types.MemberDescriptorType):
                names[f"slot{i}"] = slot.__set__  # the slot itself: ~40% faster to set
                lines.append(f"    slot{i}(self, {a.alias})")
            else:
                lines.append(f"    _set(self, {a.name!r}, {a.alias})")
    else:
        names["attrs_init"] = cls.__init__
        lines = ["def __init__(self, *args, **kwargs):", "    attrs_init(self, *args, **kwargs)"]
        lines += checks
    if hasattr(cls, "__check__"):  # checks of several fields together, on construction only
        lines.append("    self.__check__()")
    exec("\n".join(lines), names)
    __init__ = names["__init__"]
    __init__.__eventsrc_checked__ = cls
    __init__.__doc__ = cls.__init__.__doc__
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = __init__  # type: ignore[method-assign]


def _refuse(cls: type, name: str, tp: Any, value: Any) -> None:
    hint = ""
    if isinstance(value, float) and "Decimal" in _describe(tp):
        hint = " (money is exact here: pass Decimal(str(x)), not a float)"
    raise TypeError(
        f"{cls.__qualname__}.{name} must be {_describe(tp)}, not {type(value).__name__}{hint}"
    )


# ---------------------------------------------------------------------------------------------
# The kinds

kind = REGISTRY.kind


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def contract_symbols(symbols: Iterable[str]) -> list[str]:
    """The symbols of contract markets (swaps, futures: ccxt writes their settlement currency
    after a colon, ``"BTC/USDT:USDT"``), which move no spot cash when they fill."""
    return [s for s in symbols if ":" in s]


@attrs.frozen
class Fee:
    """A fee in one currency (``currency`` None: the venue did not say which); a negative
    ``cost`` is a rebate."""

    currency: str | None
    cost: Decimal


def _fee_tuple(values: Iterable[Fee] | None) -> tuple[Fee, ...] | None:
    return None if values is None else tuple(values)


def _fees_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of order_observed and trade_observed had one fee (``fee_cost`` in
    ``fee_currency``); version 2 has a fee per currency."""
    cost = data.pop("fee_cost", None)
    currency = data.pop("fee_currency", None)
    data["fees"] = None if cost is None else [{"currency": currency, "cost": cost}]
    return data


def _balance_tuple(values: Iterable[Balance]) -> tuple[Balance, ...]:
    return tuple(values)


@kind("strategy_started")
@attrs.frozen
class StrategyStarted(Event):
    """A strategy run began; configures the state (main currency, universe, spot or margin).

    A spot strategy (``margin=False``) cannot have contract markets in its universe: that is
    refused here, at the start, rather than accounted as spot trades later."""

    main_currency: str
    universe: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    margin: bool = False
    exchange: str = ""
    strategy: str = ""

    def __check__(self) -> None:
        contracts = contract_symbols(self.universe)
        if not self.margin and contracts:
            raise ValueError(
                f"a spot strategy (margin=False) cannot trade contract markets "
                f"{', '.join(contracts)}; start it with margin=True"
            )


@kind("strategy_stopped")
@attrs.frozen
class StrategyStopped(Event):
    reason: str = ""


@kind("order_requested")
@attrs.frozen
class OrderRequested(Event):
    """A local decision to place an order; ``asset`` is the symbol."""

    client_order_id: str
    side: str
    order_type: str
    amount: Decimal
    price: Decimal | None = None
    time_in_force: str | None = None
    post_only: bool = False
    reduce_only: bool = False
    leverage: Decimal | None = None


@kind("local_check_failed")
@attrs.frozen
class LocalCheckFailed(Event):
    """A command refused before reaching the venue (e.g. not enough cash)."""

    reason: str
    client_order_id: str | None = None


@kind("order_acknowledged")
@attrs.frozen(kw_only=True)
class OrderAcknowledged(Observation):
    """The venue accepted a create request and named the order."""

    client_order_id: str | None
    order_id: str


@kind("order_rejected")
@attrs.frozen(kw_only=True)
class OrderRejected(Observation):
    """The venue refused a create request (e.g. ccxt ``InsufficientFunds``, ``InvalidOrder``)."""

    client_order_id: str | None
    error: str
    message: str = ""


@kind("order_request_failed")
@attrs.frozen(kw_only=True)
class OrderRequestFailed(Event):
    """A create request got no answer (timeout, network): the order may or may not exist."""

    client_order_id: str | None
    error: str
    message: str = ""


@kind("order_observed", version=2, upgrades={1: _fees_from_v1})
@attrs.frozen(kw_only=True)
class OrderObserved(Observation):
    """An order as the venue reports it (watch or fetch); ``asset`` is its symbol.

    ``filled``, ``cost`` and ``fees`` are the venue's cumulative totals for the order (``fees``
    None: the report said nothing of fees, which is not a fee of zero).
    ``last_trade_timestamp`` (else ``last_update_timestamp``) dates the fill the totals reached,
    which tells whether a balance report already includes it.
    """

    order_id: str | None
    client_order_id: str | None = None
    side: str | None = None
    order_type: str | None = None
    status: str | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    filled: Decimal | None = None
    remaining: Decimal | None = None
    cost: Decimal | None = None
    average: Decimal | None = None
    fees: tuple[Fee, ...] | None = attrs.field(default=None, converter=_fee_tuple)
    reduce_only: bool | None = None
    last_trade_timestamp: int | None = None
    last_update_timestamp: int | None = None


@kind("trade_observed", version=2, upgrades={1: _fees_from_v1})
@attrs.frozen(kw_only=True)
class TradeObserved(Observation):
    """One fill as the venue reports it; ``asset`` is its symbol, ``exchange_ts`` its time."""

    trade_id: str | None
    order_id: str | None = None
    client_order_id: str | None = None
    side: str | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    cost: Decimal | None = None
    fees: tuple[Fee, ...] | None = attrs.field(default=None, converter=_fee_tuple)
    taker_or_maker: str | None = None


@attrs.frozen
class Balance:
    """One currency's balance (ccxt ``total``/``free``/``used``)."""

    currency: str
    total: Decimal | None = None
    free: Decimal | None = None
    used: Decimal | None = None


@kind("balance_observed")
@attrs.frozen(kw_only=True)
class BalanceObserved(Observation):
    balances: tuple[Balance, ...] = attrs.field(converter=_balance_tuple)


@kind("position_observed")
@attrs.frozen(kw_only=True)
class PositionObserved(Observation):
    """A derivatives position (ccxt unified position); ``asset`` is its symbol.

    ``side`` None with no contracts is a flat position. ``hedged``: the account holds a long
    and a short of one market side by side (hedge mode); otherwise (one-way mode, or not said)
    a report of one side replaces whatever the market held."""

    side: str | None
    contracts: Decimal | None = None
    contract_size: Decimal | None = None
    entry_price: Decimal | None = None
    mark_price: Decimal | None = None
    notional: Decimal | None = None
    leverage: Decimal | None = None
    liquidation_price: Decimal | None = None
    collateral: Decimal | None = None
    initial_margin: Decimal | None = None
    maintenance_margin: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    margin_mode: str | None = None
    hedged: bool | None = None


@kind("cancel_requested")
@attrs.frozen
class CancelRequested(Event):
    order_id: str | None = None
    client_order_id: str | None = None


@kind("cancel_observed")
@attrs.frozen(kw_only=True)
class CancelObserved(Observation):
    """The venue answered a cancel request (the order's state is in a later OrderObserved)."""

    order_id: str | None
    client_order_id: str | None = None
    status: str | None = None


@kind("cancel_failed")
@attrs.frozen(kw_only=True)
class CancelFailed(Event):
    order_id: str | None
    client_order_id: str | None = None
    error: str = ""
    message: str = ""


@kind("ticker_observed")
@attrs.frozen(kw_only=True)
class TickerObserved(Observation):
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    bid_volume: Decimal | None = None
    ask_volume: Decimal | None = None
    base_volume: Decimal | None = None
    quote_volume: Decimal | None = None


@kind("ohlcv_observed")
@attrs.frozen(kw_only=True)
class OHLCVObserved(Observation):
    """One candle; ``exchange_ts`` is its open time."""

    timeframe: str
    open: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    close: Decimal | None = None
    volume: Decimal | None = None


@kind("watcher_started")
@attrs.frozen
class WatcherStarted(Event):
    watcher: str
    streaming: bool = True


@kind("watcher_stopped")
@attrs.frozen
class WatcherStopped(Event):
    watcher: str
    reason: str = ""


@kind("watcher_error")
@attrs.frozen
class WatcherError(Event):
    watcher: str
    error: str
    message: str = ""


@kind("watcher_reconnected")
@attrs.frozen
class WatcherReconnected(Event):
    """A gap marker: the stream was down since ``gap_start_ts`` (local ns) and may have missed
    updates; a REST backfill follows."""

    watcher: str
    gap_start_ts: int | None = None


@kind("sync_started")
@attrs.frozen
class SyncStarted(Event):
    scope: str = ""


@kind("sync_completed")
@attrs.frozen
class SyncCompleted(Event):
    scope: str = ""
    differences: int = 0


@kind("checkpoint")
@attrs.frozen
class Checkpoint(Event):
    """The hash of the live state after folding every event up to ``state_seq``, and of each
    of its parts (``parts``: cash, orders, ...), so ``verify`` can say what differs."""

    state_seq: int
    state_hash: str
    parts: dict[str, str] = attrs.field(factory=dict)


@kind("decision")
@attrs.frozen
class Decision(Event):
    """A strategy's own decision, with whatever small values explain it."""

    name: str
    values: dict[str, str | int | float | bool | None] = attrs.field(factory=dict)


@kind("note")
@attrs.frozen
class Note(Event):
    """A free-text annotation ("deployed v2", "manual intervention")."""

    text: str


@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """An event whose kind (or kind version) this process does not know, read from a trace.

    Readers never fail on such events: the payload is kept, decoded as plain data.
    """

    kind_name: str
    kind_version: int
    data: Any


@kind("trace_recovered")
@attrs.frozen
class TraceRecovered(Event):
    """A writer opening the trace found the end of a write-ahead segment unreadable (a frame
    torn by a crash mid-write, or damaged), set its bytes aside in the trace and went on
    without them. The trace records it here, at the first seq after the events it kept."""

    segment: str
    """The write-ahead segment's file name."""
    offset: int
    """Where in it the unreadable bytes began."""
    dropped_bytes: int
    torn: bool
    """True: the file ended inside the frame (never acknowledged). False: the frame was whole
    but failed its checksum, so it may have held acknowledged events."""
    set_aside: str
    """Where the dropped bytes are kept, relative to the trace directory."""
    reason: str = ""


@kind("engine_error")
@attrs.frozen
class EngineError(Event):
    """Something failed inside the engine or its strategy (``where``: ``"strategy"``,
    ``"watcher:balance"``, ...): recorded, never swallowed, and the engine goes on."""

    where: str
    error: str
    message: str = ""
