"""A deterministic stream of realistic events, for the demo, benchmarks and tests.

The mix follows a live spot strategy's trace: mostly tickers, orders observed through their
lifecycle with partial fills, their trades, and balance updates. Raw payloads are shaped and sized
like Binance's REST responses (~300-700 bytes of JSON), so storage and codec figures are honest.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from decimal import Decimal

import attrs

from eventsrc.events import (
    Balance,
    BalanceObserved,
    Event,
    Fee,
    Note,
    OrderObserved,
    OrderRequested,
    StrategyStarted,
    TickerObserved,
    TradeObserved,
    encode_raw,
)

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT")
_START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_PRICES = {
    "BTC/USDT": 94000.0,
    "ETH/USDT": 3300.0,
    "SOL/USDT": 190.0,
    "XRP/USDT": 2.1,
    "DOGE/USDT": 0.31,
    "ADA/USDT": 0.9,
}


def _q(value: float, places: int) -> Decimal:
    return Decimal(f"{value:.{places}f}")


def _ticker_raw(market_id: str, bid: Decimal, ask: Decimal, ms: int, rng: random.Random) -> bytes:
    last = (bid + ask) / 2
    return encode_raw(
        {
            "symbol": market_id,
            "priceChange": f"{rng.uniform(-500, 500):.8f}",
            "priceChangePercent": f"{rng.uniform(-3, 3):.3f}",
            "weightedAvgPrice": f"{last:.8f}",
            "prevClosePrice": f"{last:.8f}",
            "lastPrice": f"{last:.8f}",
            "lastQty": f"{rng.uniform(0, 2):.8f}",
            "bidPrice": f"{bid:.8f}",
            "bidQty": f"{rng.uniform(0, 5):.8f}",
            "askPrice": f"{ask:.8f}",
            "askQty": f"{rng.uniform(0, 5):.8f}",
            "openPrice": f"{last:.8f}",
            "highPrice": f"{last * Decimal('1.02'):.8f}",
            "lowPrice": f"{last * Decimal('0.98'):.8f}",
            "volume": f"{rng.uniform(1e3, 1e5):.8f}",
            "quoteVolume": f"{rng.uniform(1e6, 1e9):.8f}",
            "openTime": ms - 86_400_000,
            "closeTime": ms,
            "firstId": rng.randrange(10**9),
            "lastId": rng.randrange(10**9, 2 * 10**9),
            "count": rng.randrange(10**6),
        }
    )


def _order_raw(
    market_id: str,
    order_id: int,
    client_id: str,
    side: str,
    price: Decimal,
    amount: Decimal,
    filled: Decimal,
    cost: Decimal,
    status: str,
    ms: int,
) -> bytes:
    return encode_raw(
        {
            "symbol": market_id,
            "orderId": order_id,
            "orderListId": -1,
            "clientOrderId": client_id,
            "price": f"{price:.8f}",
            "origQty": f"{amount:.8f}",
            "executedQty": f"{filled:.8f}",
            "cummulativeQuoteQty": f"{cost:.8f}",
            "status": status,
            "timeInForce": "GTC",
            "type": "LIMIT",
            "side": side.upper(),
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": ms,
            "updateTime": ms,
            "isWorking": True,
            "workingTime": ms,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
    )


def stream(
    n: int, seed: int = 0, *, start_ms: int = _START_MS, orders: int | None = None
) -> Iterator[Event]:
    """Exactly ``n`` events: a StrategyStarted, then tickers (~60%), orders with partial fills
    and their trades (~30%), balances (~8%) and the odd Note. Same seed, same events.

    ``orders`` caps how many orders are placed (about that many, spread over the stream);
    by default one in ~7 events places one."""
    return itertools.islice(_stream(n, seed, start_ms, orders), n)


@attrs.define
class _OpenOrder:
    symbol: str
    id: str
    client_id: str
    side: str
    price: Decimal
    amount: Decimal
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    last_fill_ms: int | None = None


def _order_observed(order: _OpenOrder, ms: int, status: str) -> OrderObserved:
    market = order.symbol.replace("/", "")
    return OrderObserved(
        asset=order.symbol,
        exchange_ts=ms,
        source="watch_orders",
        order_id=order.id,
        client_order_id=order.client_id,
        side=order.side,
        order_type="limit",
        status=status,
        price=order.price,
        amount=order.amount,
        filled=order.filled,
        remaining=order.amount - order.filled,
        cost=order.cost,
        average=order.cost / order.filled if order.filled else None,
        fees=(Fee("USDT", order.fee),),
        last_trade_timestamp=order.last_fill_ms,
        raw=_order_raw(
            market,
            int(order.id),
            order.client_id,
            order.side,
            order.price,
            order.amount,
            order.filled,
            order.cost,
            "FILLED" if status == "closed" else "PARTIALLY_FILLED",
            ms,
        ),
    )


def _stream(n: int, seed: int, start_ms: int, orders: int | None) -> Iterator[Event]:
    rng = random.Random(seed)
    prices = dict(_PRICES)
    ms = start_ms
    emitted = 0
    order_seq = 0
    balances = {"USDT": Decimal("100000"), **{s.split("/")[0]: Decimal(0) for s in SYMBOLS}}
    open_orders: list[_OpenOrder] = []
    # With a cap: a few partial fills per order, and between them the order re-reported as it
    # stands (a polling watcher's view), so the trace grows while the state does not.
    fills_per_order = None if orders is None else 4
    fill_chance = 1.0 if orders is None else min(1.0, orders * 4 / (0.17 * n))

    yield StrategyStarted("USDT", SYMBOLS, exchange="binance", strategy="synthetic")
    emitted += 1
    while emitted < n:
        ms += rng.randrange(1, 200)
        roll = rng.random()
        symbol = rng.choice(SYMBOLS)
        market_id = symbol.replace("/", "")
        price = prices[symbol] = prices[symbol] * (1 + rng.gauss(0, 0.0005))
        places = 2 if price > 10 else 5
        # With a cap, an order is placed with the chance that spreads the cap over n events.
        place = roll < 0.75 and (orders is None or rng.random() < orders * 7 / n)
        if (
            roll < 0.6
            or (roll < 0.9 and not open_orders and roll > 0.75)
            or (0.6 <= roll < 0.75 and not place)
        ):
            bid, ask = _q(price * 0.9999, places), _q(price * 1.0001, places)
            yield TickerObserved(
                asset=symbol,
                exchange_ts=ms,
                source="watch_ticker",
                bid=bid,
                ask=ask,
                last=_q(price, places),
                raw=_ticker_raw(market_id, bid, ask, ms, rng),
            )
            emitted += 1
        elif roll < 0.75:
            order_seq += 1
            side = rng.choice(("buy", "sell"))
            amount = _q(rng.uniform(0.01, 2.0) * 3000 / price, 4) or Decimal("0.0001")
            limit = _q(price, places)
            client_id = f"es-{seed}-{order_seq}"
            yield OrderRequested(
                client_id, side, "limit", amount, limit, asset=symbol, source="strategy"
            )
            emitted += 1
            open_orders.append(
                _OpenOrder(symbol, str(10_000_000 + order_seq), client_id, side, limit, amount)
            )
        elif roll < 0.92 and open_orders and orders is not None and rng.random() >= fill_chance:
            order = rng.choice(open_orders)
            yield _order_observed(order, ms, "open")
            emitted += 1
        elif roll < 0.92 and open_orders:
            order = rng.choice(open_orders)
            # Capped orders fill in many small steps, so they live through the stream.
            share = (
                rng.uniform(0.2, 0.7)
                if fills_per_order is None
                else (rng.uniform(0.5, 1.5) / fills_per_order)
            )
            fill = min(order.amount - order.filled, _q(float(order.amount) * share, 4))
            if fill <= 0 or (fills_per_order is None and rng.random() < 0.2):
                fill = order.amount - order.filled
            order.filled += fill
            order.last_fill_ms = ms
            fill_cost = fill * order.price
            order.cost += fill_cost
            fee = fill_cost * Decimal("0.001")
            order.fee += fee
            status = "closed" if order.filled == order.amount else "open"
            market = order.symbol.replace("/", "")
            yield TradeObserved(
                asset=order.symbol,
                exchange_ts=ms,
                source="watch_my_trades",
                trade_id=str(rng.randrange(10**9)),
                order_id=order.id,
                client_order_id=order.client_id,
                side=order.side,
                price=order.price,
                amount=fill,
                cost=fill_cost,
                fees=(Fee("USDT", fee),),
                taker_or_maker="maker",
                raw=encode_raw(
                    {
                        "symbol": market,
                        "id": rng.randrange(10**9),
                        "orderId": int(order.id),
                        "price": f"{order.price:.8f}",
                        "qty": f"{fill:.8f}",
                        "quoteQty": f"{fill_cost:.8f}",
                        "commission": f"{fee:.8f}",
                        "commissionAsset": "USDT",
                        "time": ms,
                        "isBuyer": order.side == "buy",
                        "isMaker": True,
                        "isBestMatch": True,
                    }
                ),
            )
            yield _order_observed(order, ms, status)
            emitted += 2
            if status == "closed":
                open_orders.remove(order)
        elif roll < 0.995:
            for currency in balances:
                balances[currency] += _q(rng.uniform(-1, 1), 4)
            yield BalanceObserved(
                exchange_ts=ms,
                source="watch_balance",
                balances=tuple(Balance(c, v, v, Decimal(0)) for c, v in balances.items()),
                raw=encode_raw(
                    {
                        "makerCommission": 10,
                        "takerCommission": 10,
                        "canTrade": True,
                        "updateTime": ms,
                        "accountType": "SPOT",
                        "balances": [
                            {"asset": c, "free": f"{v:.8f}", "locked": "0.00000000"}
                            for c, v in balances.items()
                        ],
                    }
                ),
            )
            emitted += 1
        else:
            yield Note(f"synthetic note at {ms}", source="operator")
            emitted += 1
