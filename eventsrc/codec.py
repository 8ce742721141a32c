"""Every conversion between eventsrc's objects and bytes or plain data, in one place.

- Events <-> payload bytes (``Codec``): MessagePack maps of the event's fields (attrs field
  names), Decimals as decimal strings, ``raw`` as MessagePack bin. ``seq`` and ``ts`` are not
  meaningful in the payload (a trace keeps them in its envelope columns); nor are the kind's name
  and version (a trace records them per kind in its code table). A payload of an older schema
  version is decoded as plain data, upgraded step by step, then structured by cattrs.
- Views (``view_type``): the fields of an event that the reducer reads, as a msgspec Struct.
  The reducer folds views only: replay decodes them straight from payload bytes (skipping the
  raw venue payload and every field no handler reads), and a live event is turned into the same
  view before it is folded, so live and replay fold one input type through one path.
- States <-> bytes (``encode_state``/``decode_state``): one canonical MessagePack form (persistent
  maps as lists of pairs sorted by key), used both for snapshots and for ``state_hash``; and the
  snapshot file around it (``encode_snapshot``/``decode_snapshot``).
- JSON-ready plain data (``to_builtins``): events through a cattrs converter, states (msgspec
  Structs) through msgspec.

Why msgspec writes the bytes (measured in benchmarks/codec_bench.py): cattrs' msgspec preconf
converter structures through cattrs' generated Python code, ~10x slower to decode than msgspec's
typed decoders, and cattrs' msgpack converter encodes at ~0.2x; so for event and state bytes the
cattrs converter only decides *how* types map (identity passthrough for event classes, exact
Decimals) and structures payloads of older versions, while msgspec encodes and decodes. Plain
data for JSON, where speed does not matter, is cattrs' own unstructuring.
"""

from __future__ import annotations

import functools
import hashlib
import typing
from collections.abc import Callable, Mapping
from decimal import Decimal
from operator import attrgetter
from typing import Any, Union, get_args, get_origin

import attrs
import cattrs
import msgspec
from cattrs.fns import identity
from cattrs.strategies import configure_union_passthrough
from immutables import Map

from eventsrc.errors import EventNotSerializable
from eventsrc.events import REGISTRY, Event, EventRegistry, KindInfo, UnknownEvent
from eventsrc.state import State

__all__ = [
    "DECODE_ERRORS",
    "Codec",
    "SnapshotFile",
    "decode_snapshot",
    "decode_state",
    "encode_snapshot",
    "encode_state",
    "make_converter",
    "stamp",
    "state_hash",
    "state_parts",
    "to_builtins",
    "view_maker",
    "view_type",
]

_set = object.__setattr__

DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
"""What the decoders here raise for bytes that are not what they should be."""


def stamp(event: Event, seq: int, ts: int) -> Event:
    """Set ``seq`` and ``ts`` on an event freshly decoded from a trace (nobody else holds it)."""
    _set(event, "seq", seq)
    _set(event, "ts", ts)
    return event


def _structure_decimal(value: Any, _: type) -> Decimal:
    if isinstance(value, float):
        return Decimal(str(value))
    return Decimal(value)


def _structure_bytes(value: Any, _: type) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def make_converter(registry: EventRegistry = REGISTRY) -> cattrs.Converter:
    """The converter: identity passthrough for event classes (msgspec encodes them natively),
    exact Decimals, and plain passthrough for the scalar unions of the envelope."""
    converter = cattrs.Converter()
    configure_union_passthrough(Union[str, bytes, int, float, bool, None], converter)  # noqa: UP007 - a runtime Union object is what cattrs takes
    converter.register_structure_hook(Decimal, _structure_decimal)
    converter.register_structure_hook(bytes, _structure_bytes)
    converter.register_unstructure_hook(Decimal, identity)
    converter.register_unstructure_hook_func(lambda t: t in registry, identity)
    return converter


Decoder = Callable[[bytes], Event]


class Codec:
    """Encodes events to payload bytes and decodes them back, per registered kind and version."""

    def __init__(self, registry: EventRegistry = REGISTRY) -> None:
        self.registry = registry
        self.converter = make_converter(registry)
        self._encoder = msgspec.msgpack.Encoder()
        self._decoders: dict[tuple[str, int], Decoder] = {}

    def encode(self, event: Event) -> bytes:
        """The payload bytes of ``event``; raises EventNotSerializable if it cannot be encoded."""
        try:
            return self._encoder.encode(self.converter.unstructure(event))
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise EventNotSerializable(f"cannot encode {type(event).__qualname__}: {exc}") from None

    def encoder_for(self, info: KindInfo) -> Callable[[Event], bytes]:
        """The fastest encode function for one kind (no per-event hook dispatch)."""
        hook = self.converter.get_unstructure_hook(info.cls)
        if hook is identity:
            return self._encoder.encode
        enc = self._encoder.encode
        return lambda event: enc(hook(event))

    def decoder(self, name: str, version: int) -> Decoder:
        """A function decoding payloads written by kind ``name`` at schema ``version``."""
        key = (name, version)
        dec = self._decoders.get(key)
        if dec is None:
            dec = self._decoders[key] = self._make_decoder(name, version)
        return dec

    def decode(self, name: str, version: int, payload: bytes) -> Event:
        return self.decoder(name, version)(payload)

    def view_decoder(
        self, name: str, version: int, reads: Mapping[type[Event], tuple[str, ...]]
    ) -> Callable[[bytes], Any] | None:
        """A function decoding payloads of kind ``name`` at ``version`` straight into the view
        of the fields ``reads`` names for its class; None if the kind is not in ``reads`` or
        was written at another version (then decode the event and turn it into its view)."""
        info = self.registry.by_name(name)
        if info is None or info.version != version or info.cls not in reads:
            return None
        return msgspec.msgpack.Decoder(view_type(info.cls, reads[info.cls])).decode

    def to_builtins(self, event: Event) -> dict[str, Any]:
        """A JSON-ready dict of the event, with its kind name first."""
        data: dict[str, Any] = to_builtins(event)
        return data

    def _make_decoder(self, name: str, version: int) -> Decoder:
        info = self.registry.by_name(name)
        if info is None or version > info.version:
            return _unknown_decoder(name, version)
        if version == info.version:
            return msgspec.msgpack.Decoder(info.cls).decode
        return self._upgrading_decoder(info, version)

    def _upgrading_decoder(self, info: KindInfo, version: int) -> Decoder:
        steps = [info.upgrades[v] for v in range(version, info.version)]
        structure = self.converter.get_structure_hook(info.cls)
        raw_decode = msgspec.msgpack.Decoder(dict[str, Any]).decode
        cls = info.cls

        def decode(payload: bytes) -> Event:
            data = raw_decode(payload)
            for step in steps:
                data = step(data)
            event: Event = structure(data, cls)
            return event

        return decode


_ENVELOPE = ("exchange_ts", "asset", "source", "cause")


def _unknown_decoder(name: str, version: int) -> Decoder:
    raw_decode = msgspec.msgpack.Decoder().decode

    def decode(payload: bytes) -> Event:
        data = raw_decode(payload)
        envelope: dict[str, Any] = {}
        if isinstance(data, dict):
            envelope = {k: data[k] for k in _ENVELOPE if k in data}
            envelope.setdefault("source", "")
        return UnknownEvent(kind_name=name, kind_version=version, data=data, **envelope)

    return decode


# ---------------------------------------------------------------------------------------------
# Views: what the reducer reads of an event


_views: dict[tuple[type[Event], tuple[str, ...]], type[msgspec.Struct]] = {}


def view_type(cls: type[Event], fields: tuple[str, ...]) -> type[msgspec.Struct]:
    """A Struct with ``fields`` of ``cls`` (their types and defaults) plus ``seq``; its ``kind``
    is the class's. Decoding a payload into it reads only those fields. One type per (class,
    fields), so live events and replayed bytes become views of the same type."""
    found = _views.get((cls, fields))
    if found is None:
        found = _views[(cls, fields)] = _make_view(cls, fields)
    return found


def _make_view(cls: type[Event], fields: tuple[str, ...]) -> type[msgspec.Struct]:
    hints = typing.get_type_hints(cls)
    defaults = {a.name: a.default for a in attrs.fields(cls)}
    unknown = [name for name in fields if name not in defaults]
    if unknown:
        raise ValueError(f"{cls.__qualname__} has no field(s) {', '.join(unknown)}")
    spec: list[tuple[str, Any, Any]] = []
    for name in fields:
        default = defaults[name]
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = msgspec.field(default_factory=default.factory)
        spec.append((name, hints[name], None if default is attrs.NOTHING else default))
    spec.append(("seq", int | None, None))
    view = msgspec.defstruct(f"{cls.__name__}View", spec)
    view.kind = cls.kind  # type: ignore[attr-defined]
    return view


def view_maker(cls: type[Event], fields: tuple[str, ...]) -> Callable[[Event, int], Any]:
    """A function turning an event of ``cls`` (at ``seq``) into its view."""
    view = view_type(cls, fields)
    if not fields:
        return lambda event, seq: view(seq)
    if len(fields) == 1:
        (name,) = fields
        return lambda event, seq: view(getattr(event, name), seq)
    get = attrgetter(*fields)
    return lambda event, seq: view(*get(event), seq)


# ---------------------------------------------------------------------------------------------
# States: one canonical form for snapshots and the hash


def _encode_map(value: Any) -> Any:
    if isinstance(value, Map):
        return sorted(value.items(), key=_first)
    raise NotImplementedError(f"cannot encode a {type(value).__name__} in a state")


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _decode_map(type_: Any, value: Any) -> Any:
    if type_ is Map or get_origin(type_) is Map:
        return Map(msgspec.convert(value, _pairs_of(type_), dec_hook=_decode_map))
    raise NotImplementedError(f"cannot decode a {type_!r} in a state")


@functools.cache
def _pairs_of(map_type: Any) -> Any:
    """``list[tuple[K, V]]`` for ``Map[K, V]``: one object per map type, so msgspec's type
    cache holds (a new alias per call made it re-analyse the type every time)."""
    key_type, value_type = get_args(map_type) or (Any, Any)
    return list[tuple[key_type, value_type]]  # type: ignore[valid-type]


_state_encoder = msgspec.msgpack.Encoder(enc_hook=_encode_map)
_state_decoder = msgspec.msgpack.Decoder(State, dec_hook=_decode_map)


def encode_state(state: State) -> bytes:
    """The canonical bytes of ``state``: the same state gives the same bytes in any process
    (maps are written sorted by key, whatever their insertion history or hash seed)."""
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> State:
    """The state ``encode_state`` wrote; ValueError if ``data`` is not one."""
    try:
        return _state_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, NotImplementedError, TypeError) as exc:
        raise ValueError(f"not a state ({exc})") from None


class SnapshotFile(msgspec.Struct):
    """A snapshot file: a state's canonical bytes and what tells whether to trust them."""

    format: int
    reducer: int
    """The reducer version that folded it."""
    seq: int
    event: int
    """A fingerprint of the event at ``seq`` (see eventsrc.snapshot)."""
    sha256: str
    """Of ``state``."""
    state: bytes


def encode_snapshot(snapshot: SnapshotFile) -> bytes:
    return msgspec.msgpack.encode(snapshot)


def decode_snapshot(data: bytes) -> SnapshotFile:
    """The snapshot file ``encode_snapshot`` wrote; ValueError if ``data`` is not one."""
    try:
        return msgspec.msgpack.decode(data, type=SnapshotFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a snapshot file ({exc})") from None


def state_hash(state: State) -> str:
    """A stable hex digest of the state (sha256 of its canonical bytes)."""
    return hashlib.sha256(encode_state(state)).hexdigest()


_PARTS: dict[str, Callable[[State], Any]] = {
    "config": lambda s: s.config,
    "last_price": lambda s: s.last_price,
    "cash": lambda s: s.account.cash,
    "balances reported": lambda s: (s.account.reported, s.account.pending),
    "positions": lambda s: s.account.positions,
    "orders": lambda s: s.book.orders,
    "requests": lambda s: (s.book.requests, s.book.client_orders),
    "watchers": lambda s: s.health.watchers,
    "anomalies": lambda s: s.health.anomalies,
}


def state_parts(state: State) -> dict[str, str]:
    """A short digest of each part of the state (cash, orders, ...), to tell which differ."""
    return {
        name: hashlib.sha256(_state_encoder.encode(part(state))).hexdigest()[:16]
        for name, part in _PARTS.items()
    }


# ---------------------------------------------------------------------------------------------
# Plain data, for JSON


def _json_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(Decimal, str)
    converter.register_unstructure_hook(bytes, lambda b: b.decode("utf-8", "replace"))
    converter.register_unstructure_hook_func(
        _is_map,
        lambda m: [[converter.unstructure(k), converter.unstructure(v)] for k, v in _sorted(m)],
    )
    return converter


def _is_map(type_: Any) -> bool:
    return bool(type_ is Map or get_origin(type_) is Map)


def _sorted(m: Map[Any, Any]) -> list[tuple[Any, Any]]:
    return sorted(m.items(), key=_first)


_json = _json_converter()


def _json_map(value: Any) -> Any:
    if isinstance(value, Map):
        return [[k, v] for k, v in _sorted(value)]
    raise NotImplementedError(f"no JSON form for a {type(value).__name__}")


def to_builtins(value: Event | State | Any) -> Any:
    """JSON-ready plain data: events as dicts with their kind first (the raw venue payload as
    text), by cattrs; states and their parts as nested dicts (maps as sorted [key, value]
    pairs, money as strings), by msgspec, which knows their Structs."""
    if isinstance(value, Event):
        kind = value.kind_name if isinstance(value, UnknownEvent) else value.kind
        data: dict[str, Any] = _json.unstructure(value, unstructure_as=type(value))
        return {"kind": kind, **data}
    return msgspec.to_builtins(value, enc_hook=_json_map)
