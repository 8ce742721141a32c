"""The live process the live crash test (test_crash_live.py) kills: an engine over real HTTP,
against the loopback Binance server in another process, working through a fixed list of intents,
each under its own client order id, so a restart retries an intent and never makes it twice.

    python -m tests.crash_live_child TRACE URL INTENTS

One JSON line per fact on stdout, flushed, so what the parent has read survives a SIGKILL:

- ``{"synced": SEQ, "equal": true|false, "why": "..."}`` after each start-up sync: the state
  compared with the server's truth (nothing trades meanwhile: resting orders sit far from the
  price, and market orders are done when answered);
- ``{"ack": SEQ, "digest": HEX}`` for every event once recorded and folded (durability "sync":
  it is on disk), but the EngineErrors, which strategies are not told of;
- ``{"intent": K}`` once intent K is done, ``{"done": true}`` once all are.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.sim.server import ServerTruth, binance_client, fetch_truth
from adapters.venue import CcxtVenue
from eventsrc import Engine, Event, Trace
from eventsrc.clock import WallClock
from eventsrc.state import TERMINAL

SYMBOL = "BTC/USDT"
AMOUNT = Decimal("0.001")


def say(**fact: Any) -> None:
    sys.stdout.write(json.dumps(fact) + "\n")
    sys.stdout.flush()


def digest(trace: Trace, seq: int) -> str:
    """What identifies event ``seq`` as recorded: its stored record, envelope and payload."""
    [record] = trace.records(seq, seq + 1)
    seq_, ts, kind, payload = record
    data = b"%d:%d:%d:" % (seq_, ts, kind) + bytes(payload)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class RemoteTruth:
    def __init__(self, url: str) -> None:
        self.url = url

    def truth(self) -> ServerTruth:
        return fetch_truth(self.url, timeout=30)


def cid(k: int) -> str:
    return f"crash-{k:04d}"


class Intents:
    """Intent k, by k % 5: a market buy; a limit buy at half the price (it rests); cancel
    intent k-1's order; a market sell; a limit sell at twice the price (it rests)."""

    def __init__(self, n: int, url: str) -> None:
        self.n = n
        self.url = url
        self.finished = asyncio.Event()

    def on_event(self, engine: Engine, event: Event) -> None:
        assert event.seq is not None
        say(ack=event.seq, digest=digest(engine.trace, event.seq))

    async def run(self, engine: Engine) -> None:
        """Run by the engine once its start-up sync is done (watchers started)."""
        from tests.test_server import engine_equals_truth

        try:
            try:
                engine_equals_truth(engine.state, RemoteTruth(self.url))
                say(synced=engine.state.seq, equal=True, why="")
            except AssertionError as exc:
                say(synced=engine.state.seq, equal=False, why=str(exc)[:2000])
            for k in range(self.n):
                await self.intent(engine, k)
                say(intent=k)
            await engine.sync()  # the balance as the last orders left it (watchers poll)
            say(done=True)
        except Exception as exc:
            say(error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.finished.set()

    async def intent(self, engine: Engine, k: int) -> None:
        kind = k % 5
        if kind == 2:
            order = engine.state.order(cid(k - 1))
            if order is not None and order.order_id and order.status not in TERMINAL:
                await engine.cancel_order(order.order_id, SYMBOL, waitfor=1.0)
            return
        price = engine.state.last_price.get(SYMBOL) or Decimal(50_000)
        if kind in (0, 3):
            side = "buy" if kind == 0 else "sell"
            await engine.create_order(
                SYMBOL, side, AMOUNT, type="market", waitfor=1.0, client_order_id=cid(k)
            )
        else:
            side, at = ("buy", price / 2) if kind == 1 else ("sell", price * 2)
            await engine.create_order(SYMBOL, side, AMOUNT, at, waitfor=0.2, client_order_id=cid(k))


async def main(path: Path, url: str, n: int) -> None:
    strategy = Intents(n, url)
    venue = CcxtVenue(binance_client(url, timeout_ms=5_000))
    async with Engine.open(
        path,
        venue,
        universe=[SYMBOL],
        main_currency="USDT",
        clock=WallClock(),
        durability="sync",
        strategy=strategy,
        lookback=3600.0,
    ):
        await strategy.finished.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
