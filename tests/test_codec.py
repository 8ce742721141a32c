"""The codec: every kind round-trips exactly; bad events are refused before anything is written."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs
import msgspec
import pytest
from hypothesis import given

from eventsrc import (
    REGISTRY,
    BalanceObserved,
    Codec,
    Decision,
    Event,
    EventNotSerializable,
    EventRegistry,
    Note,
    OrderObserved,
    TickerObserved,
    UnknownEvent,
    encode_raw,
)
from eventsrc.testing import event_of, events

codec = Codec()


def roundtrip(event: Event) -> Event:
    return codec.decode(event.kind, event.version, codec.encode(event))


@pytest.mark.parametrize("info", REGISTRY.kinds(), ids=lambda i: i.name)
def test_every_kind_roundtrips(info: Any) -> None:
    @given(event_of(info.cls))
    def check(event: Event) -> None:
        back = roundtrip(event)
        assert back == event
        assert type(back) is type(event)
        # Decimals come back as Decimals with the same digits, not merely equal values.
        for a in attrs.fields(type(event)):
            assert repr(getattr(back, a.name)) == repr(getattr(event, a.name))

    check()


@given(events())
def test_encoding_is_deterministic(event: Event) -> None:
    assert codec.encode(event) == codec.encode(roundtrip(event))


def test_every_design_kind_is_registered() -> None:
    names = {info.name for info in REGISTRY.kinds()}
    assert {
        "strategy_started",
        "strategy_stopped",
        "order_requested",
        "local_check_failed",
        "order_acknowledged",
        "order_rejected",
        "order_request_failed",
        "order_observed",
        "trade_observed",
        "balance_observed",
        "position_observed",
        "cancel_requested",
        "cancel_observed",
        "ticker_observed",
        "ohlcv_observed",
        "watcher_started",
        "watcher_stopped",
        "watcher_error",
        "watcher_reconnected",
        "sync_started",
        "sync_completed",
        "checkpoint",
        "decision",
        "note",
    } <= names


def test_raw_payload_is_kept_verbatim_and_decoded_on_demand() -> None:
    info = {"orderId": 28, "price": "0.10000000", "fills": [{"qty": "1.0"}]}
    event = OrderObserved(order_id="28", raw=encode_raw(info), asset="BTC/USDT")
    back = roundtrip(event)
    assert isinstance(back, OrderObserved)
    assert back.raw == event.raw
    assert back.info() == info


def test_nan_money_is_recorded_as_nan() -> None:
    back = roundtrip(TickerObserved(bid=Decimal("NaN"), ask=Decimal("-Infinity")))
    assert isinstance(back, TickerObserved)
    assert back.bid is not None and back.bid.is_nan()
    assert back.ask == Decimal("-Infinity")


def test_a_float_where_money_belongs_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"price must be Decimal or None.*not a float"):
        OrderObserved(order_id="1", price=0.1)  # type: ignore[arg-type]


def test_wrong_field_types_are_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"Note\.text must be str, not int"):
        Note(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exchange_ts"):
        Note("x", exchange_ts="yesterday")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="balances"):
        BalanceObserved(balances=("USDT",))  # type: ignore[arg-type]


def test_unencodable_values_raise_event_not_serializable() -> None:
    with pytest.raises(EventNotSerializable, match="Decision"):
        codec.encode(Decision("too big", values={"n": 2**70}))


def test_unknown_kind_decodes_as_unknown_event() -> None:
    payload = codec.encode(Note("from the future", asset="BTC/USDT", source="s"))
    event = codec.decode("someone_elses_kind", 1, payload)
    assert isinstance(event, UnknownEvent)
    assert event.kind_name == "someone_elses_kind"
    assert event.data["text"] == "from the future"
    assert event.asset == "BTC/USDT"
    newer = codec.decode("note", 99, payload)
    assert isinstance(newer, UnknownEvent) and newer.kind_version == 99


def test_older_schema_versions_are_upgraded_on_decode() -> None:
    registry = EventRegistry()

    @registry.kind("fill_note")
    @attrs.frozen
    class FillNoteV1(Event):
        text: str

    old_payload = Codec(registry).encode(FillNoteV1("filled 1.5"))

    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        text = data.pop("text")
        return {**data, "message": text, "amount": text.split()[-1]}

    @registry.kind("fill_note", version=2, upgrades={1: v1_to_v2}, replace=True)
    @attrs.frozen
    class FillNoteV2(Event):
        message: str
        amount: Decimal

    event = Codec(registry).decode("fill_note", 1, old_payload)
    assert event == FillNoteV2("filled 1.5", Decimal("1.5"))


def test_a_kind_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @REGISTRY.kind("note")
        @attrs.frozen
        class OtherNote(Event):
            text: str


def test_payload_is_msgpack_map_of_fields() -> None:
    data = msgspec.msgpack.decode(codec.encode(Note("hi", source="me")))
    assert data["text"] == "hi" and data["source"] == "me"


@pytest.mark.parametrize("info", REGISTRY.kinds(), ids=lambda i: i.name)
def test_construction_takes_what_attrs_takes_and_sets_the_same_fields(info: Any) -> None:
    """The compiled __init__ checks types, then sets fields exactly as attrs' would:
    positional and keyword parameters, defaults, factories and converters."""

    @given(event_of(info.cls))
    def check(event: Event) -> None:
        cls = type(event)
        given_all = {a.alias: getattr(event, a.name) for a in attrs.fields(cls)}
        assert cls(**given_all) == event
        required = {
            a.alias: getattr(event, a.name) for a in attrs.fields(cls) if a.default is attrs.NOTHING
        }
        bare = cls(**required)
        for a in attrs.fields(cls):
            if a.default is attrs.NOTHING:
                continue
            default = a.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            assert getattr(bare, a.name) == default, a.name

    check()


def test_converters_run_on_construction() -> None:
    from eventsrc import Balance, Fee, StrategyStarted, TradeObserved

    assert StrategyStarted("USDT", ["BTC/USDT"]).universe == ("BTC/USDT",)
    assert BalanceObserved(balances=[Balance("USDT", Decimal(1))]).balances == (
        Balance("USDT", Decimal(1)),
    )
    fees = TradeObserved(trade_id="t", fees=[Fee("BNB", Decimal("0.1"))]).fees
    assert fees == (Fee("BNB", Decimal("0.1")),)
    assert Decision("x").values == {} and Decision("y").values is not Decision("z").values


def test_orders_and_trades_of_schema_version_1_read_with_their_one_fee() -> None:
    """Version 1 had ``fee_cost`` and ``fee_currency``; version 2 a fee per currency."""
    from eventsrc import Fee, TradeObserved

    v1_order = msgspec.msgpack.encode(
        {"order_id": "7", "status": "open", "fee_cost": "0.1", "fee_currency": "BNB"}
    )
    order = codec.decode("order_observed", 1, v1_order)
    assert isinstance(order, OrderObserved) and order.fees == (Fee("BNB", Decimal("0.1")),)
    no_fee = codec.decode("order_observed", 1, msgspec.msgpack.encode({"order_id": "7"}))
    assert isinstance(no_fee, OrderObserved) and no_fee.fees is None
    v1_trade = msgspec.msgpack.encode({"trade_id": "t", "fee_cost": "0.2", "fee_currency": None})
    trade = codec.decode("trade_observed", 1, v1_trade)
    assert isinstance(trade, TradeObserved) and trade.fees == (Fee(None, Decimal("0.2")),)
