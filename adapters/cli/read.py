"""The read-only commands: tail, replay, verify, stats (they work on a trace a live writer
holds, too)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs

from adapters.cli.common import count
from eventsrc import (
    Codec,
    Event,
    State,
    Trace,
    TraceError,
    replay_from_trace,
    state_hash,
    verify,
)


def _print_events(events: Sequence[Event], as_json: bool) -> None:
    codec = Codec()
    for event in events:
        if as_json:
            data = codec.to_builtins(event)
            data.pop("raw", None)
            print(json.dumps(data, default=str))
        else:
            print(_one_line(event))


def _one_line(event: Event) -> str:
    skip = {"seq", "ts", "raw"}
    values = ((a.name, getattr(event, a.name)) for a in attrs.fields(type(event)))
    body = " ".join(f"{k}={v}" for k, v in values if k not in skip and v not in _EMPTY)
    return f"{event.seq:>8} {event.kind:<20} {body}"


_EMPTY: tuple[object, ...] = (None, "", b"", ())


def cmd_tail(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        events = trace.tail(args.n, kinds=args.kind or None, asset=args.asset)
        _print_events(events, args.json)
    return 0


def _summary(state: State) -> dict[str, Any]:
    statuses = Counter(order.status for order in state.orders.values())
    statuses.update(order.status for order in state.requests.values())
    return {
        "seq": state.seq,
        "strategy": state.config.strategy,
        "exchange": state.config.exchange,
        "main_currency": state.main_currency,
        "margin": state.margin,
        "cash": {c: str(v.total) for c, v in sorted(state.cash.items())},
        "positions": {f"{s} {side}": str(p.contracts) for (s, side), p in state.positions.items()},
        "orders": dict(sorted(statuses.items())),
        "last_price": {s: str(p) for s, p in sorted(state.last_price.items())},
        "anomalies": len(state.anomalies),
        "state_hash": state_hash(state),
    }


def cmd_replay(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        summary = _summary(replay_from_trace(trace, until=args.until))
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>14}: {value}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        found = verify(trace)
    if args.json:
        print(json.dumps({"ok": found.ok, **attrs.asdict(found)}))
        return 0 if found.ok else 1
    print(
        f"checked {found.chunks_checked} sealed chunks, {found.seqs_checked} seqs, "
        f"{found.segments_scanned} write-ahead segments and {found.checkpoints_checked} "
        f"checkpoints; {found.recoveries} recoveries recorded"
    )
    for problem in found.problems:
        print(f"problem: {problem}")
    if found.diverged_at is not None:
        where = f" (differs: {', '.join(found.differs)})" if found.differs else ""
        print(
            f"the replay diverges from the live run's checkpoint at seq {found.diverged_at}{where}"
        )
    if found.ok:
        print("the data is sound and every checkpoint agrees with a replay of the trace")
    return 0 if found.ok else 1


def cmd_stats(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        integrity = trace.check()
        names = [name for name, _ in trace.code_table("kind")]
        try:
            counts = Counter(names[code] for code in trace.column("kind").tolist())
            ts = trace.column("ts")
        except TraceError:  # a damaged column: what is wrong is listed under "problems"
            counts, ts = Counter(), None
        stats = {
            "events": len(trace),
            "sealed": trace.committed,
            "kinds": dict(counts.most_common()) if ts is not None else None,
            "first_ts": int(ts[0]) if ts is not None and len(ts) else None,
            "last_ts": int(ts[-1]) if ts is not None and len(ts) else None,
            "bytes_on_disk": sum(f.stat().st_size for f in trace.path.rglob("*") if f.is_file()),
            "recoveries": len(integrity.recoveries),
            "problems": integrity.problems,
        }
    if args.json:
        print(json.dumps(stats))
    else:
        for key, value in stats.items():
            print(f"{key:>14}: {value}")
    return 0 if integrity.ok else 1


def register(sub: Any) -> None:
    tail = sub.add_parser("tail", help="print the last events of a trace")
    tail.add_argument("trace")
    tail.add_argument("-n", type=count, default=10)
    tail.add_argument("--kind", action="append", help="only this kind (repeatable)")
    tail.add_argument("--asset", help="only this symbol")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.set_defaults(run=cmd_tail)

    replay = sub.add_parser("replay", help="fold a trace and print its final state")
    replay.add_argument("trace")
    replay.add_argument("--until", type=int, help="the last seq to fold")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(run=cmd_replay)

    check = sub.add_parser("verify", help="replay and compare with the live run's checkpoints")
    check.add_argument("trace")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=cmd_verify)

    stats = sub.add_parser(
        "stats", help="counts by kind, time span, size on disk, recoveries, integrity problems"
    )
    stats.add_argument("trace")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run=cmd_stats)
