"""The commands that run the engine: ``demo`` (paper and live come next).

``demo`` trades the sample strategy (``adapters.strategies.Ladder``) live through ``Engine`` and
``CcxtVenue`` on the embedded simulated exchange, in virtual time (an hour of market in a few
seconds), with watchers; then it prints what happened and verifies the trace by replaying it.
The simulated venue is kept next to the trace (``PATH.venue``), so a second run on the same
trace continues the first: same orders, same balances, its clock moved on.

If the trace's disk fills up or turns read-only, the run goes on degraded (the engine places
no order, its watchers keep watching, it retries the trace every few seconds): a warning line
says so, and another when recording resumes. If the trace takes no events for
``--disk-grace`` seconds (of the run's time), or the run ends while it takes none, the demo
stops with one clear line (exit status 2); every event the trace acknowledged is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import pickle
import sys
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import tqdm

from adapters.cli.common import CommandError, count, seconds, trace_alert
from adapters.sim import Faults, SimExchange, VirtualClock
from adapters.strategies import Ladder
from adapters.venue import CcxtVenue
from eventsrc import Engine, State, Trace, replay_from_trace, state_hash, verify
from projections.pnl import results

SPOT = {"BTC/USDT": Decimal("0.002"), "ETH/USDT": Decimal("0.05")}
MARGIN = {"BTC/USDT:USDT": Decimal("0.002")}
PROFILES = {
    "none": Faults(),
    "mild": Faults(timeout=0.01, timeout_after=0.01, rate_limit=0.01, drop_stream=0.01),
    "harsh": Faults(
        timeout=0.05,
        timeout_after=0.05,
        rate_limit=0.05,
        unavailable=0.03,
        drop_stream=0.05,
        duplicate=0.1,
        reorder=0.1,
        stale=0.05,
    ),
}
"""Fault profiles for ``--faults``: what the simulated venue does wrong, and how often."""
MAX_SECONDS = 30 * 86_400


def venue_file(path: Path) -> Path:
    return path.with_name(path.name + ".venue")


def cmd_demo(args: argparse.Namespace) -> int:
    path = Path(args.trace)
    kept = venue_file(path)
    if not 0 < args.seconds <= MAX_SECONDS:  # (NaN is neither)
        raise CommandError(f"--seconds must be more than 0 and at most {MAX_SECONDS} (30 days)")
    if path.exists() and not kept.exists():
        raise CommandError(
            f"{path} exists but was not recorded by the demo (no {kept.name} next to it): "
            "give another --trace"
        )
    markets = MARGIN if args.margin else SPOT
    ex = SimExchange(
        seed=args.seed,
        faults=PROFILES[args.faults],
        clock=VirtualClock(faithful=True),
        latency=0.02,
    )
    continuing = path.exists()
    if continuing:
        try:
            ex.resume(kept)
        except (ValueError, EOFError, pickle.UnpicklingError, AttributeError) as exc:
            raise CommandError(
                f"{kept} cannot be read back ({exc}): give another --trace"
            ) from None
    before = 0
    if continuing:
        with Trace.open(path, "r") as trace:
            before = len(trace)
    if not args.json:
        print(
            f"{'continuing' if continuing else 'recording'} {path}: the Ladder strategy on "
            f"{', '.join(markets)} ({'margin' if args.margin else 'spot'}), simulated exchange "
            f"seed {args.seed}, faults {args.faults!r}, {args.seconds:g} s of virtual time",
            flush=True,
        )
    interrupted = False
    ran: list[bool] = []
    try:
        with _logging(logging.WARNING if args.verbose else logging.CRITICAL + 1):
            live = asyncio.run(_run(path, ex, markets, args, ran))
    except KeyboardInterrupt:
        interrupted = True
        live = None
    finally:
        if ran:  # whatever happened since: the venue goes on from here next time
            ex.save(kept)
    with Trace.open(path, "r") as trace:
        replayed = replay_from_trace(trace)
        checked = verify(trace)
        recorded = len(trace) - before
        summary = _summary(path, replayed, checked.ok, recorded, live, interrupted, args)
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    if interrupted:
        return 130
    return 0 if summary["verified"] and summary["replay_equals_live"] else 1


async def _run(
    path: Path, ex: SimExchange, markets: dict[str, Decimal], args: Any, ran: list[bool]
) -> State:
    """The run; ``ran`` is set once the engine holds the trace (a run that never got it, say
    because another demo writes it, must not save its copy of the venue over that one's)."""
    strategy = Ladder(markets)
    clock = ex.clock
    async with Engine.open(
        path,
        CcxtVenue(ex),
        universe=list(markets),
        main_currency="USDT",
        margin=args.margin,
        clock=clock,
        strategy=strategy,
        ids=f"demo:{args.seed}",
        alert=trace_alert,
    ) as engine:
        ran.append(True)
        start = clock.now_ms()
        end = start + round(args.seconds * 1000)
        with tqdm.tqdm(
            total=round(args.seconds),
            unit="s",
            desc="virtual time",
            file=sys.stderr,
            disable=None,  # off when stderr is not a terminal
            leave=False,
        ) as bar:
            failing_since: int | None = None
            while (now := clock.now_ms()) < end:
                if engine.failure is None:
                    failing_since = None
                elif failing_since is None:
                    failing_since = now
                elif now - failing_since >= args.disk_grace * 1000:
                    raise CommandError(
                        f"{engine.degraded}, and it took no event for {args.disk_grace:g} s: "
                        "the demo stops (every event the trace acknowledged is kept)"
                    )
                await clock.sleep(min(10.0, (end - now) / 1000))
                bar.update(round((clock.now_ms() - start) / 1000) - bar.n)
                bar.set_postfix(events=len(engine.trace), refresh=False)
        if engine.failure is not None:
            raise CommandError(
                f"{engine.degraded} at the end of the run: the demo stops (every event the "
                "trace acknowledged is kept)"
            )
        await engine.sync()  # the summary shows the venue's last word
    return engine.state


class _AboveTheBar(logging.Handler):
    """Log lines printed above the progress bar, not through it."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.tqdm.write(self.format(record), file=sys.stderr)


@contextlib.contextmanager
def _logging(level: int) -> Iterator[None]:
    """The engine's and the watchers' log lines at ``level`` and up, above the progress bar
    (everything they say is in the trace anyway: ``eventsrc tail --kind watcher_error``)."""
    root = logging.getLogger()
    handler = _AboveTheBar(level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    was = root.level
    root.addHandler(handler)
    root.setLevel(min(level, was) if was else level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(was)


def _summary(
    path: Path,
    state: State,
    verified: bool,
    recorded: int,
    live: State | None,
    interrupted: bool,
    args: Any,
) -> dict[str, Any]:
    statuses = Counter(o.status for o in state.orders.values())
    statuses.update(o.status for o in state.requests.values())
    markets = results(state)
    fees: Counter[str] = Counter()
    for market in markets:
        for currency, fee in market.fees.items():
            fees[currency] += fee  # type: ignore[assignment]
    first_fill = min(
        (f.seq for o in state.orders.values() for f in o.fills if f.amount), default=None
    )
    return {
        "trace": str(path),
        "interrupted": interrupted,
        "events_recorded": recorded,
        "events": state.seq + 1,
        "orders": dict(sorted(statuses.items())),
        "fills": sum(m.fills for m in markets),
        "markets": [
            {
                "symbol": m.symbol,
                "fills": m.fills,
                "real_trades": m.real,
                "bought": str(m.bought),
                "sold": str(m.sold),
                "fees": {c: str(v) for c, v in m.fees.items()},
                "last_price": None if m.last_price is None else str(m.last_price),
                "pnl": None if m.pnl is None else str(m.pnl.quantize(Decimal("0.01"))),
            }
            for m in markets
        ],
        "fees": {c: str(v) for c, v in sorted(fees.items())},
        "cash": {c: str(v.total) for c, v in sorted(state.cash.items()) if v.total},
        "watchers": {
            "count": len(state.watchers),
            "errors": sum(h.errors for h in state.watchers.values()),
            "gaps": sum(h.gaps for h in state.watchers.values()),
        },
        "anomalies": [
            {"seq": seq, "kind": a.kind, "reason": a.reason}
            for seq, a in sorted(state.anomalies.items())
        ],
        "verified": verified,
        "replay_equals_live": live is None or state_hash(live) == state_hash(state),
        "state_hash": state_hash(state),
        "first_fill_seq": first_fill,
        "next": _next_commands(path, first_fill, args),
    }


def _next_commands(path: Path, first_fill: int | None, args: Any) -> list[str]:
    where = str(path)
    again = f"eventsrc demo --trace {where} --seed {args.seed}" + (
        " --margin" if args.margin else ""
    )
    found = [
        f"eventsrc replay {where}",
        f"eventsrc tail {where} -n 20",
        f"eventsrc tail {where} --kind trade_observed",
        f"eventsrc verify {where}",
        f"eventsrc stats {where}",
        f"{again}   # continue this run",
    ]
    if first_fill is not None:
        found.insert(2, f"eventsrc show {where} {first_fill}   # the first fill, and its cause")
    return found


def _print_summary(s: dict[str, Any]) -> None:
    w = print
    w(("interrupted: " if s["interrupted"] else "") + f"{s['trace']}")
    w(f"  events      {s['events_recorded']} recorded this run, {s['events']} in the trace")
    orders = ", ".join(f"{n} {status}" for status, n in s["orders"].items()) or "none"
    w(f"  orders      {orders}")
    w(f"  fills       {s['fills']}")
    for m in s["markets"]:
        fees = ", ".join(f"{v} {c}" for c, v in m["fees"].items()) or "none"
        pnl = "unknown" if m["pnl"] is None else m["pnl"]
        w(
            f"    {m['symbol']:<16} {m['fills']:>4} fills ({m['real_trades']} trades)  "
            f"bought {m['bought']}, sold {m['sold']}  fees {fees}  PnL {pnl}"
        )
    cash = ", ".join(f"{v} {c}" for c, v in s["cash"].items())
    w(f"  cash        {cash}")
    ws = s["watchers"]
    w(f"  watchers    {ws['count']}: {ws['errors']} errors, {ws['gaps']} gaps backfilled")
    anomalies = s["anomalies"]
    w(f"  anomalies   {len(anomalies)}")
    for a in anomalies[:5]:
        w(f"    seq {a['seq']} {a['kind']}: {a['reason']}")
    if s["verified"] and s["replay_equals_live"]:
        w("  verified    the trace is sound, and replaying it gives the live run's state")
    else:
        w("  verified    NO: run `eventsrc verify` on the trace to see what differs")
    w("next, try:")
    for line in s["next"]:
        w(f"  {line}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    return value


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="trade the sample strategy live on the embedded simulated exchange",
        description=__doc__,
    )
    demo.add_argument("--trace", default="demo-trace", help="trace directory (continued)")
    demo.add_argument("--seconds", type=_seconds, default=3600.0, help="virtual seconds to run")
    demo.add_argument("--seed", type=count, default=7, help="the simulated market's seed")
    demo.add_argument("--margin", action="store_true", help="trade a perpetual on margin")
    demo.add_argument("--faults", choices=sorted(PROFILES), default="none")
    demo.add_argument(
        "--disk-grace",
        type=seconds,
        default=60.0,
        help="stop if the trace cannot be written for this many seconds (default 60)",
    )
    demo.add_argument("--json", action="store_true", help="the summary as one JSON object")
    demo.add_argument("-v", "--verbose", action="store_true", help="print warnings as they come")
    demo.set_defaults(run=cmd_demo)
