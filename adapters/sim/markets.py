"""Markets of the simulated exchange (ccxt unified market structures) and their price paths."""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "DEFAULT_MARKETS",
    "OHLCVPath",
    "PricePath",
    "RandomWalk",
    "linear_perpetual",
    "spot",
]


def _market(
    symbol: str, *, kind: str, tick: str, step: str, maker: str, taker: str, min_amount: str
) -> dict[str, Any]:
    pair, _, settle = symbol.partition(":")
    base, quote = pair.split("/")
    linear = kind == "swap"
    return {
        "id": (base + quote + ("PERP" if linear else "")),
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "settle": settle or None,
        "baseId": base,
        "quoteId": quote,
        "settleId": settle or None,
        "type": kind,
        "spot": kind == "spot",
        "margin": False,
        "swap": linear,
        "future": False,
        "option": False,
        "active": True,
        "contract": linear,
        "linear": True if linear else None,
        "inverse": False if linear else None,
        "contractSize": 1.0 if linear else None,
        "expiry": None,
        "expiryDatetime": None,
        "strike": None,
        "optionType": None,
        "taker": float(taker),
        "maker": float(maker),
        "percentage": True,
        "tierBased": False,
        "precision": {"amount": float(step), "price": float(tick)},
        "limits": {
            "amount": {"min": float(min_amount), "max": None},
            "price": {"min": float(tick), "max": None},
            "cost": {"min": None, "max": None},
            "leverage": {"min": 1.0, "max": 100.0 if linear else None},
        },
        "info": {"symbol": base + quote, "status": "TRADING", "tickSize": tick, "stepSize": step},
    }


def spot(
    symbol: str,
    tick: str = "0.01",
    step: str = "0.0001",
    maker: str = "0.001",
    taker: str = "0.001",
    min_amount: str = "0.0001",
) -> dict[str, Any]:
    return _market(
        symbol, kind="spot", tick=tick, step=step, maker=maker, taker=taker, min_amount=min_amount
    )


def linear_perpetual(
    symbol: str,
    tick: str = "0.1",
    step: str = "0.001",
    maker: str = "0.0002",
    taker: str = "0.0005",
    min_amount: str = "0.001",
) -> dict[str, Any]:
    return _market(
        symbol, kind="swap", tick=tick, step=step, maker=maker, taker=taker, min_amount=min_amount
    )


DEFAULT_MARKETS: dict[str, dict[str, Any]] = {
    "BTC/USDT": spot("BTC/USDT"),
    "ETH/USDT": spot("ETH/USDT"),
    "BTC/USDT:USDT": linear_perpetual("BTC/USDT:USDT"),
}


class PricePath:
    """Prices by tick: ``price(symbol, tick)`` for tick 0, 1, 2, ... (deterministic)."""

    def price(self, symbol: str, tick: int) -> Decimal:
        raise NotImplementedError


class RandomWalk(PricePath):
    """A seeded geometric random walk per market (the perpetual follows its spot base)."""

    START: ClassVar[dict[str, float]] = {"BTC": 94_000.0, "ETH": 3_300.0, "SOL": 190.0}
    BLOCK: ClassVar[int] = 1024

    def __init__(
        self, seed: int, volatility: float = 0.0008, start: Mapping[str, float] | None = None
    ) -> None:
        self._seed = seed
        self._volatility = volatility
        self._start = dict(self.START if start is None else start)
        self._paths: dict[str, list[float]] = {}

    def price(self, symbol: str, tick: int) -> Decimal:
        base = symbol.split("/")[0]
        path = self._paths.get(base)
        if path is None:
            path = self._paths[base] = [self._start.get(base, 100.0)]
        while len(path) <= tick:
            # Whole blocks, each from its own seed: the price at a tick depends on (seed, base,
            # tick) only, never on which ticks were asked for before (orders, candles, tickers).
            block = (len(path) - 1) // self.BLOCK
            rng = random.Random(f"{self._seed}:{base}:{block}")
            for _ in range(self.BLOCK):
                path.append(path[-1] * math.exp(rng.gauss(0.0, self._volatility)))
        return Decimal(repr(path[tick]))


class OHLCVPath(PricePath):
    """Prices from candles (``[timestamp, open, high, low, close, volume]`` rows, in a JSON
    list or a CSV file): tick i is the close of candle i, repeated past the last."""

    def __init__(self, candles: Mapping[str, Sequence[Sequence[float]]]) -> None:
        if not candles or not all(candles.values()):
            raise ValueError("an OHLCV price path needs at least one candle per symbol")
        self._closes = {
            s: [Decimal(repr(float(c[4]))) for c in rows] for s, rows in candles.items()
        }

    @classmethod
    def from_file(cls, symbol: str, path: str | Path) -> OHLCVPath:
        text = Path(path).read_text()
        if str(path).endswith(".json"):
            rows = json.loads(text)
        else:
            rows = [
                [float(x) for x in row[:6]]
                for row in csv.reader(text.splitlines())
                if row and not row[0].startswith(("#", "timestamp"))
            ]
        return cls({symbol: rows})

    def price(self, symbol: str, tick: int) -> Decimal:
        closes = self._closes.get(symbol) or self._closes.get(symbol.split(":")[0])
        if closes is None:
            raise KeyError(f"no candles for {symbol}")
        return closes[min(tick, len(closes) - 1)]
