"""The commands that trade through a real exchange: ``paper`` (its public prices, simulated
fills) and ``live`` (a real account, the exchange's sandbox unless the config says otherwise).

``paper`` runs the sample strategy (``adapters.strategies.Ladder``) on a real exchange's public
market data through ccxt, with no keys: a task per market reads its ticker (``watch_ticker``
where ccxt.pro streams it, else ``fetch_ticker`` every ``POLL_SECONDS``) into ``LivePrices``,
and the embedded simulated exchange, built with the real exchange's markets (precision,
minimums, fees), matches the strategy's orders against those prices on the wall clock. Only
public reads are sent to the exchange. The simulated venue is kept next to the trace
(``PATH.venue``), so a second run on the same trace continues the first.

``live`` runs it on a real account through ``CcxtVenue``, as a TOML file says (see
``examples/live.toml``; ``LiveConfig``): in the exchange's sandbox (``set_sandbox_mode``)
unless the file says ``live = true``. The keys come only from the environment variables the
file names; they are set on the ccxt exchange object and nowhere else (the venue adapter masks
them in every error, payload and ccxt log line), and no message here ever holds one: a config
error never echoes a value of ``[keys]``.

Both run until ``--seconds`` pass or Ctrl-C (exit 130; the engine's ``async with`` records the
stop either way), then print demo's summary and verify the trace by replaying it. A trace
belongs to one account: each run records a ``Note`` naming its venue and mode
(``venue: binance sandbox``), and a trace recorded on another venue or in another mode is
refused rather than continued. If the trace's disk fills up or turns read-only, the run rides
it out (the engine places no order while its trace takes no events, and keeps watching): a
warning line says so, another when recording resumes. ``paper`` and ``live`` take an exchange
object and a clock (``paper_session``, ``live_session``), so tests drive the very code the
commands run with a ccxt exchange answering recorded responses, in virtual time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import pickle
import sys
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import tqdm

from adapters.cli.common import CommandError, trace_alert
from adapters.cli.config import (
    ConfigError,
    LiveConfig,
    exchange_class,
    load_config,
    read_keys,
    suggest,
)
from adapters.cli.run import _logging, _print_summary, _summary, venue_file
from adapters.sim import PricePath, RealClock, SimClock, SimExchange, linear_perpetual, spot
from adapters.strategies import Ladder
from adapters.venue import CcxtVenue
from eventsrc import (
    Clock,
    Engine,
    EngineError,
    Note,
    State,
    TickerObserved,
    Trace,
    WallClock,
    replay_from_trace,
    verify,
)
from eventsrc.venue import Market, VenueError

__all__ = [
    "LivePrices",
    "connect",
    "live",
    "live_session",
    "paper",
    "paper_session",
    "register",
]

log = logging.getLogger("adapters.cli.venues")

POLL_SECONDS = 2.0
"""Between two reads of a market's ticker when the exchange cannot stream it."""
DEFAULT_SYMBOLS = ("BTC/USDT", "BTC/USD", "BTC/USDC", "BTC/EUR")
"""``paper`` without ``--symbols`` trades the first of these the exchange lists."""
QUOTE_RUNGS = 1000
BASE_RUNGS = 100
"""The paper account starts with enough of each quote (or settlement) currency for this many
rungs of its markets, and of each base currency for this many."""
REFUSED_KEYS = frozenset(
    {"AuthenticationError", "PermissionDenied", "AccountSuspended", "AccountNotEnabled"}
)
"""Errors of the start-up sync that mean the venue will not take these keys: ``live`` stops."""
_NOTE = "venue: "


# -- exchanges ------------------------------------------------------------------------------


def _sandbox(exchange: Any) -> bool:
    """Put ``exchange`` in its sandbox; whether it has one. ccxt raises NotSupported where
    there is no test URL (and some classes a TypeError, their ``urls['test']`` being None)."""
    try:
        exchange.set_sandbox_mode(True)
    except Exception:
        return False
    return True


async def _markets(venue: CcxtVenue, symbols: Sequence[str]) -> dict[str, Market]:
    """The venue's markets; a symbol it does not list is a CommandError suggesting close
    ones."""
    markets = await venue.load_markets()
    for symbol in symbols:
        if symbol not in markets:
            raise CommandError(
                f"{venue.name} has no market {symbol!r}{suggest(symbol, sorted(markets))}"
            )
    return markets


def _one_kind(symbols: Sequence[str], markets: Mapping[str, Market], exchange: str) -> bool:
    """Whether ``symbols`` are contract markets (margin) or spot ones: never a mix (the state
    keeps spot cash per currency and margin cash in the main currency only)."""
    contract = {s for s in symbols if markets[s].contract}
    if contract and len(contract) < len(symbols):
        spot_ones = [s for s in symbols if s not in contract]
        raise CommandError(
            f"{', '.join(sorted(contract))} on {exchange} trade on margin and "
            f"{', '.join(spot_ones)} spot: trade one kind at a time"
        )
    return bool(contract)


# -- traces: one account each ---------------------------------------------------------------


def _venue_note(exchange_id: str, mode: str) -> str:
    return f"{_NOTE}{exchange_id} {mode}"


def _mark(path: Path, exchange_id: str, mode: str, clock: Clock) -> None:
    """Record in the trace at ``path`` (made if need be) the venue and mode of the session
    about to start, before the engine opens it: whatever the session records after, the
    trace says whose it is."""
    with Trace.open(path, "a", clock=clock) as trace:
        trace.append(Note(_venue_note(exchange_id, mode), source="cli"))


def _check_trace(path: Path, exchange_id: str, mode: str, command: str) -> int:
    """How many events the trace at ``path`` holds (0 if there is none); a CommandError if it
    was recorded on another venue, in another mode, or not by ``command``."""
    if not path.exists():
        return 0
    with Trace.open(path, "r") as trace:
        events = len(trace)
        if not events:
            return 0
        notes = [
            e.text
            for e in trace.tail(100, kinds=["note"])
            if isinstance(e, Note) and e.text.startswith(_NOTE)
        ]
    if not notes:
        raise CommandError(f"{path} was not recorded by eventsrc {command}: give another trace")
    recorded = notes[-1].removeprefix(_NOTE)
    wanted = _venue_note(exchange_id, mode).removeprefix(_NOTE)
    if recorded != wanted:
        raise CommandError(
            f"{path} was recorded on {recorded}, not {wanted}: a trace keeps one account's "
            "state, give another trace"
        )
    return events


# -- running --------------------------------------------------------------------------------


async def _run_for(engine: Engine, clock: Clock, seconds: float | None, what: str) -> None:
    """Let the engine trade for ``seconds`` of the clock's time (None: until cancelled)."""
    start = clock.now_ns()
    end = None if seconds is None else start + round(seconds * 1e9)
    with tqdm.tqdm(
        total=None if seconds is None else round(seconds),
        unit="s",
        desc=what,
        file=sys.stderr,
        disable=None,  # off when stderr is not a terminal
        leave=False,
    ) as bar:
        while end is None or (now := clock.now_ns()) < end:
            step = 1.0 if end is None else min(1.0, (end - now) / 1e9)
            await clock.sleep(step)
            bar.update(round((clock.now_ns() - start) / 1e9) - bar.n)
            bar.set_postfix(events=len(engine.trace), refresh=False)
    if engine.failure is None:  # (while the trace takes no events, the next start syncs)
        await engine.sync()  # the summary shows the venue's last word


def _report(
    path: Path,
    before: int,
    live: State | None,
    interrupted: bool,
    margin: bool,
    venue: str,
    again: str,
    as_json: bool,
) -> int:
    """Replay and verify the trace, print demo's summary; the exit status."""
    with Trace.open(path, "r") as trace:
        replayed = replay_from_trace(trace)
        checked = verify(trace)
        recorded = len(trace) - before
    summary = _summary(
        path,
        replayed,
        checked.ok,
        recorded,
        live,
        interrupted,
        argparse.Namespace(seed=0, margin=margin),  # read by demo's own "next" lines only
    )
    summary["venue"] = venue
    summary["next"] = [
        *(line for line in summary["next"] if not line.startswith("eventsrc demo")),
        f"{again}   # continue this run",
    ]
    if as_json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    if interrupted:
        return 130
    return 0 if summary["verified"] and summary["replay_equals_live"] else 1


# -- paper ----------------------------------------------------------------------------------


class LivePrices(PricePath):
    """The prices read from a real venue, as the simulated venue's price path.

    ``update`` sets a market's latest price; ``price(symbol, tick)`` answers, for a tick asked
    for the first time, the latest price then, and for a tick asked before, what it answered
    then, so the matching sees one price per tick whatever asks again (candles, tickers). Only
    changes are kept. Plain data: it is pickled with the simulated venue."""

    def __init__(self) -> None:
        self._latest: dict[str, Decimal] = {}
        self._asked: dict[str, int] = {}
        self._ticks: dict[str, list[int]] = {}
        self._prices: dict[str, list[Decimal]] = {}

    def update(self, symbol: str, price: Decimal) -> None:
        if not price.is_finite() or price <= 0:
            raise ValueError(f"a price of {symbol} must be > 0, not {price}")
        self._latest[symbol] = price

    def latest(self, symbol: str) -> Decimal | None:
        return self._latest.get(symbol)

    def price(self, symbol: str, tick: int) -> Decimal:
        ticks = self._ticks.setdefault(symbol, [])
        prices = self._prices.setdefault(symbol, [])
        if ticks and tick <= self._asked[symbol]:
            return prices[max(bisect_right(ticks, tick) - 1, 0)]
        latest = self._latest.get(symbol)
        if latest is None:
            raise KeyError(f"no price of {symbol} has been read yet")
        if not prices or prices[-1] != latest:
            ticks.append(tick)
            prices.append(latest)
        self._asked[symbol] = tick
        return latest


def _price_of(event: Any) -> Decimal | None:
    """A ticker's price: its last trade, else the middle of its bid and ask."""
    if not isinstance(event, TickerObserved):
        return None
    if event.last is not None and event.last.is_finite() and event.last > 0:
        return event.last
    if event.bid and event.ask and event.bid > 0 and event.ask > 0:
        return (event.bid + event.ask) / 2
    return None


async def _read_price(venue: CcxtVenue, prices: LivePrices, symbol: str, stream: bool) -> None:
    events = await (venue.watch("ticker", symbol) if stream else venue.fetch_ticker(symbol))
    for event in events:
        price = _price_of(event)
        if price is not None:
            prices.update(symbol, price)


async def _follow(
    venue: CcxtVenue, prices: LivePrices, symbol: str, clock: Clock, every: float
) -> None:
    """Keep ``symbol``'s price up to date until cancelled: streamed where the venue can (a
    read after a failure is a fetch), polled every ``every`` seconds otherwise; failures are
    logged once per run of them and retried after a growing pause."""
    can_stream = venue.can_watch("ticker")
    failures = 0
    while True:
        stream = can_stream and failures == 0
        try:
            await _read_price(venue, prices, symbol, stream)
        except VenueError as exc:
            failures += 1
            if failures == 1:
                log.warning("paper: no price of %s from %s (retrying): %s", symbol, venue.name, exc)
            await clock.sleep(min(60.0, every * 2 ** min(failures, 5)))
            continue
        if failures:
            log.warning("paper: prices of %s from %s again", symbol, venue.name)
            failures = 0
        if not stream:
            await clock.sleep(every)


def _step_of(price: Decimal, digits: int = 5) -> Decimal:
    """A price step of ``digits`` significant digits at ``price``, for a venue that gives none
    (its precision in significant digits)."""
    return Decimal(1).scaleb(math.floor(math.log10(price)) - digits + 1)


def _rung(market: Market, price: Decimal) -> Decimal:
    """What one rung trades: the smallest amount the market takes (its minimum amount, and 10%
    over its minimum cost at ``price``), else about 10 of its quote."""
    need = market.min_amount or Decimal(0)
    if market.min_cost:
        need = max(need, market.min_cost * Decimal("1.1") / price)
    if not need:
        need = Decimal(10) / price
    step = market.amount_step or Decimal("1e-8")
    return (need / step).to_integral_value(ROUND_CEILING) * step


def _sim_market(market: Market, raw: Mapping[str, Any], price: Decimal) -> dict[str, Any]:
    """The real market as the simulated exchange's: its steps, minimum amount and fees."""
    fees = {
        role: str(Decimal(repr(float(raw[role])))) if raw.get(role) is not None else "0.001"
        for role in ("maker", "taker")
    }
    tick = market.price_step or _step_of(price)
    step = market.amount_step or Decimal("1e-8")
    minimum = market.min_amount or step
    if market.contract:
        if not raw.get("swap"):
            raise CommandError(
                f"{market.symbol}: paper trades spot markets and perpetual swaps only"
            )
        if raw.get("linear") is False or market.settle != market.quote:
            raise CommandError(
                f"{market.symbol}: paper trades linear contracts only (settled in the quote)"
            )
        if market.contract_size not in (None, Decimal(1)):
            raise CommandError(
                f"{market.symbol}: paper trades contracts of size 1 only, not "
                f"{market.contract_size}"
            )
        built = linear_perpetual(
            market.symbol, tick=str(tick), step=str(step), min_amount=str(minimum), **fees
        )
    else:
        built = spot(market.symbol, tick=str(tick), step=str(step), min_amount=str(minimum), **fees)
    built["id"] = str(raw.get("id") or built["id"])
    built["limits"]["cost"]["min"] = None if market.min_cost is None else float(market.min_cost)
    return built


def _paper_account(
    markets: Mapping[str, Market], amounts: Mapping[str, Decimal], prices: LivePrices
) -> dict[str, Decimal]:
    """The paper account's starting balances (see ``QUOTE_RUNGS``)."""
    balances: dict[str, Decimal] = {}
    for symbol, amount in amounts.items():
        market = markets[symbol]
        price = prices.latest(symbol) or Decimal(0)
        cash = (amount * price * QUOTE_RUNGS).to_integral_value(ROUND_CEILING)
        currency = (market.settle or market.quote) if market.contract else market.quote
        balances[currency] = balances.get(currency, Decimal(0)) + cash
        if not market.contract:
            balances[market.base] = balances.get(market.base, Decimal(0)) + amount * BASE_RUNGS
    return balances


async def paper_session(
    path: Path,
    public: Any,
    symbols: Sequence[str],
    *,
    clock: SimClock,
    seconds: float | None,
    poll: float = POLL_SECONDS,
    announce: bool = True,
) -> tuple[State, bool]:
    """``eventsrc paper``'s run: the Ladder on ``public``'s prices (a ccxt async exchange,
    no keys needed), fills by the simulated exchange on ``clock``, recorded in ``path``; the
    live state and whether it traded on margin. The simulated venue is saved next to the
    trace whatever happens. ``symbols`` empty: the first of ``DEFAULT_SYMBOLS`` listed."""
    venue = CcxtVenue(public)
    continuing = path.exists()
    markets = await venue.load_markets()
    if not symbols:
        found = [s for s in DEFAULT_SYMBOLS if s in markets and not markets[s].contract]
        if not found:
            raise CommandError(
                f"{venue.name} lists none of {', '.join(DEFAULT_SYMBOLS)}: "
                "name the markets to trade with --symbols"
            )
        symbols = found[:1]
    await _markets(venue, symbols)
    margin = _one_kind(symbols, markets, venue.name)
    prices = LivePrices()
    for symbol in symbols:
        await _read_price(venue, prices, symbol, stream=False)
        if prices.latest(symbol) is None:
            raise CommandError(f"{venue.name} gave no price of {symbol}")
    amounts = {s: _rung(markets[s], prices.latest(s) or Decimal(1)) for s in symbols}
    sim = SimExchange(
        seed=0,
        clock=clock,
        markets={
            s: _sim_market(markets[s], public.markets[s], prices.latest(s) or Decimal(1))
            for s in symbols
        },
        balances=_paper_account(markets, amounts, prices),
        prices=prices,
        latency=0.05,
    )
    sim.id = f"{venue.name}-paper"
    kept = venue_file(path)
    if continuing and kept.exists():
        try:
            sim.resume(kept)
        except (ValueError, EOFError, pickle.UnpicklingError, AttributeError, KeyError) as exc:
            raise CommandError(
                f"{kept} cannot be read back ({exc}): give another --trace"
            ) from None
        saved = sim.venue.prices
        if isinstance(saved, LivePrices):  # its past ticks keep the prices they had
            for symbol in symbols:
                saved.update(symbol, prices.latest(symbol) or Decimal(1))
            prices = saved
        sim.venue.prices = prices
    if announce:
        rungs = ", ".join(f"{s} ({a} a rung)" for s, a in amounts.items())
        until = "Ctrl-C stops" if seconds is None else f"{seconds:g} s"
        print(
            f"{'continuing' if continuing else 'recording'} {path}: the Ladder strategy on "
            f"{rungs}, {'margin' if margin else 'spot'}, at {venue.name}'s prices, fills "
            f"simulated; {until}",
            flush=True,
        )
    first = markets[symbols[0]]
    main_currency = (first.settle or first.quote) if margin else first.quote
    _mark(path, venue.name, "paper", clock)
    # The price readers are this session's: cancelled and awaited however it ends (not a
    # TaskGroup, which would wrap the session's own errors in an ExceptionGroup).
    followers = [asyncio.ensure_future(_follow(venue, prices, s, clock, poll)) for s in symbols]
    try:
        async with Engine.open(
            path,
            CcxtVenue(sim),
            universe=list(symbols),
            main_currency=main_currency,
            margin=margin,
            clock=clock,
            strategy=Ladder(amounts),
            alert=trace_alert,
        ) as engine:
            await _run_for(engine, clock, seconds, "paper")
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        sim.save(kept)  # whatever happened: the venue goes on from here next time
    return engine.state, margin


def cmd_paper(args: argparse.Namespace) -> int:
    return paper(args)


def paper(args: argparse.Namespace, exchange: Any = None, clock: SimClock | None = None) -> int:
    """``eventsrc paper``; a test passes the public ``exchange`` (else ccxt's class for
    ``--exchange``, created and closed here) and a ``clock`` (else the wall clock)."""
    path = Path(args.trace)
    _check_seconds(args.seconds)
    exchange_id = args.exchange if exchange is None else str(exchange.id)
    cls = exchange_class(args.exchange) if exchange is None else None
    kept = venue_file(path)
    if path.exists() and not kept.exists():
        raise CommandError(
            f"{path} exists but was not recorded by eventsrc paper (no {kept.name} next to "
            "it): give another --trace"
        )
    before = _check_trace(path, exchange_id, "paper", "paper")

    async def run() -> tuple[State, bool]:
        public = cls({"enableRateLimit": True}) if cls is not None else exchange
        try:
            return await paper_session(
                path,
                public,
                args.symbols or [],
                clock=clock or RealClock(),
                seconds=args.seconds,
                announce=not args.json,
            )
        finally:
            if cls is not None:
                await public.close()

    interrupted, state, margin = False, None, False
    try:
        with _logging(logging.WARNING if args.verbose else logging.ERROR):
            state, margin = asyncio.run(run())
    except KeyboardInterrupt:
        interrupted = True
    except VenueError as exc:
        raise CommandError(f"{exchange_id}: {exc}") from None
    if not path.exists():
        return 130 if interrupted else 1
    symbols = " ".join(args.symbols or [])
    again = f"eventsrc paper --exchange {exchange_id} --trace {path}" + (
        f" --symbols {symbols}" if symbols else ""
    )
    return _report(
        path, before, state, interrupted, margin, f"{exchange_id} paper", again, args.json
    )


# -- live: the exchange ---------------------------------------------------------------------


def connect(config: LiveConfig, environ: Mapping[str, str], exchange: Any = None) -> Any:
    """The ccxt exchange ``config`` trades on: ``exchange`` (a test's) or a new one of ccxt's
    class for its id, in the sandbox unless ``live``, with the keys from ``environ`` set on it
    and nowhere else."""
    if exchange is None:
        exchange = exchange_class(config.exchange)(
            {"enableRateLimit": True, "options": dict(config.options)}
        )
    if not config.live and not _sandbox(exchange):
        raise ConfigError(
            f"{config.where('exchange')}: {config.exchange} has no sandbox: set live = true "
            "to trade real money on it"
        )
    for name, value in read_keys(config, environ).items():
        setattr(exchange, name, value)
    return exchange


def _refused_keys(trace: Trace) -> EngineError | None:
    """An error of this session's start-up sync saying the venue will not take the keys."""
    (started,) = trace.tail(1, kinds=["strategy_started"])
    return next(
        (
            e
            for e in trace.tail(100, kinds=["engine_error"])
            if isinstance(e, EngineError)
            and e.seq is not None
            and started.seq is not None
            and e.seq > started.seq
            and e.error in REFUSED_KEYS
        ),
        None,
    )


async def live_session(
    config: LiveConfig,
    exchange: Any,
    *,
    clock: Clock,
    seconds: float | None,
    announce: bool = True,
) -> State:
    """``eventsrc live``'s run: the Ladder on ``exchange`` (keys set, sandbox or not, as
    ``connect`` leaves it) as ``config`` says, recorded in its trace; the live state. The
    venue refusing the keys at start-up stops it (a CommandError)."""
    venue = CcxtVenue(exchange)
    symbols = list(config.universe)
    markets = await _markets(venue, symbols)
    margin = _one_kind(symbols, markets, venue.name)
    if margin != config.margin:
        raise ConfigError(
            f"{config.where('margin')}: {', '.join(symbols)} "
            + (
                "are contract markets: set margin = true"
                if margin
                else "are spot markets: set margin = false"
            )
        )
    if announce:
        rungs = ", ".join(f"{s} ({a} a rung)" for s, a in config.universe.items())
        where = "LIVE: REAL MONEY" if config.live else "in its sandbox"
        until = "Ctrl-C stops" if seconds is None else f"{seconds:g} s"
        print(
            f"{'continuing' if config.trace.exists() else 'recording'} {config.trace}: the "
            f"Ladder strategy on {rungs} at {venue.name}, {where}; {until}",
            flush=True,
        )
    path = config.trace
    _mark(path, venue.name, config.mode, clock)
    async with Engine.open(
        path,
        venue,
        universe=symbols,
        main_currency=config.main_currency,
        margin=config.margin,
        clock=clock,
        durability=config.durability,
        strategy=Ladder(dict(config.universe)),
        limits=config.limits,
        alert=trace_alert,
    ) as engine:
        refused = _refused_keys(engine.trace)
        if refused is not None:
            raise CommandError(
                f"{venue.name} refused the keys ({refused.error}: {refused.message})"
            )
        await _run_for(engine, clock, seconds, config.mode)
    return engine.state


def cmd_live(args: argparse.Namespace) -> int:
    return live(args)


def live(
    args: argparse.Namespace,
    exchange: Any = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """``eventsrc live``; a test passes the ``exchange`` object (else ccxt's class for the
    config's id, created and closed here), a ``clock`` (else the wall clock) and an
    ``environ`` (else the process's)."""
    _check_seconds(args.seconds)
    config = load_config(Path(args.config))
    ours = exchange is None
    exchange = connect(config, os.environ if environ is None else environ, exchange)
    before = _check_trace(config.trace, str(exchange.id), config.mode, "live")

    async def run() -> State:
        try:
            return await live_session(
                config,
                exchange,
                clock=clock or WallClock(),
                seconds=args.seconds,
                announce=not args.json,
            )
        finally:
            if ours:
                with contextlib.suppress(Exception):
                    await exchange.close()

    interrupted, state = False, None
    try:
        with _logging(logging.INFO if args.verbose else logging.WARNING):
            state = asyncio.run(run())
    except KeyboardInterrupt:
        interrupted = True
    except VenueError as exc:
        raise CommandError(f"{config.exchange}: {exc}") from None
    if not config.trace.exists():
        return 130 if interrupted else 1
    return _report(
        config.trace,
        before,
        state,
        interrupted,
        config.margin,
        f"{config.exchange} {config.mode}",
        f"eventsrc live --config {args.config}",
        args.json,
    )


# -- the command line -----------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def _check_seconds(seconds: float | None) -> None:
    if seconds is not None and not 0 < seconds < math.inf:  # (NaN is neither)
        raise CommandError("--seconds must be more than 0 (leave it out to run until Ctrl-C)")


PAPER = """Trade the sample strategy (a ladder of resting buys and sells) on a real exchange's
public prices through ccxt, with no keys: orders are filled by the embedded simulated exchange,
built with the real markets' precision, minimums and fees. Nothing but public market data is
asked of the exchange. The trace is continued by a second run (the simulated venue is kept next
to it, in TRACE.venue). Ctrl-C stops it cleanly (exit status 130)."""

LIVE = """Trade the sample strategy on a real account through ccxt, as the TOML file says (see
examples/live.toml): in the exchange's sandbox unless the file says live = true. The keys are
read only from the environment variables the file names. The trace (its path in the file,
relative to the file) is continued by a second run, and refused if it was recorded on another
venue or in another mode. Ctrl-C stops it cleanly (exit status 130); resting orders stay at the
venue, and the next run picks them up."""


def register(sub: Any) -> None:
    paper_cmd = sub.add_parser(
        "paper",
        help="trade the sample strategy on a real exchange's prices, fills simulated (no keys)",
        description=PAPER,
    )
    paper_cmd.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    paper_cmd.add_argument(
        "--symbols", nargs="+", metavar="SYMBOL", help="markets to trade (default: BTC/USDT or so)"
    )
    paper_cmd.add_argument("--seconds", type=_seconds, help="run this long (default: until Ctrl-C)")
    paper_cmd.add_argument("--trace", default="paper-trace", help="trace directory (continued)")
    paper_cmd.add_argument("--json", action="store_true", help="the summary as one JSON object")
    paper_cmd.add_argument("-v", "--verbose", action="store_true", help="print warnings")
    paper_cmd.set_defaults(run=cmd_paper)

    live_cmd = sub.add_parser(
        "live",
        help="trade the sample strategy on a real account (the exchange's sandbox by default)",
        description=LIVE,
    )
    live_cmd.add_argument("--config", required=True, help="TOML file (see examples/live.toml)")
    live_cmd.add_argument("--seconds", type=_seconds, help="run this long (default: until Ctrl-C)")
    live_cmd.add_argument("--json", action="store_true", help="the summary as one JSON object")
    live_cmd.add_argument("-v", "--verbose", action="store_true", help="print info lines too")
    live_cmd.set_defaults(run=cmd_live)
