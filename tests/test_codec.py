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
