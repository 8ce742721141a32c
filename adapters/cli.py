"""The ``eventsrc`` command line: record a demo trace, and read traces back.

Errors are one clear line on stderr (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from adapters import synthetic
from eventsrc import Codec, Event, EventsrcError, Note, Trace


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


def cmd_tail(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        events = trace.tail(args.n, kinds=args.kind or None, asset=args.asset)
        _print_events(events, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventsrc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="record a demo trace and print its tail")
    demo.add_argument("--trace", default="demo-trace", help="trace directory (appended to)")
    demo.add_argument("--events", type=int, default=2000, help="events to record")
    demo.add_argument("--tail", type=int, default=15, help="events to print at the end")
    demo.add_argument("--json", action="store_true", help="one JSON object per event")
    demo.set_defaults(run=cmd_demo)

    tail = sub.add_parser("tail", help="print the last events of a trace")
    tail.add_argument("trace")
    tail.add_argument("-n", type=int, default=10)
    tail.add_argument("--kind", action="append", help="only this kind (repeatable)")
    tail.add_argument("--asset", help="only this symbol")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.set_defaults(run=cmd_tail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except EventsrcError as exc:
        print(f"eventsrc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `eventsrc tail ... | head`
        sys.stderr.close()
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
