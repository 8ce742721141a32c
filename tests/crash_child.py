"""The process the crash test kills: appends forever, printing each seq acknowledged as durable.

Usage: python crash_child.py TRACE DURABILITY UNIT PAYLOAD_CHUNK
With "sync" every append is acknowledged when it returns; with "group" a batch is acknowledged
after flush() returns. Event contents are a pure function of the seq (``expected_event``), so the
parent can check every acknowledged event byte for byte.
"""

from __future__ import annotations

import sys
from decimal import Decimal

from eventsrc import Event, Note, Trace, TradeObserved, encode_raw


def expected_event(seq: int) -> Event:
    if seq % 5 == 4:
        return TradeObserved(
            trade_id=str(seq),
            order_id=str(seq // 10),
            price=Decimal(seq).scaleb(-3),
            amount=Decimal("0.001") * (seq % 17 + 1),
            asset=("BTC/USDT", "ETH/USDT")[seq % 2],
            exchange_ts=1_700_000_000_000 + seq,
            source="watch_my_trades",
            cause=seq - 1,
            raw=encode_raw({"id": seq, "pad": "p" * (seq % 400)}),
        )
    return Note(f"{seq}:" + "n" * (seq * 7 % 300), asset=(None, "SOL/USDT")[seq % 3 == 0])


def main() -> None:
    path, durability, unit, record_chunk = sys.argv[1:5]
    trace = Trace.open(
        path,
        "a",
        durability=durability,  # type: ignore[arg-type]
        unit=int(unit),
        record_chunk=int(record_chunk),
    )
    out = sys.stdout
    print(f"start {len(trace)}", file=out, flush=True)
    while True:
        if durability == "sync":
            seq = trace.append(expected_event(len(trace)))
            print(seq, file=out, flush=True)
        else:
            first = len(trace)
            for seq in range(first, first + 37):
                trace.append(expected_event(seq))
            trace.flush()
            print(first + 36, file=out, flush=True)


if __name__ == "__main__":
    main()
