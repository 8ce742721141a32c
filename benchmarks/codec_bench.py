"""The codec's figures (issue 8): could cattrs write the bytes? Event construction.

Workload: 100k realistic events from ``adapters.synthetic`` (tickers, orders, trades, balances
with Binance-sized raw payloads). Measured in one run, interleaved repeat by repeat:

- ours: ``eventsrc.Codec`` (cattrs decides how types map, msgspec encodes MessagePack and decodes
  straight into the attrs classes);
- cattrs' msgspec preconf converter (``cattrs.preconf.msgspec.make_converter``): ``dumps`` and
  ``loads`` (JSON: it has no MessagePack variant), structuring through cattrs' generated code;
- cattrs' plain converter unstructuring to dicts, msgspec writing MessagePack; decoding to
  dicts with msgspec and structuring with cattrs;
- the baseline: msgspec Structs with the same fields (the fastest Python codec).

Event construction: building each event from a dict of its fields (``cls(**fields)``, every
field's type checked, floats in money refused) vs building the same values as a plain attrs
class without checks, and as a msgspec Struct.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Union

import attrs
import cattrs
import msgspec
from cattrs.fns import identity
from cattrs.preconf.msgspec import make_converter as msgspec_converter
from cattrs.strategies import configure_union_passthrough

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import synthetic
from benchmarks._harness import interleaved, parse_args, report, target
from benchmarks.trace_bench import struct_twins, to_twin
from eventsrc import REGISTRY, Codec, Event


def _fields(event: Event) -> dict[str, Any]:
    return {a.name: getattr(event, a.name) for a in attrs.fields(type(event))}


def plain_twins(classes: set[type[Event]]) -> dict[type[Event], type[Any]]:
    """A plain (unchecked) frozen attrs class per event class, same fields and defaults."""
    twins: dict[type[Event], type[Any]] = {}
    for cls in classes:
        these = {a.name: attrs.field(default=a.default, kw_only=True) for a in attrs.fields(cls)}
        twins[cls] = attrs.make_class(f"Plain{cls.__name__}", these, frozen=True, slots=True)
    return twins


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 10_000 if args.quick else 100_000
    repeats = args.repeats or (1 if args.quick else 5)
    pool = list(synthetic.stream(n, seed=3))
    classes = {type(e) for e in pool}
    codec = Codec()
    encoders = {c: codec.encoder_for(REGISTRY.info(c)) for c in classes}
    decoders = {c: codec.decoder(c.kind, c.version) for c in classes}
    ours = [(decoders[type(e)], encoders[type(e)](e)) for e in pool]

    twins = struct_twins(classes)
    twin_pool = [to_twin(e, twins) for e in pool]
    struct_encode = msgspec.msgpack.Encoder().encode
    struct_decoders = {c: msgspec.msgpack.Decoder(twins[c]).decode for c in classes}
    theirs = [
        (struct_decoders[type(e)], struct_encode(t)) for e, t in zip(pool, twin_pool, strict=True)
    ]

    preconf = msgspec_converter()
    plain = cattrs.Converter()
    for converter in (preconf, plain):  # exact money both ways, as ours
        converter.register_unstructure_hook(Decimal, identity)
        converter.register_structure_hook(Decimal, lambda v, _: Decimal(v))
    plain.register_unstructure_hook(bytes, identity)
    configure_union_passthrough(Union[str, bytes, int, float, bool, None], plain)  # noqa: UP007
    preconf_bytes = [(type(e), preconf.dumps(e)) for e in pool]
    dict_decode = msgspec.msgpack.Decoder(dict[str, Any]).decode
    plain_bytes = [(type(e), struct_encode(plain.unstructure(e))) for e in pool]
    assert preconf.loads(preconf_bytes[0][1], preconf_bytes[0][0]) == pool[0]

    def decode_all(pairs: list[tuple[Any, bytes]]) -> None:
        for decode, payload in pairs:
            decode(payload)

    times = interleaved(
        {
            "ours_encode": lambda: [encoders[type(e)](e) for e in pool],
            "struct_encode": lambda: [struct_encode(t) for t in twin_pool],
            "cattrs_preconf_encode": lambda: [preconf.dumps(e) for e in pool],
            "cattrs_unstructure_encode": lambda: [
                struct_encode(plain.unstructure(e)) for e in pool
            ],
            "ours_decode": lambda: decode_all(ours),
            "struct_decode": lambda: decode_all(theirs),
            "cattrs_preconf_decode": lambda: [preconf.loads(b, c) for c, b in preconf_bytes],
            "cattrs_structure_decode": lambda: [
                plain.structure(dict_decode(b), c) for c, b in plain_bytes
            ],
        },
        repeats,
    )
    results: dict[str, Any] = {"events": n}
    for name, seconds in times.items():
        results[f"{name}_per_s"] = n / seconds
    for way in ("encode", "decode"):
        base = times[f"struct_{way}"]
        for who in (
            "ours",
            "cattrs_preconf",
            "cattrs_unstructure" if way == "encode" else "cattrs_structure",
        ):
            results[f"{who}_{way}_vs_struct"] = base / times[f"{who}_{way}"]

    # Construction from dicts of fields.
    fields = [(type(e), _fields(e)) for e in pool]
    plain_classes = plain_twins(classes)
    struct_fields = [(twins[type(e)], _fields(e)) for e in pool]
    built = interleaved(
        {
            "checked": lambda: [cls(**kw) for cls, kw in fields],
            "plain_attrs": lambda: [plain_classes[cls](**kw) for cls, kw in fields],
            "struct": lambda: [cls(**kw) for cls, kw in struct_fields],
        },
        repeats,
    )
    for name, seconds in built.items():
        results[f"construct_{name}_us"] = seconds / n * 1e6
    results["construct_checked_vs_plain_attrs"] = built["checked"] / built["plain_attrs"]

    targets = {
        "codec_encode_vs_struct": target(results["ours_encode_vs_struct"], 0.5, ">="),
        "codec_decode_vs_struct": target(results["ours_decode_vs_struct"], 0.5, ">="),
        # Checking every field costs at most as much again as attrs' own __init__.
        "construct_checked_vs_plain_attrs": target(
            results["construct_checked_vs_plain_attrs"], 2.0, "<="
        ),
    }
    report("codec", results, targets, args.json)


if __name__ == "__main__":
    main()
