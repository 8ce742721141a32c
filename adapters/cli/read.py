"""The read-only commands: replay, verify, tail, show, stats, export, plot.

They open a trace read-only (``Trace.open(path, "r")``), so each works on a trace a live
writer holds, and none ever changes one. What they compute are read models from
``projections``; this module parses arguments and prints. Every time printed is ISO-8601 UTC,
every amount a plain decimal string; ``--json`` prints the same as JSON (decimals as strings).
A ``--since``/``--until`` bound is a seq, or a time compared with when events were recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import difflib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from adapters.cli.common import CommandError, count, seconds, seq_or_time
from adapters.cli.text import dump_json, event_line, money, table, value_text
from eventsrc import (
    REGISTRY,
    Balance,
    Event,
    Observation,
    Trace,
    TraceError,
    UnknownEvent,
    replay_from_trace,
    verify,
)
from eventsrc.trace.store import export_body, open_body, sink_for
from projections.equity import history
from projections.export import (
    FORMATS,
    columns,
    event_row,
    events_at,
    iso_ms,
    iso_ns,
    write_csv,
    write_jsonl,
    write_parquet,
)
from projections.extra import MissingExtra, require
from projections.lifecycles import lifecycles
from projections.lineage import lineage
from projections.plots import plot_history, plot_latency
from projections.selection import Bound, Selection, kind_name
from projections.stats import trace_stats
from projections.summary import Summary, summarize

# ---------------------------------------------------------------------------------------------
# Shared


def _emitter(as_json: bool) -> Callable[[Event], None]:
    """What prints an event: its one line, or (``as_json``) its row as one line of JSON."""
    if as_json:
        return lambda event: dump_json(event_row(event), lines=True)
    return lambda event: print(event_line(event))


def _print_events(events: Sequence[Event], as_json: bool) -> None:
    """Print events as ``tail`` does (the demo prints its tail with this too)."""
    emit = _emitter(as_json)
    for event in events:
        emit(event)


def _unknown(what: str, name: str, known: Sequence[str], also: Sequence[str] = ()) -> CommandError:
    close = difflib.get_close_matches(name, sorted({*known, *also}), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    listing = ", ".join(sorted(known)) if known else "none"
    return CommandError(f"no {what} {name!r} in this trace{hint}; its {what}s: {listing}")


def _names(trace: Trace, args: argparse.Namespace) -> dict[str, frozenset[Any] | None]:
    """The kinds, assets and sources asked for, each known to the trace (a kind may also be one
    eventsrc knows that the trace has not recorded yet); CommandError for any other."""
    kinds = sorted({name for name, _version in trace.code_table("kind")})
    registered = sorted(info.name for info in REGISTRY.kinds())
    for kind in args.kind or ():
        if kind not in kinds and kind not in registered:
            raise _unknown("kind", kind, kinds, registered)
    assets = [a for a in trace.code_table("asset") if a is not None]
    for asset in args.asset or ():
        if asset not in assets:
            raise _unknown("asset", asset, assets)
    sources = [s for s in trace.code_table("source") if s]
    for source in args.source or ():
        if source not in sources:
            raise _unknown("source", source, sources)
    return {
        "kinds": frozenset(args.kind) if args.kind else None,
        "assets": frozenset(args.asset) if args.asset else None,
        "sources": frozenset(args.source) if args.source else None,
    }


def _check_seq(trace: Trace, seq: int, what: str) -> None:
    n = len(trace)
    if seq >= n:
        where = f"its seqs are 0..{n - 1}" if n else "it holds no event"
        raise CommandError(f"{what} {seq} is past the end of the trace: {where}")


def _selection(trace: Trace, args: argparse.Namespace) -> Selection:
    names = _names(trace, args)
    for bound, what in ((args.since, "--since"), (args.until, "--until")):
        if isinstance(bound, int):
            _check_seq(trace, bound, what)
    if (
        args.since is not None
        and args.until is not None
        and type(args.since) is type(args.until)
        and args.since > args.until
    ):
        raise CommandError(
            f"--since {_bound_text(args.since)} is after --until {_bound_text(args.until)}"
        )
    return Selection(**names, since=args.since, until=args.until)


def _bound_text(bound: Bound) -> str:
    if isinstance(bound, dt.datetime):
        return bound.isoformat().replace("+00:00", "Z")
    return str(bound)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", action="append", metavar="KIND", help="only events of this kind (repeatable)"
    )
    parser.add_argument(
        "--asset", action="append", metavar="SYMBOL", help="only events of this asset (repeatable)"
    )
    parser.add_argument(
        "--source",
        action="append",
        metavar="SOURCE",
        help="only events from this source, e.g. watch_orders (repeatable)",
    )
    parser.add_argument(
        "--since",
        type=seq_or_time,
        metavar="SEQ|TIME",
        help="from this seq, or from this time (ISO-8601; UTC unless it says otherwise)",
    )
    parser.add_argument(
        "--until", type=seq_or_time, metavar="SEQ|TIME", help="up to this seq or time"
    )


@contextlib.contextmanager
def _output(path: str, binary: bool) -> Iterator[IO[Any]]:
    """A file that appears at ``path`` whole or not at all: written beside it under a
    temporary name, moved into place when everything is written."""
    target = Path(path)
    if target.is_dir():
        raise CommandError(f"cannot write {target}: it is a directory")
    try:
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".partial"
        )
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb" if binary else "w", newline=None if binary else "") as out:
            yield out
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 is for the temporary name only
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _extra(module: str, purpose: str) -> None:
    try:
        require(module, purpose)
    except MissingExtra as exc:
        raise CommandError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# tail


def cmd_tail(args: argparse.Namespace) -> int:
    if args.follow and args.until is not None:
        raise CommandError("tail -f follows new events as they come: it takes no --until")
    emit = _emitter(args.json)
    with Trace.open(args.trace, "r") as trace:
        selection = _selection(trace, args)
        for event in _last(trace, selection, args.n):
            emit(event)
        sys.stdout.flush()
        if args.follow:
            return _follow(trace, selection, emit, args)
    return 0


def _last(trace: Trace, selection: Selection, n: int) -> Iterator[Event]:
    if n == 0:
        return iter(())
    if selection.everything:
        return iter(trace.tail(n))
    seqs = selection.seqs(trace)
    return events_at(trace, seqs[max(0, len(seqs) - n) :])


def _follow(
    trace: Trace, selection: Selection, emit: Callable[[Event], None], args: argparse.Namespace
) -> int:
    """Print the selected events a writer appends from now on, polling every ``--poll``
    seconds, until Ctrl-C (exit 130), or, for tests, ``--max-events`` events or
    ``--max-seconds`` seconds (exit 0)."""
    next_seq = len(trace)
    shown = 0
    deadline = None if args.max_seconds is None else time.monotonic() + args.max_seconds
    while True:
        trace.refresh()
        end = len(trace)
        for event in trace.iter(next_seq, end):
            if selection(event):
                emit(event)
                shown += 1
                if args.max_events is not None and shown >= args.max_events:
                    sys.stdout.flush()
                    return 0
        next_seq = end
        sys.stdout.flush()
        if deadline is not None and time.monotonic() >= deadline:
            return 0
        time.sleep(args.poll)


# ---------------------------------------------------------------------------------------------
# replay


def cmd_replay(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        if isinstance(args.until, int):
            _check_seq(trace, args.until, "--until")
        state = replay_from_trace(trace, until=args.until)
        if isinstance(args.until, dt.datetime) and state.seq < 0:
            first = iso_ns(trace[0].ts) if len(trace) else None
            since = f"the first was recorded at {first}" if first else "the trace is empty"
            raise CommandError(
                f"no event was recorded at or before {_bound_text(args.until)}: {since}"
            )
        summary = summarize(state, fills=args.fills)
        events = len(trace)
        path = str(trace.path)
    if args.json:
        dump_json({"trace": path, "events": events, **_summary_json(summary)})
    else:
        _print_summary(summary, path, events)
    return 0


def _summary_json(s: Summary) -> dict[str, Any]:
    return {
        "seq": s.seq,
        "state_hash": s.state_hash,
        "strategy": s.strategy,
        "exchange": s.exchange,
        "main_currency": s.main_currency,
        "margin": s.margin,
        "universe": list(s.universe),
        "running": s.running,
        "cash": {c.currency: {"free": c.free, "used": c.used, "total": c.total} for c in s.cash},
        "positions": [attrs.asdict(p) for p in s.positions],
        "open_orders": [attrs.asdict(o) for o in s.open_orders],
        "orders_by_status": s.orders_by_status,
        "fills": s.fills,
        "last_fills": [
            {
                **attrs.asdict(f, recurse=False),
                "time": iso_ms(f.exchange_ts),
                "fees": {currency or "": cost for currency, cost in f.fees},
            }
            for f in s.last_fills
        ],
        "last_price": s.last_price,
        "equity": {
            "currency": s.valuation.currency,
            "value": s.valuation.equity,
            "unvalued": list(s.valuation.unvalued),
        },
        "anomalies": [attrs.asdict(a) for a in s.anomalies],
        "watchers": [attrs.asdict(w) for w in s.watchers],
    }


def _fees_text(fees: tuple[tuple[str, Any], ...]) -> str:
    return "+".join(f"{money(cost)} {currency or '?'}" for currency, cost in fees) or "0"


def _print_summary(s: Summary, path: str, events: int) -> None:
    out: list[str] = []
    upto = f"0..{s.seq}" if s.seq >= 0 else "none"
    out.append(f"trace {path}: replayed events {upto} of {events}")
    if s.main_currency is not None:
        mode = "margin" if s.margin else "spot"
        who = f"strategy {s.strategy or '-'} on {s.exchange or '-'}"
        status = "running" if s.running else "stopped"
        out.append(
            f"{who}, {mode}, main currency {s.main_currency}, universe "
            f"{' '.join(s.universe) or '-'} ({status} at seq {s.seq})"
        )
    out.append(f"state hash {s.state_hash}")
    v = s.valuation
    if v.equity is not None:
        unvalued = f" (without {', '.join(v.unvalued)}: no price)" if v.unvalued else ""
        out.append(f"equity {money(v.equity)} {v.currency} at the last prices{unvalued}")
    out.append("")
    if s.cash:
        out.append("cash")
        rows = [[c.currency, money(c.free), money(c.used), money(c.total)] for c in s.cash]
        out += table(rows, ["currency", "free", "used", "total"])
    else:
        out.append("cash: none")
    if s.positions:
        out.append("positions")
        rows = [
            [
                p.symbol,
                p.side,
                money(p.contracts),
                money(p.entry_price),
                money(p.mark_price),
                money(p.unrealized_pnl),
                money(p.leverage),
            ]
            for p in s.positions
        ]
        out += table(rows, ["symbol", "side", "contracts", "entry", "mark", "unrealized", "lev"])
    else:
        out.append("positions: none")
    if s.open_orders:
        out.append(f"open orders ({len(s.open_orders)})")
        rows = [
            [
                o.order_id or "-",
                o.client_order_id or "-",
                o.symbol,
                o.side or "-",
                o.order_type or "-",
                money(o.price),
                money(o.amount),
                money(o.filled),
                o.status,
                str(o.last_seq),
            ]
            for o in s.open_orders
        ]
        out += table(
            rows,
            [
                *("order id", "client id", "symbol", "side", "type"),
                *("price", "amount", "filled", "status", "last seq"),
            ],
        )
    else:
        out.append("open orders: none")
    statuses = ", ".join(f"{k} {n}" for k, n in s.orders_by_status.items())
    out.append(f"orders by status: {statuses or 'none'}")
    if s.last_fills:
        shown = len(s.last_fills)
        out.append(
            f"fills: {s.fills}, the last {shown}" if shown < s.fills else f"fills: {s.fills}"
        )
        rows = [
            [
                iso_ms(f.exchange_ts) or "-",
                str(f.seq),
                f.symbol,
                f.side or "-",
                money(f.amount),
                money(f.price),
                _fees_text(f.fees),
                f.order_id,
                "emulated" if f.emulated else (f.trade_id or "-"),
            ]
            for f in s.last_fills
        ]
        out += table(
            rows, ["time", "seq", "symbol", "side", "amount", "price", "fee", "order", "trade"]
        )
    else:
        out.append(f"fills: {s.fills}")
    if s.last_price:
        prices = ", ".join(f"{sym} {money(p)}" for sym, p in s.last_price.items())
        out.append(f"last prices: {prices}")
    if s.watchers:
        out.append("watchers")
        rows = [
            [w.name, w.status, str(w.since_seq), str(w.errors), str(w.gaps), w.last_error or "-"]
            for w in s.watchers
        ]
        out += table(rows, ["watcher", "status", "since seq", "errors", "gaps", "last error"])
    if s.anomalies:
        out.append(f"anomalies ({len(s.anomalies)})")
        out += [f"  seq {a.seq} ({a.kind}): {a.reason}" for a in s.anomalies]
    else:
        out.append("anomalies: none")
    print("\n".join(out))


# ---------------------------------------------------------------------------------------------
# verify


def cmd_verify(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        found = verify(trace)
        events, path = len(trace), str(trace.path)
    if args.json:
        dump_json(
            {
                "ok": found.ok,
                "trace": path,
                "events": events,
                "chunks_checked": found.chunks_checked,
                "seqs_checked": found.seqs_checked,
                "segments_scanned": found.segments_scanned,
                "checkpoints_checked": found.checkpoints_checked,
                "recoveries": found.recoveries,
                "problems": list(found.problems),
                "diverged_at": found.diverged_at,
                "differs": list(found.differs),
            }
        )
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


# ---------------------------------------------------------------------------------------------
# show


def cmd_show(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        _check_seq(trace, args.seq, "seq")
        event = trace[args.seq]
        found = lineage(trace, event, limit=args.effects)
    raw = event.info() if isinstance(event, Observation) else None
    if args.json:
        dump_json(
            {
                "event": event_row(event),
                "raw": raw,
                "cause": None if found.cause is None else event_row(found.cause),
                "effects": [event_row(e) for e in found.effects],
                "more_effects": found.more_effects,
            }
        )
        return 0
    out = [f"event {event.seq}: {kind_name(event)}"]
    envelope = [
        ("recorded", f"{iso_ns(event.ts)} (ts {event.ts})"),
        (
            "exchange time",
            "-"
            if event.exchange_ts is None
            else f"{iso_ms(event.exchange_ts)} ({event.exchange_ts})",
        ),
        ("asset", event.asset or "-"),
        ("source", event.source or "-"),
        ("cause", "-" if event.cause is None else str(event.cause)),
    ]
    fields = list(_show_fields(event))
    width = max(len(k) for k, _ in [*envelope, *fields])
    out += [f"  {k:<{width}}  {v}" for k, v in envelope]
    if fields:
        out.append("fields")
        out += [f"  {k:<{width}}  {v}" for k, v in fields]
    if isinstance(event, Observation):
        if raw is None:
            out.append("raw venue payload: none kept")
        else:
            out.append("raw venue payload")
            out += [
                "  " + line for line in json.dumps(raw, indent=2, ensure_ascii=False).split("\n")
            ]
    if event.cause is not None:
        out.append("caused by")
        out.append(
            "  " + event_line(found.cause)
            if found.cause is not None
            else f"  {event.cause} (not found in this trace)"
        )
    if found.effects:
        total = len(found.effects) + found.more_effects
        out.append(f"caused ({total})")
        out += ["  " + event_line(e) for e in found.effects]
        if found.more_effects:
            out.append(f"  ... and {found.more_effects} more (--effects N shows more)")
    print("\n".join(out))
    return 0


_ENVELOPE_FIELDS = frozenset({"seq", "ts", "exchange_ts", "asset", "source", "cause", "raw"})


def _show_fields(event: Event) -> Iterator[tuple[str, str]]:
    if isinstance(event, UnknownEvent):
        yield "kind version", str(event.kind_version)
        data = event.data if isinstance(event.data, dict) else {"data": event.data}
        for key, value in data.items():
            if key not in _ENVELOPE_FIELDS:
                yield str(key), value_text(str(key), value, short=False)
        return
    for a in attrs.fields(type(event)):
        if a.name in _ENVELOPE_FIELDS:
            continue
        value = getattr(event, a.name)
        if isinstance(value, tuple) and value and all(isinstance(b, Balance) for b in value):
            for b in value:
                yield (
                    f"{a.name}[{b.currency}]",
                    f"total {money(b.total)}  free {money(b.free)}  used {money(b.used)}",
                )
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                yield f"{a.name}[{key}]", value_text(str(key), item)
        else:
            yield a.name, "-" if value is None else value_text(a.name, value, short=False)


# ---------------------------------------------------------------------------------------------
# stats


def cmd_stats(args: argparse.Namespace) -> int:
    with Trace.open(args.trace, "r") as trace:
        stats = trace_stats(trace)
    if args.json:
        first, last = iso_ns(stats.first_ts), iso_ns(stats.last_ts)
        dump_json(
            {
                "ok": stats.ok,
                "trace": str(stats.path),
                "events": stats.events,
                "committed": stats.committed,
                "pending": stats.pending,
                "kinds": stats.by_kind,
                "assets": stats.by_asset,
                "without_asset": stats.without_asset,
                "sources": stats.by_source,
                "first_ts": stats.first_ts,
                "last_ts": stats.last_ts,
                "first_time": first,
                "last_time": last,
                "span_seconds": stats.span_seconds,
                "events_per_second": stats.events_per_second,
                "bytes_on_disk": stats.bytes_on_disk,
                "recoveries": len(stats.recoveries),
                "recovered": [attrs.asdict(r) for r in stats.recoveries],
                "pending_tail": stats.pending_tail,
                "problems": list(stats.problems),
            }
        )
        return 0 if stats.ok else 1
    first, last = (iso_ns(t, "milliseconds") for t in (stats.first_ts, stats.last_ts))
    out = [f"trace      {stats.path}"]
    out.append(
        f"events     {stats.events} ({stats.committed} sealed in the body, {stats.pending} "
        "pending in the write-ahead tail)"
    )
    if first is not None and stats.span_seconds is not None:
        rate = stats.events_per_second
        per = f", {rate:.1f} events/s" if rate is not None else ""
        out.append(f"span       {first} .. {last} ({stats.span_seconds:.3f} s{per})")
    else:
        out.append("span       -")
    out.append(f"on disk    {stats.bytes_on_disk} bytes ({_size(stats.bytes_on_disk)})")
    out.append(f"recoveries {len(stats.recoveries)}")
    out += [
        f"  seq {r.seq}: {r.dropped_bytes} bytes of {r.segment} at byte {r.offset} set aside in "
        f"{r.set_aside} ({'torn' if r.torn else 'damaged'}: {r.reason})"
        for r in stats.recoveries
    ]
    if stats.pending_tail:
        out.append(f"unreadable tail (the next writer sets it aside): {stats.pending_tail}")
    out.append(f"problems   {len(stats.problems) or 'none'}")
    out += [f"  {p}" for p in stats.problems]
    for what, counts, extra in (
        ("kind", stats.by_kind, None),
        ("asset", stats.by_asset, stats.without_asset),
        ("source", stats.by_source, None),
    ):
        title = f"by {what}"
        if counts is None:
            out.append(f"{title}: unreadable (see the problems)")
            continue
        rows = [[str(name) or "(none)", str(n)] for name, n in counts.items()]
        if extra:
            rows.append(["(no asset)", str(extra)])
        out.append(title)
        out += table(rows, [what, "events"])
    print("\n".join(out))
    return 0 if stats.ok else 1


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    return f"{n} B"


# ---------------------------------------------------------------------------------------------
# export


def cmd_export(args: argparse.Namespace) -> int:
    if args.to is not None:
        return _export_to_store(args)
    if args.format is None:
        raise CommandError("name a format (--format) or a store to copy the trace to (--to URL)")
    if args.format == "parquet" and args.output is None:
        raise CommandError("parquet is a binary format: name the file to write with -o FILE")
    with Trace.open(args.trace, "r") as trace:
        if args.format == "parquet":
            _extra("pyarrow.parquet", "export --format parquet")
        selection = _selection(trace, args)
        seqs = selection.seqs(trace)
        header = columns(trace, selection.kinds, raw=args.raw)
        if args.output is None:
            out: IO[str] = sys.stdout
            _write(args.format, trace, seqs, out, header, args.raw)
            return 0
        with _output(args.output, binary=args.format == "parquet") as out:
            n = _write(args.format, trace, seqs, out, header, args.raw)
    print(f"wrote {n} events to {args.output} ({args.format})")
    return 0


def _write(fmt: str, trace: Trace, seqs: Any, out: IO[Any], header: list[str], raw: bool) -> int:
    if fmt == "parquet":
        return write_parquet(trace, seqs, out, header, raw)
    events = events_at(trace, seqs)
    if fmt == "csv":
        return write_csv(events, out, header, raw)
    return write_jsonl(events, out, raw)


def _storage_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in args.storage_option or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--storage-option takes KEY=VALUE, not {item!r}")
        try:  # numbers, booleans, objects as JSON (retries=0); anything else a string
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    if args.endpoint_url:
        options["endpoint_url"] = args.endpoint_url
    return options


def _export_to_store(args: argparse.Namespace) -> int:
    """``export TRACE --to URL``: copy the trace's sealed body into a Zarr store."""
    if args.format is not None or args.output is not None or args.raw:
        raise CommandError("--to copies the whole sealed trace: it takes no --format, -o or --raw")
    if any(getattr(args, f, None) for f in ("kind", "asset", "source", "since", "until")):
        raise CommandError("--to copies the whole sealed trace: it takes no filters")
    source, unsealed = open_body(args.trace)
    committed = int(source.marker()["committed"])
    if unsealed is not None and not args.sealed_only:
        raise CommandError(
            f"trace {args.trace} holds events that are not sealed yet ({unsealed}): a "
            f"writer has it open, or was stopped before closing it (closing seals every "
            f"event); --sealed-only copies its {committed} sealed events without them"
        )
    options = _storage_options(args)
    try:
        n = export_body(source, sink_for(args.to, options))
    except (TraceError, CommandError):
        raise
    except Exception as exc:  # the store's own errors: unreachable endpoint, no bucket, ...
        raise CommandError(f"cannot export to {args.to}: {type(exc).__name__}: {exc}") from None
    left = " (its unsealed events left out)" if unsealed is not None else ""
    print(f"copied {n} sealed events to {args.to}{left}")
    return 0


# ---------------------------------------------------------------------------------------------
# plot


def cmd_plot(args: argparse.Namespace) -> int:
    if args.latency:
        return _plot_latency(args)
    target = args.output or f"{Path(args.trace).resolve().name or 'trace'}.png"
    with Trace.open(args.trace, "r") as trace:
        _extra("matplotlib", "plot")
        found = history(trace)
        title = f"{trace.path.name}: equity at the last prices, and fills"
    with _output(target, binary=True) as out:
        assets = plot_history(found, out, title)
    final = found.equity[-1].equity if found.equity else None
    if args.json:
        dump_json(
            {
                "path": target,
                "equity_points": len(found.equity),
                "final_equity": final,
                "currency": found.main_currency,
                "fills": len(found.fills),
                "assets": assets,
            }
        )
    else:
        print(
            f"wrote {target}: equity at {len(found.equity)} points"
            + (f" (last {money(final)} {found.main_currency})" if final is not None else "")
            + f", {len(found.fills)} fills"
            + (f" on {', '.join(assets)}" if assets else "")
        )
    return 0


def _plot_latency(args: argparse.Namespace) -> int:
    """``plot --latency``: how fast the venue answered each step of the orders' lives."""
    target = args.output or f"{Path(args.trace).resolve().name or 'trace'}-latency.png"
    with Trace.open(args.trace, "r") as trace:
        _extra("matplotlib", "plot")
        found = lifecycles(trace)
        title = f"{trace.path.name}: latency of each order step"
    with _output(target, binary=True) as out:
        counts = plot_latency(found, out, title)
    if args.json:
        dump_json({"path": target, "orders": len(found), "steps": counts})
    else:
        steps = ", ".join(f"{step} {n}" for step, n in counts.items())
        print(f"wrote {target}: latency of {len(found)} orders ({steps})")
    return 0


# ---------------------------------------------------------------------------------------------
# The parsers


def register(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="fold a trace and print its final state",
        description="Fold a trace with the same reducer as the live run and print the state: "
        "cash, positions, open orders, the last fills, anomalies, seq and state hash.",
    )
    replay.add_argument("trace")
    replay.add_argument(
        "--until",
        type=seq_or_time,
        metavar="SEQ|TIME",
        help="fold up to this seq, or the events recorded up to this time (ISO-8601; UTC "
        "unless it says otherwise)",
    )
    replay.add_argument(
        "--fills", type=count, default=10, metavar="N", help="how many of the last fills (10)"
    )
    replay.add_argument("--json", action="store_true", help="print JSON")
    replay.set_defaults(run=cmd_replay)

    check = sub.add_parser(
        "verify",
        help="check the stored data and every checkpoint against a replay (exit 1 if not sound)",
    )
    check.add_argument("trace")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(run=cmd_verify)

    tail = sub.add_parser(
        "tail",
        help="print the last events of a trace, or follow it (-f)",
        description="One line per event: seq, time recorded (UTC), kind, asset, source and "
        "the event's key fields.",
    )
    tail.add_argument("trace")
    tail.add_argument("-n", type=count, default=10, metavar="N", help="how many (10)")
    _add_filters(tail)
    tail.add_argument(
        "-f", "--follow", action="store_true", help="then print new events as a writer appends"
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument(
        "--poll", type=seconds, default=0.25, metavar="SECONDS", help=argparse.SUPPRESS
    )
    tail.add_argument("--max-events", type=count, help=argparse.SUPPRESS)  # tests: stop after
    tail.add_argument("--max-seconds", type=seconds, help=argparse.SUPPRESS)  # tests: stop after
    tail.set_defaults(run=cmd_tail)

    show = sub.add_parser(
        "show", help="one event in full: its fields, raw venue payload, cause and effects"
    )
    show.add_argument("trace")
    show.add_argument("seq", type=count, metavar="SEQ")
    show.add_argument(
        "--effects", type=count, default=20, metavar="N", help="list at most N effects (20)"
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=cmd_show)

    stats = sub.add_parser(
        "stats",
        help="counts by kind/asset/source, time span, rate, size on disk, sealed vs pending, "
        "recoveries, integrity problems (exit 1 if any)",
    )
    stats.add_argument("trace")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=cmd_stats)

    export = sub.add_parser(
        "export",
        help="events as rows: CSV, JSON lines or Parquet",
        description="Events as rows: the envelope columns and each event's fields. Money is "
        "exact: plain decimal strings in CSV and JSON lines, decimal128 in Parquet.",
    )
    export.add_argument("trace")
    export.add_argument("--format", choices=FORMATS)
    export.add_argument(
        "-o", "--output", metavar="FILE", help="write here (default: standard output)"
    )
    _add_filters(export)
    export.add_argument("--raw", action="store_true", help="with the raw venue payloads")
    store = export.add_argument_group(
        "copy to a Zarr store",
        "--to URL copies the sealed trace (its Zarr body) into a Zarr 3 store, which "
        "Trace.open_store reads: a directory or file://, a .zip or zip://PATH, memory://, "
        "s3://BUCKET/PREFIX (with the s3fs package; credentials as boto reads them)",
    )
    store.add_argument("--to", metavar="URL", help="copy the sealed trace here")
    store.add_argument("--endpoint-url", metavar="URL", help="an S3-compatible endpoint")
    store.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="an fsspec option of the target's file system, the value as JSON or a string "
        "(repeatable)",
    )
    store.add_argument(
        "--sealed-only",
        action="store_true",
        help="copy the sealed events of a trace that also holds unsealed ones",
    )
    export.set_defaults(run=cmd_export)

    plot = sub.add_parser("plot", help="PNG of the equity curve and fills over price")
    plot.add_argument("trace")
    plot.add_argument("-o", "--output", metavar="FILE.png", help="where (default: TRACE.png)")
    plot.add_argument("--json", action="store_true", help="print what was drawn as JSON")
    plot.add_argument(
        "--latency",
        action="store_true",
        help="a histogram of the venue's latency per order step instead",
    )
    plot.set_defaults(run=cmd_plot)
