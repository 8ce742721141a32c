"""ccxt's unified structures (orders, trades, balances, positions, tickers) as the core's
observation events: the one place a ccxt dict is read.

Each function takes one unified structure as ccxt returns it and gives the event holding the
fields the reducer needs, typed and exact, with the whole dict (its venue payload ``info``
included) kept verbatim as ``raw``. A field that is missing, None or unreadable becomes None
in the event (the reducer then records a malformed report as an anomaly), so one odd payload
cannot stop a watcher; the one exception is fees that cannot be summed exactly in 200 digits
(``ArithmeticError``), which a venue adapter reports as a malformed response.

Numbers become ``Decimal`` exactly: a float through its shortest repr (ccxt's floats are
parsed from the venue's decimal strings, so the repr is the venue's number), a string parsed.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np

from eventsrc.events import (
    Balance,
    BalanceObserved,
    Fee,
    OrderObserved,
    PositionObserved,
    TickerObserved,
    TradeObserved,
    encode_raw,
)

__all__ = [
    "FLOAT_DIGITS",
    "LATEST_MS",
    "VENUE_STATUSES",
    "balance_observed",
    "carries_state",
    "client_order_id_of",
    "fees",
    "order_observed",
    "position_observed",
    "raw_payload",
    "ticker_observed",
    "to_decimal",
    "to_ms",
    "trade_observed",
]

VENUE_STATUSES = frozenset({"open", "closed", "canceled", "expired", "rejected"})
"""ccxt's unified order statuses."""


FLOAT_DIGITS = 16
"""The most significant digits a float's shortest repr has when it may be a venue's number:
one that needs 17 was computed (``0.1 + 0.2``) or parsed from a number with more digits than
a float carries, and is not the venue's number. (Any number of up to 15 digits survives a
float exactly; 16 digits may, and venues send such: cryptocom's balances.)"""


def to_decimal(value: Any) -> Decimal | None:
    """A ccxt number as an exact Decimal: floats through their shortest repr (``0.1`` ->
    ``Decimal("0.1")``), strings parsed, numpy scalars as their Python equivalents (``.item()``),
    None (or anything unparseable) -> None. A float whose shortest repr has more than
    ``FLOAT_DIGITS`` significant digits is None too: it is not the number the venue sent
    (``1.23456789012345678`` arrives as ``1.2345678901234567``), and an unknown number is
    better than a wrong one."""
    if isinstance(value, np.generic):
        value = value.item()  # np.float64 is a float whose repr() is "np.float64(0.1)"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(float.__repr__(value))
        if number.is_finite() and len(number.normalize().as_tuple().digits) > FLOAT_DIGITS:
            return None
        return number
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except ArithmeticError:
            return None
    return None


LATEST_MS = 253_402_300_800_000
"""10000-01-01T00:00:00Z in ms: no venue's time is this late (a ``datetime`` cannot hold it,
and ccxt's ``iso8601`` gives none for it)."""


def to_ms(value: Any) -> int | None:
    """A venue's time in ms since the epoch: an int from 1970 to the year 10000 (exclusive);
    anything else (None, a float, a bool, a time out of that range, which a trace could not
    even hold beyond 64 bits) is no time at all (None)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < LATEST_MS:
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _plain(value: Any) -> Any:
    """What a value msgspec cannot encode is kept as: numpy scalars as Python numbers, the rest
    as its repr (so raw never fails to encode, and never loses that something was there)."""
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


def raw_payload(unified: Any) -> bytes:
    """The structure as the JSON bytes an observation keeps as ``raw``."""
    try:
        return encode_raw(unified)
    except (TypeError, ValueError, msgspec.EncodeError):
        return msgspec.json.encode(unified, enc_hook=_plain)


_SUM = decimal.Context(prec=200, traps=[decimal.Inexact, decimal.InvalidOperation])
"""Fees are summed exactly, whatever the caller's decimal context (ccxt changes it)."""


def fees(unified: Mapping[str, Any]) -> tuple[Fee, ...] | None:
    """A ccxt structure's fees, one per currency (summed): from ``fees`` when it lists any,
    else from ``fee``; None when neither says anything (unknown, not zero)."""
    listed_fees = unified.get("fees")
    listed = (
        [f for f in listed_fees if isinstance(f, Mapping)]
        if isinstance(listed_fees, list | tuple)
        else []
    )
    fee = unified.get("fee")
    if not listed and isinstance(fee, Mapping):
        listed = [fee]
    totals: dict[str | None, Decimal] = {}
    for f in listed:
        cost = to_decimal(f.get("cost"))
        if cost is None:
            continue  # a currency without an amount says nothing
        currency = _str(f.get("currency"))
        totals[currency] = _SUM.add(totals.get(currency, Decimal(0)), cost)
    if not totals:
        return None
    return tuple(Fee(c, v) for c, v in sorted(totals.items(), key=lambda cv: cv[0] or ""))


def _envelope(unified: Mapping[str, Any], source: str, cause: int | str | None) -> dict[str, Any]:
    return {
        "asset": _str(unified.get("symbol")),
        "exchange_ts": to_ms(unified.get("timestamp")),
        "source": source,
        "cause": cause,
        "raw": raw_payload(unified),
    }


def carries_state(order: Mapping[str, Any]) -> bool:
    """Whether a ccxt order says what state the order is in (a status, its amount and how
    much filled); some venues answer a create or cancel with the order's id alone."""
    return (
        order.get("status") in VENUE_STATUSES
        and to_decimal(order.get("amount")) is not None
        and to_decimal(order.get("filled")) is not None
    )


def client_order_id_of(order: Mapping[str, Any]) -> str | None:
    """The client order id of a ccxt unified order: the order's OWN. Binance (and the venues
    that copy its API) answers a cancel with ``clientOrderId`` set to the cancel request's id
    (a random one unless the cancel sends its own) and the order's as ``origClientOrderId``;
    ccxt reads the first. The fold takes a venue's report of an order's client id as its
    name, so the cancel's id would rename the order (and an engine would no longer know it as
    one it placed)."""
    info = order.get("info")
    if isinstance(info, Mapping):
        original = info.get("origClientOrderId")
        if original is not None and original != "":
            return str(original)
    return _str(order.get("clientOrderId"))


def order_observed(
    order: Mapping[str, Any], *, source: str = "", cause: int | str | None = None
) -> OrderObserved:
    """A ccxt unified order; the whole dict is kept as ``raw``."""
    return OrderObserved(
        order_id=_str(order.get("id")),
        client_order_id=client_order_id_of(order),
        side=_str(order.get("side")),
        order_type=_str(order.get("type")),
        status=_str(order.get("status")),
        price=to_decimal(order.get("price")),
        amount=to_decimal(order.get("amount")),
        filled=to_decimal(order.get("filled")),
        remaining=to_decimal(order.get("remaining")),
        cost=to_decimal(order.get("cost")),
        average=to_decimal(order.get("average")),
        fees=fees(order),
        reduce_only=_bool(order.get("reduceOnly")),
        last_trade_timestamp=to_ms(order.get("lastTradeTimestamp")),
        last_update_timestamp=to_ms(order.get("lastUpdateTimestamp")),
        **_envelope(order, source, cause),
    )


def trade_observed(
    trade: Mapping[str, Any], *, source: str = "", cause: int | str | None = None
) -> TradeObserved:
    """A ccxt unified trade (one fill); the whole dict is kept as ``raw``."""
    return TradeObserved(
        trade_id=_str(trade.get("id")),
        order_id=_str(trade.get("order")),
        client_order_id=_str(trade.get("clientOrderId")),
        side=_str(trade.get("side")),
        price=to_decimal(trade.get("price")),
        amount=to_decimal(trade.get("amount")),
        cost=to_decimal(trade.get("cost")),
        fees=fees(trade),
        taker_or_maker=_str(trade.get("takerOrMaker")),
        **_envelope(trade, source, cause),
    )


_NOT_CURRENCIES = frozenset({"info", "timestamp", "datetime", "free", "used", "total", "debt"})


def balance_observed(
    balance: Mapping[str, Any], *, source: str = "", cause: int | str | None = None
) -> BalanceObserved:
    """A ccxt unified balance (``{"BTC": {"free", "used", "total"}, ...}``); the whole dict is
    kept as ``raw``."""
    entries = []
    for key in sorted((k for k in balance if k not in _NOT_CURRENCIES), key=str):
        entry = balance[key]
        if isinstance(entry, Mapping):
            entries.append(
                Balance(
                    str(key),
                    total=to_decimal(entry.get("total")),
                    free=to_decimal(entry.get("free")),
                    used=to_decimal(entry.get("used")),
                )
            )
    return BalanceObserved(
        balances=tuple(entries),
        exchange_ts=to_ms(balance.get("timestamp")),
        source=source,
        cause=cause,
        raw=raw_payload(balance),
    )


def position_observed(
    position: Mapping[str, Any], *, source: str = "", cause: int | str | None = None
) -> PositionObserved:
    """A ccxt unified position; the whole dict is kept as ``raw``."""
    return PositionObserved(
        side=_str(position.get("side")),
        contracts=to_decimal(position.get("contracts")),
        contract_size=to_decimal(position.get("contractSize")),
        entry_price=to_decimal(position.get("entryPrice")),
        mark_price=to_decimal(position.get("markPrice")),
        notional=to_decimal(position.get("notional")),
        leverage=to_decimal(position.get("leverage")),
        liquidation_price=to_decimal(position.get("liquidationPrice")),
        collateral=to_decimal(position.get("collateral")),
        initial_margin=to_decimal(position.get("initialMargin")),
        maintenance_margin=to_decimal(position.get("maintenanceMargin")),
        unrealized_pnl=to_decimal(position.get("unrealizedPnl")),
        margin_mode=_str(position.get("marginMode")),
        hedged=_bool(position.get("hedged")),
        **_envelope(position, source, cause),
    )


def ticker_observed(
    ticker: Mapping[str, Any], *, source: str = "", cause: int | str | None = None
) -> TickerObserved:
    """A ccxt unified ticker; the whole dict is kept as ``raw``."""
    return TickerObserved(
        bid=to_decimal(ticker.get("bid")),
        ask=to_decimal(ticker.get("ask")),
        last=to_decimal(ticker.get("last")),
        bid_volume=to_decimal(ticker.get("bidVolume")),
        ask_volume=to_decimal(ticker.get("askVolume")),
        base_volume=to_decimal(ticker.get("baseVolume")),
        quote_volume=to_decimal(ticker.get("quoteVolume")),
        **_envelope(ticker, source, cause),
    )
