"""The commands that run the engine: demo (and, later, paper and live)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from adapters import synthetic
from adapters.cli.common import count
from adapters.cli.read import _print_events
from eventsrc import Note, Trace


def cmd_demo(args: argparse.Namespace) -> int:
    path = Path(args.trace)
    with Trace.open(path, "a", durability="group") as trace:
        before = len(trace)
        trace.extend(synthetic.stream(args.events, seed=before))
        trace.append(Note(f"demo run appended {args.events} events", source="eventsrc demo"))
        trace.flush()
        print(f"recorded {len(trace) - before} events in {path} ({len(trace)} in all)")
        print(f"last {args.tail}:")
        _print_events(trace.tail(args.tail), args.json)
    return 0


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="record a demo trace and print its tail")
    demo.add_argument("--trace", default="demo-trace", help="trace directory (appended to)")
    demo.add_argument("--events", type=count, default=2000, help="events to record")
    demo.add_argument("--tail", type=count, default=15, help="events to print at the end")
    demo.add_argument("--json", action="store_true", help="one JSON object per event")
    demo.set_defaults(run=cmd_demo)
