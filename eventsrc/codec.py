"""Event <-> bytes: one cattrs converter decides how each type is (un)structured; msgspec
writes the bytes.

Measured here (see benchmarks/trace_bench.py): cattrs' own msgpack preconf encodes ~0.13M
events/s, cattrs unstructure + msgspec ~0.22M/s, while msgspec handles frozen attrs classes
natively at close to the speed of its own Structs. So the converter follows cattrs' msgspec
preconf idea of *passthroughs*: for every registered event class its unstructure hook is the
identity, and msgspec's MessagePack encoder and typed decoders do the work. The converter's own
machinery is used where msgspec cannot help: structuring a payload of an older schema version
after its upgrade functions ran.

Wire format of a payload: a MessagePack map of the event's fields (attrs field names), Decimals as
decimal strings, ``raw`` as MessagePack bin. ``seq`` and ``ts`` are not meaningful in the payload
(a trace keeps them in its envelope columns). The kind's name and version are not in the payload
either: a trace records them per kind in its code table.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Union

import cattrs
import msgspec
from cattrs.fns import identity
from cattrs.strategies import configure_union_passthrough

from eventsrc.errors import EventNotSerializable
from eventsrc.events import REGISTRY, Event, EventRegistry, KindInfo, UnknownEvent

__all__ = ["Codec", "make_converter", "stamp"]

_set = object.__setattr__


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

    def to_builtins(self, event: Event) -> dict[str, Any]:
        """A JSON-ready dict of the event, with its kind name first."""
        data = msgspec.to_builtins(event)
        kind = event.kind_name if isinstance(event, UnknownEvent) else event.kind
        return {"kind": kind, **data}

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
