"""``SimExchange``: the simulated venue behind the subset of ccxt's unified async API the engine
uses, with ccxt's method names, signatures, return shapes and exception classes.

Deterministic from its seed: the same calls in the same order give the same responses, byte
for byte (prices, liquidity and faults each draw from their own seeded stream). Time is the
clock it is given: a ``VirtualClock`` (the default) moves only as calls wait on it, so a
simulated day runs in seconds; a ``RealClock`` runs the demo in real time.

Profiles are constructor arguments: ``has`` overrides (or ``trades=False`` for a venue with
no trades endpoints at all, so fills must be emulated from orders; ``websocket=False`` for
one with no streams, so watchers must poll), ``latency`` per call, and ``faults``.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import pickle
import random
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs
import ccxt

from adapters.sim.clock import SimClock, VirtualClock
from adapters.sim.markets import DEFAULT_MARKETS, PricePath, RandomWalk
from adapters.sim.venue import SimFill, SimOrder, Venue

__all__ = ["Faults", "SimExchange", "Truth"]

_VENUE_STATUS = {
    "open": "NEW",
    "closed": "FILLED",
    "canceled": "CANCELED",
    "expired": "EXPIRED",
    "rejected": "REJECTED",
}
_STREAMS = ("watchOrders", "watchMyTrades", "watchBalance", "watchPositions", "watchTicker")
_TRADES = ("fetchMyTrades", "fetchOrderTrades", "watchMyTrades")
_MUTATING = frozenset({"createOrder", "cancelOrder", "cancelAllOrders"})


@attrs.frozen
class Faults:
    """Probabilities of each fault, drawn per call from the seeded fault stream.

    - ``timeout``: a REST call times out before it reaches the venue (nothing happens);
    - ``timeout_after``: a create or cancel takes effect, then its response times out;
    - ``rate_limit`` / ``unavailable``: RateLimitExceeded / ExchangeNotAvailable;
    - ``drop_stream``: a watch finds its stream dropped (NetworkError); what that stream
      would have delivered is lost, as ccxt's streams do not replay missed updates;
    - ``duplicate``: a stream update is delivered twice; ``reorder``: a batch arrives reversed;
    - ``stale``: a fetch answers with the snapshot it gave last time for the same question.
    """

    timeout: float = 0.0
    timeout_after: float = 0.0
    rate_limit: float = 0.0
    unavailable: float = 0.0
    drop_stream: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    stale: float = 0.0


@attrs.frozen
class Truth:
    """What really is, at the venue: for tests to compare an engine's state with."""

    balances: dict[str, dict[str, Decimal]]
    positions: dict[str, dict[str, Decimal | None]]
    open_orders: list[dict[str, Any]]
    fills: list[SimFill]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class _Stamped(Protocol):
    @property
    def timestamp(self) -> int: ...


_S = TypeVar("_S", bound=_Stamped)


def _since_limit(items: Iterable[_S], since: int | None, limit: int | None) -> list[_S]:
    """What a ccxt fetch answers for ``since`` and ``limit``: ccxt's ``filter_by_since_limit``
    (tail=False, as ``parse_orders`` and ``parse_trades`` apply it), ascending by timestamp.

    With ``since``: the OLDEST ``limit`` items at or after it, so paging with since = the
    last item's timestamp + 1 visits every item once. Without: the NEWEST ``limit``. A limit
    of None or 0 is no limit (as ccxt's Python slicing has it).
    """
    if limit is not None and limit < 0:
        raise ccxt.BadRequest(f"sim: limit {limit} must be >= 0")
    found = sorted(
        (item for item in items if since is None or item.timestamp >= since),
        key=lambda item: item.timestamp,  # stable: the venue's own order within a millisecond
    )
    if not limit:
        return found
    return found[:limit] if since is not None else found[-limit:]


class SimExchange:
    """A deterministic simulated exchange speaking ccxt's unified async API."""

    id = "sim"
    CACHE_LIMIT = 1000
    """Updates a stream keeps for its watcher (ccxt's default ordersLimit and tradesLimit)."""
    OHLCV_LIMIT = 500
    """Candles fetch_ohlcv returns without a limit."""

    def __init__(
        self,
        seed: int = 0,
        *,
        clock: SimClock | None = None,
        markets: Mapping[str, dict[str, Any]] | None = None,
        balances: Mapping[str, Any] | None = None,
        prices: PricePath | None = None,
        tick_seconds: float = 1.0,
        partial_fills: bool = True,
        leverage: float = 1.0,
        has: Mapping[str, bool] | None = None,
        trades: bool = True,
        websocket: bool = True,
        latency: float = 0.0,
        faults: Faults | None = None,
        watch_timeout: float = 300.0,
    ) -> None:
        self.clock = clock or VirtualClock()
        self.markets = copy.deepcopy(dict(markets or DEFAULT_MARKETS))
        self.symbols = sorted(self.markets)
        start = {"USDT": 100_000, "BTC": 1, "ETH": 10} if balances is None else balances
        self.venue = Venue(
            seed=seed,
            markets=self.markets,
            balances={
                c: Decimal(repr(float(v))) if not isinstance(v, Decimal) else v
                for c, v in start.items()
            },
            prices=prices or RandomWalk(seed),
            start_ms=self.clock.now_ms(),
            tick_ms=max(1, round(tick_seconds * 1000)),
            partial_fills=partial_fills,
            leverage=Decimal(repr(float(leverage))),
        )
        self.tick_seconds = tick_seconds
        self.latency = latency
        self.faults = faults or Faults()
        self.watch_timeout = watch_timeout
        self._faults = random.Random(f"{seed}:faults")
        self.has: dict[str, bool] = {
            "spot": True,
            "swap": True,
            "future": False,
            "margin": False,
            "createOrder": True,
            "cancelOrder": True,
            "cancelAllOrders": True,
            "fetchOrder": True,
            "fetchOpenOrders": True,
            "fetchClosedOrders": True,
            "fetchMyTrades": True,
            "fetchOrderTrades": True,
            "fetchBalance": True,
            "fetchPositions": True,
            "fetchTicker": True,
            "fetchOHLCV": True,
            "setLeverage": True,
            "ws": True,
            **{name: True for name in _STREAMS},
        }
        if not trades:
            self.has.update({name: False for name in _TRADES})
        if not websocket:
            self.has.update({name: False for name in _STREAMS}, ws=False)
        self.has.update(has or {})
        self.timeframes = {"1m": "1m", "5m": "5m", "1h": "1h"}
        # Bounded like ccxt's own caches (ordersLimit, tradesLimit): a stream nobody watches
        # keeps its newest updates only.
        self._queues: dict[str, deque[dict[str, Any]]] = {
            name: deque(maxlen=self.CACHE_LIMIT)
            for name in ("orders", "trades", "balance", "positions")
        }
        self._last: dict[tuple[Any, ...], Any] = {}
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, name: str) -> None:
        """Every call: supported? latency; faults that stop it before the venue."""
        if self._closed:
            raise ccxt.ExchangeClosedByUser("sim: the exchange was closed")
        if not self.has.get(name, False):
            raise ccxt.NotSupported(f"sim: {name}() is not supported by this profile")
        if self.latency:
            await self.clock.sleep(self.latency)
        faults = self.faults
        if not name.startswith("watch"):
            if faults.unavailable and self._faults.random() < faults.unavailable:
                raise ccxt.ExchangeNotAvailable(f"sim: {name} 503 Service Unavailable")
            if faults.rate_limit and self._faults.random() < faults.rate_limit:
                raise ccxt.RateLimitExceeded(f"sim: {name} 429 Too Many Requests")
            if faults.timeout and self._faults.random() < faults.timeout:
                raise ccxt.RequestTimeout(f"sim: {name} timed out")
        self._sync()

    def _after(self, name: str) -> None:
        """After a create or cancel took effect: maybe its response is lost."""
        chance = self.faults.timeout_after
        if name in _MUTATING and chance and self._faults.random() < chance:
            raise ccxt.RequestTimeout(f"sim: {name} timed out (but it was done)")

    def _stale(self, key: tuple[Any, ...], fresh: Any) -> Any:
        chance = self.faults.stale
        old = self._last.get(key)
        self._last[key] = fresh
        if chance and old is not None and self._faults.random() < chance:
            return old
        return fresh

    def _sync(self) -> None:
        """Bring the venue to the clock's time and queue what changed for the streams."""
        self.venue.advance_to(self.clock.now_ms())
        orders, fills, balance, positions = self.venue.take_changes()
        if not self.has.get("ws", True):
            return
        seen: set[str] = set()
        for order in orders:
            if order.id not in seen:
                seen.add(order.id)
                self._queues["orders"].append(self._order(order))
        self._queues["trades"].extend(self._trade(fill) for fill in fills)
        if balance:  # a balance update is the whole balance: only the newest matters
            self._queues["balance"].clear()
            self._queues["balance"].append(self._balance())
        for symbol in sorted(positions):
            self._queues["positions"].append(self._position(symbol))

    def _maybe_drop(
        self, name: str, queue: str | None, symbols: Collection[str] | None = None
    ) -> None:
        chance = self.faults.drop_stream
        if chance and self._faults.random() < chance:
            if queue is not None:  # what this subscription would have delivered is gone
                pending = self._queues[queue]
                kept = [u for u in pending if symbols is not None and u["symbol"] not in symbols]
                pending.clear()
                pending.extend(kept)
            raise ccxt.NetworkError(f"sim: {name} connection closed")

    async def _watch(
        self, name: str, queue: str, symbols: Collection[str] | None
    ) -> list[dict[str, Any]]:
        """Updates queued since the last watch (of ``symbols``); waits a tick at a time."""
        waited = 0.0
        while True:
            await self._call(name)
            self._maybe_drop(name, queue, symbols)
            pending = self._queues[queue]
            batch = [u for u in pending if symbols is None or u.get("symbol") in symbols]
            if batch:
                for update in batch:
                    pending.remove(update)
                return self._deliver(batch)
            if waited >= self.watch_timeout:
                raise ccxt.RequestTimeout(f"sim: no {queue} update in {waited:.0f} s")
            await self.clock.sleep(self.tick_seconds)
            waited += self.tick_seconds

    def _deliver(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        faults = self.faults
        out: list[dict[str, Any]] = []
        for update in batch:
            out.append(update)
            if faults.duplicate and self._faults.random() < faults.duplicate:
                out.append(update)
        if faults.reorder and len(out) > 1 and self._faults.random() < faults.reorder:
            out.reverse()
        return out

    # -- ccxt structures --------------------------------------------------------------------

    def _market_id(self, symbol: str) -> str:
        return str(self.markets[symbol]["id"])

    def _order(self, order: SimOrder) -> dict[str, Any]:
        fee = (
            {"cost": float(order.fee), "currency": order.fee_currency}
            if order.fee_currency
            else None
        )
        return {
            "info": {
                "orderId": int(order.id),
                "clientOrderId": order.client_order_id,
                "symbol": self._market_id(order.symbol),
                "status": _VENUE_STATUS[order.status]
                if order.status != "open" or not order.filled
                else "PARTIALLY_FILLED",
                "type": order.type.upper(),
                "side": order.side.upper(),
                "timeInForce": order.time_in_force,
                "price": str(order.price or 0),
                "origQty": str(order.amount),
                "executedQty": str(order.filled),
                "cummulativeQuoteQty": str(order.cost),
                "time": order.timestamp,
                "updateTime": order.last_update_timestamp,
            },
            "id": order.id,
            "clientOrderId": order.client_order_id,
            "timestamp": order.timestamp,
            "datetime": _iso(order.timestamp),
            "lastTradeTimestamp": order.last_trade_timestamp,
            "lastUpdateTimestamp": order.last_update_timestamp,
            "symbol": order.symbol,
            "type": order.type,
            "timeInForce": order.time_in_force,
            "postOnly": order.post_only,
            "reduceOnly": order.reduce_only,
            "side": order.side,
            "price": _f(
                order.price
                if order.price is not None
                else (order.cost / order.filled if order.filled else None)
            ),
            "triggerPrice": None,
            "stopPrice": None,
            "takeProfitPrice": None,
            "stopLossPrice": None,
            "amount": float(order.amount),
            "cost": float(order.cost),
            "average": _f(order.cost / order.filled) if order.filled else None,
            "filled": float(order.filled),
            "remaining": float(order.remaining),
            "status": order.status,
            "fee": fee,
            "fees": [fee] if fee else [],
            "trades": [],
        }

    def _trade(self, fill: SimFill) -> dict[str, Any]:
        fee = {"cost": float(fill.fee), "currency": fill.fee_currency}
        return {
            "info": {
                "id": int(fill.id),
                "orderId": int(fill.order_id),
                "symbol": self._market_id(fill.symbol),
                "price": str(fill.price),
                "qty": str(fill.amount),
                "quoteQty": str(fill.cost),
                "commission": str(fill.fee),
                "commissionAsset": fill.fee_currency,
                "time": fill.timestamp,
                "isBuyer": fill.side == "buy",
                "isMaker": fill.taker_or_maker == "maker",
                "realizedPnl": str(fill.realized_pnl),
            },
            "id": fill.id,
            "order": fill.order_id,
            "timestamp": fill.timestamp,
            "datetime": _iso(fill.timestamp),
            "symbol": fill.symbol,
            "type": self.venue.orders[fill.order_id].type,
            "side": fill.side,
            "takerOrMaker": fill.taker_or_maker,
            "price": float(fill.price),
            "amount": float(fill.amount),
            "cost": float(fill.cost),
            "fee": fee,
            "fees": [fee],
        }

    def _balance(self) -> dict[str, Any]:
        venue = self.venue
        currencies = sorted(set(venue.free) | set(venue.used))
        result: dict[str, Any] = {
            "info": {
                "balances": [
                    {
                        "asset": c,
                        "free": str(venue.free.get(c, 0)),
                        "locked": str(venue.used.get(c, 0)),
                    }
                    for c in currencies
                ],
                "updateTime": venue.now,
            },
            "timestamp": venue.now,
            "datetime": _iso(venue.now),
            "free": {},
            "used": {},
            "total": {},
        }
        for c in currencies:
            free, used = venue.free.get(c, Decimal(0)), venue.used.get(c, Decimal(0))
            entry = {"free": float(free), "used": float(used), "total": float(free + used)}
            result[c] = entry
            for key in ("free", "used", "total"):
                result[key][c] = entry[key]
        return result

    def _position(self, symbol: str) -> dict[str, Any]:
        venue = self.venue
        position = venue.positions.get(symbol)
        contracts = abs(position.contracts) if position else Decimal(0)
        side = (
            None
            if not position or not position.contracts
            else ("long" if position.contracts > 0 else "short")
        )
        mark = venue.mid(symbol)
        entry = position.entry_price if position and position.contracts else None
        signed = position.contracts if position else Decimal(0)
        unrealized = (mark - entry) * signed if entry is not None else Decimal(0)
        leverage = venue.leverage.get(symbol, venue.default_leverage)  # the setting, as venues say
        margin = position.margin if position else Decimal(0)
        notional = contracts * mark
        liquidation = venue.liquidation_price(position) if position else None
        return {
            "info": {
                "symbol": self._market_id(symbol),
                "positionAmt": str(signed),
                "entryPrice": str(entry or 0),
                "markPrice": str(mark),
                "unRealizedProfit": str(unrealized),
                "leverage": str(leverage),
                "isolatedMargin": str(margin),
                "updateTime": venue.now,
            },
            "id": None,
            "symbol": symbol,
            "timestamp": venue.now,
            "datetime": _iso(venue.now),
            "contracts": float(contracts),
            "contractSize": 1.0,
            "side": side,
            "notional": float(notional),
            "leverage": float(leverage),
            "unrealizedPnl": float(unrealized),
            "realizedPnl": None,
            "collateral": float(margin),
            "entryPrice": _f(entry),
            "markPrice": float(mark),
            "liquidationPrice": _f(liquidation),
            "marginMode": "isolated",
            "hedged": False,
            "maintenanceMargin": float(notional * Decimal("0.005")),
            "maintenanceMarginPercentage": 0.005,
            "initialMargin": float(margin),
            # what was posted (orders placed at other leverages post other shares)
            "initialMarginPercentage": float(margin / (contracts * entry))
            if entry
            else float(1 / leverage),
            "marginRatio": None,
            "positionMargin": None,
            "percentage": float(unrealized / margin * 100) if margin else None,
            "stopLossPrice": None,
            "takeProfitPrice": None,
        }

    def _ticker(self, symbol: str) -> dict[str, Any]:
        venue = self.venue
        bid, ask = venue.bid_ask(symbol)
        last = venue.mid(symbol)
        return {
            "symbol": symbol,
            "timestamp": venue.now,
            "datetime": _iso(venue.now),
            "high": None,
            "low": None,
            "bid": float(bid),
            "bidVolume": None,
            "ask": float(ask),
            "askVolume": None,
            "vwap": None,
            "open": None,
            "close": float(last),
            "last": float(last),
            "previousClose": None,
            "change": None,
            "percentage": None,
            "average": None,
            "baseVolume": None,
            "quoteVolume": None,
            "indexPrice": None,
            "markPrice": float(last),
            "info": {
                "symbol": self._market_id(symbol),
                "bidPrice": str(bid),
                "askPrice": str(ask),
                "lastPrice": str(last),
                "closeTime": venue.now,
            },
        }

    def _find(self, order_id: str | None, params: Mapping[str, Any] | None) -> SimOrder:
        client_id = (params or {}).get("clientOrderId") or (params or {}).get("origClientOrderId")
        if client_id is not None:
            order_id = self.venue.by_client_id.get(client_id)
        order = self.venue.orders.get(str(order_id)) if order_id is not None else None
        if order is None:
            raise ccxt.OrderNotFound(f"sim: order {order_id or client_id} does not exist")
        return order

    # -- the unified API --------------------------------------------------------------------

    async def load_markets(
        self,
        reload: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        if self._closed:
            raise ccxt.ExchangeClosedByUser("sim: the exchange was closed")
        return self.markets

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        await self._call("createOrder")
        order = self.venue.create_order(symbol, type, side, amount, price, dict(params or {}))
        response = self._order(order)
        self._sync()
        self._after("createOrder")
        return response

    async def cancel_order(
        self, id: str, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        await self._call("cancelOrder")
        order = self.venue.cancel_order(self._find(id, params).id)
        response = self._order(order)
        self._sync()
        self._after("cancelOrder")
        return response

    async def cancel_all_orders(
        self, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        await self._call("cancelAllOrders")
        canceled = [
            self._order(self.venue.cancel_order(o.id))
            for o in self.venue.open_orders()
            if symbol is None or o.symbol == symbol
        ]
        self._sync()
        self._after("cancelAllOrders")
        return canceled

    async def fetch_order(
        self, id: str | None, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        await self._call("fetchOrder")
        order = self._find(id, params)
        return dict(self._stale(("fetchOrder", order.id), self._order(order)))

    async def fetch_open_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._call("fetchOpenOrders")
        orders = (o for o in self.venue.open_orders() if symbol is None or o.symbol == symbol)
        found = [self._order(o) for o in _since_limit(orders, since, limit)]
        return list(self._stale(("fetchOpenOrders", symbol, since, limit), found))

    async def fetch_closed_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._call("fetchClosedOrders")
        orders = (
            o
            for o in self.venue.orders.values()
            if o.status != "open" and (symbol is None or o.symbol == symbol)
        )
        return [self._order(o) for o in _since_limit(orders, since, limit)]

    async def fetch_my_trades(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._call("fetchMyTrades")
        fills = (f for f in self.venue.fills if symbol is None or f.symbol == symbol)
        return [self._trade(f) for f in _since_limit(fills, since, limit)]

    async def fetch_order_trades(
        self,
        id: str,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        await self._call("fetchOrderTrades")
        return [self._trade(f) for f in _since_limit(self._find(id, params).trades, since, limit)]

    async def fetch_balance(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        await self._call("fetchBalance")
        return dict(self._stale(("fetchBalance",), self._balance()))

    async def fetch_positions(
        self, symbols: list[str] | None = None, params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        await self._call("fetchPositions")
        wanted = [
            s
            for s in self.symbols
            if self.markets[s]["contract"] and (symbols is None or s in symbols)
        ]
        found = [
            self._position(s)
            for s in wanted
            if s in self.venue.positions and self.venue.positions[s].contracts
        ]
        return list(self._stale(("fetchPositions", tuple(symbols or ())), found))

    async def fetch_ticker(
        self,
        symbol: str,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        await self._call("fetchTicker")
        self.venue.market(symbol)
        return self._ticker(symbol)

    async def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str = "1m",
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[list[float]]:
        await self._call("fetchOHLCV")
        self.venue.market(symbol)
        seconds = {"1m": 60, "5m": 300, "1h": 3600}.get(timeframe)
        if seconds is None:
            raise ccxt.BadRequest(f"sim: timeframe {timeframe!r} is not supported")
        venue = self.venue
        span = seconds * 1000
        last = (venue.now // span) * span  # candles open on the timeframe's boundaries
        count = limit or self.OHLCV_LIMIT
        if count < 1:
            raise ccxt.BadRequest(f"sim: fetch_ohlcv limit {limit} must be >= 1")
        earliest = venue.start_ms // span * span
        if since is None:  # the newest candles
            first = max(earliest, last - (count - 1) * span)
        else:  # the oldest candles from since on
            first = max(earliest, -(-since // span) * span)
            last = min(last, first + (count - 1) * span)
        candles = []
        for opened in range(first, last + 1, span):
            ticks = range(
                max(0, -(-(opened - venue.start_ms) // venue.tick_ms)),
                min(venue.tick, (opened + span - 1 - venue.start_ms) // venue.tick_ms) + 1,
            )
            prices = [venue.price_at(symbol, t) for t in ticks]
            if not prices:
                continue
            candles.append(
                [
                    opened,
                    float(prices[0]),
                    float(max(prices)),
                    float(min(prices)),
                    float(prices[-1]),
                    0.0,
                ]
            )
        return candles[-count:]

    async def set_leverage(
        self, leverage: float, symbol: str | None = None, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        await self._call("setLeverage")
        if symbol is None:
            raise ccxt.ArgumentsRequired("sim: set_leverage() needs a symbol")
        self.venue.set_leverage(symbol, leverage)
        return {"info": {"symbol": self._market_id(symbol), "leverage": leverage}}

    async def watch_orders(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return await self._watch("watchOrders", "orders", None if symbol is None else (symbol,))

    async def watch_my_trades(
        self,
        symbol: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return await self._watch("watchMyTrades", "trades", None if symbol is None else (symbol,))

    async def watch_balance(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        updates = await self._watch("watchBalance", "balance", None)
        return updates[0]  # one snapshot is queued at most (duplicates are the same one)

    async def watch_positions(
        self,
        symbols: list[str] | None = None,
        since: int | None = None,
        limit: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        return await self._watch(
            "watchPositions", "positions", None if symbols is None else frozenset(symbols)
        )

    async def watch_ticker(
        self,
        symbol: str,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        await self._call("watchTicker")
        self._maybe_drop("watchTicker", None)
        self.venue.market(symbol)
        await self.clock.sleep(self.tick_seconds)  # the next tick's ticker
        self._sync()
        return self._ticker(symbol)

    async def close(self) -> None:
        self._closed = True

    # -- for tests --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Keep the venue (books, orders, fills, balances, positions, its time) in ``path``,
        so a later run on the same trace can trade on with ``resume``. A pickle: only load
        files you wrote."""
        target = Path(path)
        staged = target.with_name(target.name + ".tmp")
        with staged.open("wb") as out:
            pickle.dump({"version": 1, "venue": self.venue, "now_ms": self.clock.now_ms()}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staged, target)

    def resume(self, path: str | os.PathLike[str]) -> None:
        """Trade on from a venue ``save`` kept (the clock is moved on to its time)."""
        with Path(path).open("rb") as source:
            kept = pickle.load(source)  # our own file: see save
        if not isinstance(kept, dict) or kept.get("version") != 1:
            raise ValueError(f"{path} is not a simulated venue saved by this version")
        venue = kept["venue"]
        if set(venue.markets) != set(self.markets):
            raise ValueError(
                f"{path} holds a venue with other markets ({', '.join(venue.markets)})"
            )
        self.venue = venue
        behind = kept["now_ms"] - self.clock.now_ms()
        advance = getattr(self.clock, "advance", None)  # a real clock is where it is
        if behind > 0 and advance is not None:
            advance(behind / 1000)

    def truth(self) -> Truth:
        """The venue's own balances, positions, open orders and fills, as of its clock."""
        venue = self.venue
        venue.advance_to(self.clock.now_ms())
        currencies = sorted(set(venue.free) | set(venue.used))
        return Truth(
            balances={
                c: {
                    "free": venue.free.get(c, Decimal(0)),
                    "used": venue.used.get(c, Decimal(0)),
                    "total": venue.total(c),
                }
                for c in currencies
            },
            positions={
                s: {
                    "contracts": p.contracts,
                    "entry_price": p.entry_price,
                    "margin": p.margin,
                    "liquidation_price": venue.liquidation_price(p),
                }
                for s, p in sorted(venue.positions.items())
                if p.contracts
            },
            open_orders=[self._order(o) for o in venue.open_orders()],
            fills=list(venue.fills),
        )
