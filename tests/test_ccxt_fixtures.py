"""Real Binance responses, parsed by the real ccxt, fold into the state expected by hand."""

from __future__ import annotations

from decimal import Decimal

from adapters.observations import (
    balance_observed,
    order_observed,
    position_observed,
    trade_observed,
)
from eventsrc import Fee, StrategyStarted, fold
from tests.ccxt_fixtures import expected, replay

D = Decimal


def test_the_mapping_keeps_the_unified_fields_exact_and_the_raw_dict() -> None:
    order = replay("binance", "fetchOrder")
    event = order_observed(order, source="fetch_order")
    assert event.order_id == "3397148653" and event.asset == "LTC/USDT"
    assert (event.filled, event.cost, event.average) == (D("0.1"), D("9.08"), D("90.8"))
    assert event.status == "closed" and event.side == "sell" and event.order_type == "market"
    assert event.exchange_ts == expected("binance", "fetchOrder")["timestamp"]
    assert event.info()["info"] == order["info"]  # the whole ccxt dict, venue payload included
    trade = trade_observed(replay("binance", "fetchMyTrades")[0])
    assert trade.fees == (Fee("USDT", D("0.013926")),)
    position = position_observed(replay("binance", "fetchPositions")[0])
    assert (position.side, position.contracts, position.entry_price) == (
        "long",
        D("0.009"),
        D("67445.9"),
    )


def test_a_spot_strategy_folds_binance_responses_into_the_state_expected_by_hand() -> None:
    events = [
        StrategyStarted("USDT", ("LTC/USDT", "SOL/USDT"), exchange="binance"),
        balance_observed(replay("binance", "fetchBalance")),
        order_observed(replay("binance", "createOrder")),
        order_observed(replay("binance", "fetchOrder")),
        *(order_observed(o) for o in replay("binance", "fetchOpenOrders")),
        trade_observed(replay("binance", "fetchMyTrades", 0)[0]),
    ]
    state = fold(events)
    assert not state.anomalies

    # The balance: every currency binance reported is kept (BTC, ETH, LTC), and USDT moved by
    # the fills.
    assert set(state.cash) == {"BTC", "ETH", "LTC", "USDT"}

    # createOrder: a resting SOL limit buy, nothing filled.
    sol = state.orders["9780331417"]
    assert (sol.status, sol.filled, sol.cost, sol.amount, sol.price) == (
        "open",
        D(0),
        D(0),
        D("0.05"),
        D("241"),
    )
    assert sol.trades == ()
    assert state.client_orders["x-R4BD3S824d31be3228a348eaa0a303"] == "9780331417"

    # fetchOrder: a market sell of 0.1 LTC filled at 90.8, no trades endpoint used: one
    # emulated fill carrying the whole order.
    sold = state.orders["3397148653"]
    assert (sold.status, sold.filled, sold.cost, sold.average) == (
        "closed",
        D("0.1"),
        D("9.08"),
        D("90.8"),
    )
    (fill,) = sold.trades
    assert fill.emulated and (fill.amount, fill.cost, fill.price) == (
        D("0.1"),
        D("9.08"),
        D("90.8"),
    )

    # fetchOpenOrders: a post-only LTC buy at 50, untouched.
    resting = state.orders["3811057334"]
    assert (resting.status, resting.filled, resting.amount) == ("open", D(0), D("0.2"))

    # fetchMyTrades: a real taker sell of 0.2 LTC at 69.63 of an order seen only through it.
    traded = state.orders["3784695242"]
    assert (traded.filled, traded.cost, traded.fee("USDT")) == (
        D("0.2"),
        D("13.926"),
        D("0.013926"),
    )
    assert [t.trade_id for t in traded.trades] == ["309520010"]
    assert state.trades["LTC/USDT"] == (fill, *traded.trades)

    # Cash: LTC 0.919741 as binance reported it in December 2023, which includes both sells
    # (March and October 2023, as the venue dates them): they do not count twice. No USDT was
    # reported: it received 9.08 + 13.926 and paid a 0.013926 fee.
    assert state.cash["LTC"].total == D("0.919741")
    assert state.cash["USDT"].total == D("9.08") + D("13.926") - D("0.013926")


def test_a_margin_strategy_takes_positions_and_the_balances_from_the_venue() -> None:
    balance = replay("binance", "fetchBalance")
    balance["USDT"] = {"free": 1000.5, "used": 20.0, "total": 1020.5}
    events = [
        StrategyStarted("USDT", ("BTC/USDT:USDT",), margin=True, exchange="binance"),
        balance_observed(balance),
        *(position_observed(p) for p in replay("binance", "fetchPositions")),
        trade_observed(replay("binance", "fetchMyTrades", 1)[0]),
    ]
    state = fold(events)
    assert not state.anomalies
    assert set(state.cash) == {"BTC", "ETH", "LTC", "USDT"}  # contracts move no cash
    assert (state.cash["USDT"].free, state.cash["USDT"].used) == (D("1000.5"), D("20.0"))
    position = state.positions[("BTC/USDT:USDT", "long")]
    assert (position.contracts, position.entry_price, position.liquidation_price) == (
        D("0.009"),
        D("67445.9"),
        D("64846.78939917"),
    )
    order = state.orders["3524852987"]
    assert (order.filled, order.cost, order.fee("USDT")) == (
        D("0.01"),
        D("365.671"),
        D("0.1462684"),
    )
    # Margin: fills move no cash; the venue's balance and positions are the truth.
    assert state.cash["USDT"].total == D("1020.5")
