"""The process test_disk_faults.py's crash test kills: an engine trading on the simulated
exchange (durability "sync") whose trace's disk fails (ENOSPC with a torn write, injected as
in the tests), stays failed a while, then heals.

Usage: python disk_child.py TRACE
Prints, one line each: ``ack SEQ TS KIND PAYLOAD_HEX STATE_HASH`` for every event the engine
folds (each on disk first: durability "sync"), with the state's hash after it; ``degraded``
once the engine says it is; ``waited TORN`` after 20 s (virtual) of it (TORN: 1 if a write
was cut short, leaving a torn frame); ``resumed`` once it records again. The parent kills
it (and its committer) with SIGKILL whenever it likes.
"""

from __future__ import annotations

import asyncio
import errno
import sys
from pathlib import Path

import pytest

from adapters.venue import CcxtVenue
from eventsrc import Engine, Event, state_hash
from tests.test_disk_faults import SPOT, Disk, Trader, sim


class Telling(Trader):
    def on_event(self, engine: Engine, event: Event) -> None:
        super().on_event(engine, event)
        assert event.seq is not None
        ts, kind, payload = self.folded[event.seq]
        line = f"ack {event.seq} {ts} {kind} {payload.hex()} {state_hash(engine.state)}"
        print(line, flush=True)


async def main(path: Path) -> None:
    disk = Disk(pytest.MonkeyPatch(), path)
    ex = sim()
    clock = ex.clock
    trader = Telling()
    async with Engine.open(
        path,
        CcxtVenue(ex),
        universe=SPOT,
        main_currency="USDT",
        clock=clock,
        durability="sync",
        strategy=trader,
        ids="disk-child",
    ) as engine:
        while sum(a is not None for _, _, a in trader.answers) < 2:
            await clock.sleep(0.5)
        disk.refuse(errno.ENOSPC)
        while engine.degraded is None:
            await clock.sleep(0.5)
        print("degraded", flush=True)
        await clock.sleep(20.0)
        print(f"waited {int(disk.torn)}", flush=True)  # (whether a write was cut short)
        disk.heal()
        while engine.degraded is not None:
            await clock.sleep(0.5)
        print("resumed", flush=True)
        while True:  # until killed
            await clock.sleep(1.0)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
