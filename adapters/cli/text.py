"""How the read commands print: one line per event, values as a trader reads them (decimals
as plain strings, times as ISO-8601 UTC), aligned tables, and JSON."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs

from eventsrc import Balance, Event, Fee, UnknownEvent
from projections.export import iso_ms, iso_ns, json_default, plain
from projections.selection import kind_name

__all__ = [
    "KEY_FIELDS",
    "dump_json",
    "event_line",
    "money",
    "table",
    "value_text",
]

KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "strategy_started": ("strategy", "exchange", "main_currency", "universe", "margin"),
    "order_requested": (
        "side",
        "order_type",
        "amount",
        "price",
        "client_order_id",
        "time_in_force",
        "post_only",
        "reduce_only",
        "leverage",
    ),
    "local_check_failed": ("client_order_id", "reason"),
    "order_acknowledged": ("order_id", "client_order_id"),
    "order_rejected": ("client_order_id", "error", "message"),
    "order_request_failed": ("client_order_id", "error", "message"),
    "order_observed": (
        "order_id",
        "status",
        "side",
        "order_type",
        "amount",
        "price",
        "filled",
        "average",
        "fees",
    ),
    "trade_observed": ("trade_id", "order_id", "side", "amount", "price", "fees", "taker_or_maker"),
    "balance_observed": ("balances",),
    "position_observed": (
        "side",
        "contracts",
        "entry_price",
        "mark_price",
        "unrealized_pnl",
        "leverage",
        "liquidation_price",
    ),
    "ticker_observed": ("bid", "ask", "last"),
    "checkpoint": ("state_seq", "state_hash"),
}
"""The fields a line shows, by kind; every other kind shows all its fields but the raw
payload. Empty values (None, "", False) are left out either way."""

_ENVELOPE = frozenset({"seq", "ts", "exchange_ts", "asset", "source", "cause", "raw"})
_EMPTY: tuple[object, ...] = (None, "", b"", (), {}, False)
_SHORT_HASH = 12


def money(value: Decimal | None) -> str:
    """A decimal as a plain string; ``-`` for none."""
    return "-" if value is None else plain(value)


def _word(text: str) -> str:
    """A string as one shell-like word: quoted (JSON) if it has spaces or is empty."""
    if not text or any(c.isspace() or c in "\"'" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _fee(fee: Fee) -> str:
    return f"{plain(fee.cost)}{'' if fee.currency is None else ' ' + fee.currency}"


def value_text(name: str, value: Any, short: bool = True) -> str:
    """A field's value, readable on one line (``short``: a state hash cut to its start)."""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if short and name == "state_hash" and len(value) > _SHORT_HASH:
            return value[:_SHORT_HASH] + "…"
        return _word(value)
    if isinstance(value, int) and name.endswith("_timestamp"):
        return iso_ms(value) or "-"
    if isinstance(value, int) and name == "gap_start_ts":
        return iso_ns(value, "milliseconds") or "-"
    if isinstance(value, tuple):
        if all(isinstance(v, Fee) for v in value):
            return "+".join(_fee(v) for v in value) or "0"
        if all(isinstance(v, Balance) for v in value):
            return ",".join(f"{b.currency}:{money(b.total)}" for b in value)
        return ",".join(value_text(name, v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=json_default, ensure_ascii=False, sort_keys=True)
    if attrs.has(type(value)):
        return json.dumps(attrs.asdict(value), default=json_default, ensure_ascii=False)
    return _word(str(value))


def _fields(event: Event) -> Iterable[tuple[str, Any]]:
    if isinstance(event, UnknownEvent):
        yield "version", event.kind_version
        data = event.data if isinstance(event.data, dict) else {"data": event.data}
        yield from ((k, v) for k, v in data.items() if k not in _ENVELOPE)
        return
    names = KEY_FIELDS.get(event.kind)
    if names is None:
        names = tuple(a.name for a in attrs.fields(type(event)) if a.name not in _ENVELOPE)
    for name in names:
        yield name, getattr(event, name)


def event_line(event: Event) -> str:
    """``seq  time  kind  asset  source  key=value ...`` (time: when recorded, UTC)."""
    parts = [f"{k}={value_text(k, v)}" for k, v in _fields(event) if not _is_empty(v)]
    if event.cause is not None:
        cause = event.cause
        parts.append(f"cause=#{cause}" if isinstance(cause, int) else f"cause={_word(cause)}")
    when = iso_ns(event.ts, "milliseconds") or "-"
    head = (
        f"{event.seq:>8}  {when}  {kind_name(event):<20} {event.asset or '-':<14} "
        f"{event.source or '-':<16}"
    )
    return f"{head} {' '.join(parts)}".rstrip()


def _is_empty(value: Any) -> bool:
    return any(value is e or (type(value) is type(e) and value == e) for e in _EMPTY)


def table(rows: Sequence[Sequence[str]], header: Sequence[str], indent: str = "  ") -> list[str]:
    """Lines of an aligned table: text columns to the left, numbers to the right."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [  # a column of numbers (an empty value is "-"), right-aligned
        all(_numeric(row[i]) for row in rows) and any(row[i] != "-" for row in rows)
        for i in range(len(header))
    ]

    def line(cells: Sequence[str]) -> str:
        return (
            indent
            + "  ".join(
                c.rjust(w) if right else c.ljust(w)
                for c, w, right in zip(cells, widths, numeric, strict=True)
            ).rstrip()
        )

    return [line(header), *(line(row) for row in rows)]


_NUMBER = re.compile(r"-|[+-]?\d+(\.\d+)?( .*)?")


def _numeric(text: str) -> bool:
    """Whether a cell reads as a number ("0.01", "0.00001 BTC", "-"), to right-align it."""
    return _NUMBER.fullmatch(text) is not None


def dump_json(data: Any, lines: bool = False) -> None:
    """Print ``data`` as JSON: one document, indented; or (``lines``) on one line."""
    text = json.dumps(data, default=json_default, ensure_ascii=False, indent=None if lines else 2)
    sys.stdout.write(text + "\n")
