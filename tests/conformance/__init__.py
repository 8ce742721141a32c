"""Conformance of the venue adapter with answers nobody here wrote: every recorded case of
every venue file in a fixtures directory (ccxt's static response tests; the format is in
``../shared/fixtures/ccxt/README.md``) goes through the real ccxt class, ``CcxtVenue`` and a
real trace, and is checked against ccxt's own ``expected`` output.

For each case: the exchange class the file names (``ccxt.async_support``) gets the file's
options and markets; its HTTP hook answers the recorded body (``offline.answer_with``); the
case's method is called through ``CcxtVenue`` (``ROUTES``; a method it has no route for is
reported as skipped, with why); the events, after a ``StrategyStarted`` (and the
``OrderRequested`` of a create, as the engine records it), are appended to a trace and folded
with ``replay_from_trace``. Then:

- fields: each event's normalized fields equal ``expected`` (ids, symbol, side, type, status,
  price, amount, filled, remaining, cost, average, fees summed per currency, timestamps;
  balances per currency; positions), numbers exactly (``Decimal`` of ccxt's float repr);
- raw: each observation's ``raw`` decodes to the unified dict ccxt returned to the adapter
  (captured at the ccxt method's return), ``info`` included, as JSON: the same keys and values
  by JSON's value model (tuples are lists, floats as their shortest repr), credentials masked;
  and every key of ``expected`` is in it with its value;
- state: the fold holds what ``expected`` implies: the order (status, amounts, cost, fees), the
  trade as a fill of its order, each currency's balance, each position; for a spot case with no
  balance report, the cash its fills move; and no anomaly;
- laws: folding the case's events again, then again in reverse (an older observation after a
  newer), or only in reverse, gives an equal state. Equal, not the same ``state_hash``: the
  hash also covers which event last touched each value (a position's ``seq``, an order's
  ``last_seq``), which a report folded again rightly moves; the state's equality leaves those
  out by design (``eventsrc.state``), as the project's own law checks do
  (``eventsrc.testing.check_idempotent``).

A case whose input holds params (a trailing dict) that ``CcxtVenue`` does not send gets them
merged into the params of the ccxt call the adapter makes (they choose an endpoint or a parser,
e.g. coinbase's ``method``); the outcome notes it.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import math
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import msgspec

from adapters.venue import CcxtVenue
from eventsrc import (
    BalanceObserved,
    Event,
    ManualClock,
    Observation,
    OrderAcknowledged,
    OrderObserved,
    OrderRequested,
    PositionObserved,
    State,
    StrategyStarted,
    Trace,
    TradeObserved,
    fold,
    replay_from_trace,
)
from eventsrc.testing import stamp_all
from tests.conformance.offline import answer_with, offline_exchange

__all__ = [
    "DEFAULT_FIXTURES",
    "ROUTES",
    "Case",
    "Outcome",
    "cases_in",
    "run_case",
    "run_cases",
    "venue_files",
]

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "fixtures" / "ccxt"
"""``../shared/fixtures/ccxt`` relative to the repository: the fixtures' origin."""
DEFAULT_FIXTURES = SHARED if SHARED.is_dir() else ROOT / "tests" / "fixtures" / "ccxt"
"""Where the report looks by default: the shared fixtures when the repository sits beside
them, else the repository's own copy of them (``tests/fixtures/ccxt``, what CI reads)."""

VENUE_STATUSES = ("open", "closed", "canceled", "expired", "rejected")


# -- the recorded cases -------------------------------------------------------------------------


@attrs.frozen
class Case:
    """One recorded case: a method's input, the body the venue sent, what ccxt makes of it."""

    venue: str
    """The fixture file's name (without ``.json``): a venue file's own name."""
    fixture: Mapping[str, Any] = attrs.field(repr=False, eq=False)
    method: str
    index: int
    description: str
    input: Sequence[Any]
    http_response: Any = attrs.field(repr=False)
    expected: Any = attrs.field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.venue}.{self.method}[{self.index}]"

    @property
    def params(self) -> dict[str, Any]:
        """The params the case's input ends with (none if it ends otherwise)."""
        last = self.input[-1] if self.input else None
        return dict(last) if isinstance(last, Mapping) else {}

    def arg(self, i: int) -> Any:
        """The ``i``-th positional input (None if absent or the trailing params)."""
        if i < len(self.input) and not isinstance(self.input[i], Mapping):
            return self.input[i]
        return None


def venue_files(directory: Path) -> list[Path]:
    """The venue files in ``directory``: every ``*.json`` naming an exchange and its methods."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "exchange" in data and "methods" in data:
            found.append(path)
    return found


def cases_in(path: Path) -> list[Case]:
    fixture = json.loads(path.read_text())
    return [
        Case(
            venue=path.stem,
            fixture=fixture,
            method=method,
            index=i,
            description=str(recorded.get("description", "")),
            input=list(recorded.get("input") or []),
            http_response=recorded["httpResponse"],
            expected=recorded.get("expected"),
        )
        for method, recorded_cases in fixture["methods"].items()
        for i, recorded in enumerate(recorded_cases)
    ]


# -- routing a case through CcxtVenue -------------------------------------------------------------

Route = Callable[[CcxtVenue, Case], Awaitable[list[Event]]]


def number(value: Any) -> Decimal | None:
    """An expected number as an exact Decimal (a float through its shortest repr)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def order_request(case: Case) -> OrderRequested:
    """The request behind a recorded create (``symbol, type, side, amount[, price]``); its
    client order id is the one the venue echoed, if it did (a venue echoes what it is sent)."""
    symbol, order_type, side, amount = (case.arg(i) for i in range(4))
    expected = case.expected if isinstance(case.expected, Mapping) else {}
    cid = expected.get("clientOrderId") or f"conformance-{case.venue}-{case.index}"
    amount_sent = number(amount)
    assert amount_sent is not None, f"{case.name}: the input has no amount"
    return OrderRequested(
        str(cid),
        str(side),
        str(order_type),
        amount_sent,
        price=number(case.arg(4)),
        asset=str(symbol),
        source="conformance",
    )


async def _create_order(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.create_order(order_request(case))


async def _fetch_order(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.fetch_order(case.arg(1), order_id=str(case.arg(0)))


async def _fetch_open_orders(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.fetch_open_orders(case.arg(0))


async def _fetch_closed_orders(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.fetch_closed_orders(case.arg(0), case.arg(1))


async def _fetch_my_trades(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.fetch_my_trades(case.arg(0), case.arg(1))


async def _fetch_balance(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.fetch_balance()


async def _fetch_positions(venue: CcxtVenue, case: Case) -> list[Event]:
    return await venue.fetch_positions(case.arg(0) or [])


ROUTES: dict[str, Route] = {
    "createOrder": _create_order,
    "fetchOrder": _fetch_order,
    "fetchOpenOrder": _fetch_order,
    "fetchClosedOrder": _fetch_order,
    "fetchOpenOrders": _fetch_open_orders,
    "fetchClosedOrders": _fetch_closed_orders,
    "fetchMyTrades": _fetch_my_trades,
    "fetchBalance": _fetch_balance,
    "fetchPositions": _fetch_positions,
}
"""Each recorded ccxt method, as the ``CcxtVenue`` call that makes it (a single order, open or
closed, is ``fetch_order``: the adapter's one way to look an order up)."""

_UNIFIED = (
    "create_order",
    "fetch_order",
    "fetch_open_order",
    "fetch_closed_order",
    "fetch_open_orders",
    "fetch_closed_orders",
    "fetch_orders",
    "fetch_my_trades",
    "fetch_order_trades",
    "fetch_balance",
    "fetch_positions",
)


def capture_answers(ex: Any, params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Wrap the exchange's unified methods so that what each outermost call (the one the
    adapter makes, not ccxt's calls to itself) returns is listed, as a copy; ``params`` are
    merged under the params it is called with."""
    answers: list[tuple[str, Any]] = []
    depth = [0]

    def wrapped(name: str, method: Any) -> Any:
        signature = inspect.signature(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            outer = depth[0] == 0
            if outer and params and "params" in signature.parameters:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                bound.arguments["params"] = {**params, **(bound.arguments["params"] or {})}
                args, kwargs = bound.args, bound.kwargs
            depth[0] += 1
            try:
                result = await method(*args, **kwargs)
            finally:
                depth[0] -= 1
            if outer:
                answers.append((name, copy.deepcopy(result)))
            return result

        return call

    for name in _UNIFIED:
        method = getattr(ex, name, None)
        if method is not None:
            setattr(ex, name, wrapped(name, method))
    return answers


# -- outcomes ----------------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    """What became of one case: its events (as recorded, with seqs), the state folded from
    the trace, and every difference from what ccxt's ``expected`` implies."""

    case: Case
    events: tuple[Event, ...] = ()
    answers: tuple[Any, ...] = ()
    """What ccxt returned to the adapter (the unified dicts)."""
    state: State | None = None
    differences: tuple[str, ...] = ()
    skipped: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.skipped is None and not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "venue": self.case.venue,
            "exchange": self.case.fixture["exchange"],
            "method": self.case.method,
            "case": self.case.index,
            "description": self.case.description,
            "events": len(self.events),
            "kinds": [e.kind for e in self.events],
            "state_equal": self.ok,
            "skipped": self.skipped,
            "differences": list(self.differences),
            "notes": list(self.notes),
        }


def run_cases(cases: Sequence[Case], directory: Path | None = None) -> list[Outcome]:
    """Every case's outcome (traces in ``directory``, else a temporary one)."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
            return run_cases(cases, Path(tmp))
    return [asyncio.run(run_case(case, directory / f"{case.name}.trace")) for case in cases]


async def run_case(case: Case, trace_path: Path) -> Outcome:
    """One case through the real ccxt class, CcxtVenue, a trace and the fold (see the
    module docstring)."""
    route = ROUTES.get(case.method)
    if route is None:
        return Outcome(case, skipped=f"CcxtVenue has no call that makes ccxt's {case.method}")
    ex = offline_exchange(case.fixture)
    body = case.http_response
    requests = answer_with(ex, lambda method, url: copy.deepcopy(body))
    answers = capture_answers(ex, case.params)
    notes = [f"params {sorted(case.params)} merged into the ccxt call"] if case.params else []
    venue = CcxtVenue(ex, page_limit=case.arg(2) if isinstance(case.arg(2), int) else None)
    try:
        events = await route(venue, case)
    except Exception as exc:
        return Outcome(case, differences=(f"the call failed: {exc!r}",), notes=tuple(notes))
    finally:
        await ex.close()
    notes.append(
        f"{len(requests)} request(s): {', '.join(m + ' ' + u.split('?')[0] for m, u in requests)}"
    )
    answered = [a for _, a in answers]
    started = strategy_started(case)
    before: list[Event] = [started]
    if case.method == "createOrder":
        before.append(order_request(case))
    recorded, state, law_problems = _record_and_fold(trace_path, before, events)
    differences = [
        *check_fields(case, recorded, answered),
        *check_raw(case, recorded, answered),
        *check_state(case, state),
        *law_problems,
    ]
    return Outcome(
        case,
        events=tuple(recorded),
        answers=tuple(answered),
        state=state,
        differences=tuple(differences),
        notes=tuple(notes),
    )


def strategy_started(case: Case) -> StrategyStarted:
    """A strategy trading every market of the venue file: a margin one for cases about
    contracts (positions, or orders and trades of a contract market), else a spot one, whose
    cash every balance report updates in full."""
    markets = case.fixture["markets"]
    symbols = [str(s) for s in _symbols_of(case.expected)] or [str(case.arg(0) or "")]
    contract = case.method == "fetchPositions" or any(_is_contract(markets, s) for s in symbols)
    if case.method == "fetchBalance":
        contract = False
    first = markets.get(symbols[0]) or next(iter(markets.values()))
    main = first.get("settle") or first.get("quote") or "USDT"
    universe = tuple(s for s in markets if contract or not _is_contract(markets, s))
    return StrategyStarted(
        str(main),
        universe,
        margin=contract,
        exchange=str(case.fixture["exchange"]),
        source="conformance",
    )


def _is_contract(markets: Mapping[str, Any], symbol: str) -> bool:
    return bool((markets.get(symbol) or {}).get("contract")) or ":" in symbol


def _symbols_of(expected: Any) -> list[str]:
    items = expected if isinstance(expected, list) else [expected]
    return [i["symbol"] for i in items if isinstance(i, Mapping) and i.get("symbol")]


def _unseq(state: State) -> State:
    """The state, the seq it has folded up to aside (events folded again are new events)."""
    return msgspec.structs.replace(state, seq=-1)


def _record_and_fold(
    path: Path, before: list[Event], events: list[Event]
) -> tuple[list[Event], State, list[str]]:
    """Append ``before + events`` to a new trace and replay it; then the laws: the same
    events again, then reversed (older after newer), change nothing; nor does folding them
    in reverse from the start."""
    problems: list[str] = []
    clock = ManualClock(start_ns=1_700_000_000_000_000_000, step_ns=1_000)
    with Trace.open(path, "w", durability="none", clock=clock) as trace:
        recorded = [attrs.evolve(e, seq=trace.append(e)) for e in before + events]
        first = len(trace) - 1
        for e in [*events, *reversed(events)]:
            trace.append(e)
        state = replay_from_trace(trace, until=first)
        again = replay_from_trace(trace)
    if _unseq(again) != _unseq(state):
        problems.append("law: folding the same events again (and reversed) changed the state")
    backwards = fold(stamp_all([*before, *reversed(events)]))
    if _unseq(backwards) != _unseq(state):
        problems.append("law: folding the events in reverse order gave another state")
    if fold(stamp_all(before + events)) != state:
        problems.append("replay of the trace differs from the fold of the events")
    return recorded[len(before) :], state, problems


# -- checks --------------------------------------------------------------------------------------

ORDER_FIELDS = {
    "id": "order_id",
    "clientOrderId": "client_order_id",
    "symbol": "asset",
    "timestamp": "exchange_ts",
    "side": "side",
    "type": "order_type",
    "status": "status",
    "price": "price",
    "amount": "amount",
    "filled": "filled",
    "remaining": "remaining",
    "cost": "cost",
    "average": "average",
    "reduceOnly": "reduce_only",
    "lastTradeTimestamp": "last_trade_timestamp",
    "lastUpdateTimestamp": "last_update_timestamp",
}
ACK_FIELDS = {"id": "order_id", "clientOrderId": "client_order_id", "symbol": "asset"}
TRADE_FIELDS = {
    "id": "trade_id",
    "order": "order_id",
    "clientOrderId": "client_order_id",
    "symbol": "asset",
    "timestamp": "exchange_ts",
    "side": "side",
    "price": "price",
    "amount": "amount",
    "cost": "cost",
    "takerOrMaker": "taker_or_maker",
}
POSITION_FIELDS = {
    "symbol": "asset",
    "timestamp": "exchange_ts",
    "side": "side",
    "contracts": "contracts",
    "contractSize": "contract_size",
    "entryPrice": "entry_price",
    "markPrice": "mark_price",
    "notional": "notional",
    "leverage": "leverage",
    "liquidationPrice": "liquidation_price",
    "collateral": "collateral",
    "initialMargin": "initial_margin",
    "maintenanceMargin": "maintenance_margin",
    "unrealizedPnl": "unrealized_pnl",
    "marginMode": "margin_mode",
    "hedged": "hedged",
}
FIELDS: dict[type[Event], dict[str, str]] = {
    OrderAcknowledged: ACK_FIELDS,
    OrderObserved: ORDER_FIELDS,
    TradeObserved: TRADE_FIELDS,
    PositionObserved: POSITION_FIELDS,
}


def same(expected: Any, got: Any) -> bool:
    """Whether an event's value is ccxt's: numbers exactly, ids as strings."""
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, bool) or isinstance(got, bool):
        return bool(expected == got)
    if isinstance(expected, int | float):
        if isinstance(expected, float) and not math.isfinite(expected):
            return False
        return number(expected) == (got if isinstance(got, Decimal) else number(got))
    return str(expected) == str(got)


def expected_fees(item: Mapping[str, Any]) -> dict[str | None, Decimal] | None:
    """ccxt's fees of a structure, summed per currency (``fees`` if it lists any, else
    ``fee``); None when it says nothing of fees."""
    listed = [f for f in item.get("fees") or [] if isinstance(f, Mapping)]
    if not listed and isinstance(item.get("fee"), Mapping):
        listed = [item["fee"]]
    totals: dict[str | None, Decimal] = {}
    for fee in listed:
        cost = number(fee.get("cost"))
        if cost is not None:
            currency = fee.get("currency")
            totals[currency] = totals.get(currency, Decimal(0)) + cost
    return totals or None


def _observations(events: Sequence[Event]) -> list[Observation]:
    """The events that stand for one of ccxt's unified dicts (not the adapter's own flat
    positions for symbols the venue did not report)."""
    return [e for e in events if isinstance(e, Observation) and e.raw]


def check_fields(case: Case, events: Sequence[Event], answers: Sequence[Any]) -> list[str]:
    problems: list[str] = []
    expected = case.expected
    observations = _observations(events)
    if case.method == "createOrder":
        pairs: list[tuple[Any, Observation]] = [(expected, o) for o in observations]
        acks = [e for e in events if isinstance(e, OrderAcknowledged)]
        if len(acks) != 1:
            problems.append(f"{len(acks)} acknowledgements of one create")
        states = [e for e in events if isinstance(e, OrderObserved)]
        full = _carries_state(expected)
        if full != bool(states):
            problems.append(
                f"the create answer {'says' if full else 'does not say'} the order's state,"
                f" and {len(states)} OrderObserved were recorded"
            )
    elif isinstance(expected, list):
        if len(observations) < len(expected):
            return [f"{len(observations)} events for {len(expected)} expected items"]
        pairs = list(zip(expected, observations, strict=False))
    else:
        if len(observations) != 1:
            return [f"{len(observations)} events for one expected structure"]
        pairs = [(expected, observations[0])]
    for want, event in pairs:
        if isinstance(event, BalanceObserved):
            problems += _balance_fields(want, event)
            continue
        fields = FIELDS.get(type(event), {})
        for key, attribute in fields.items():
            if key in want and not same(want[key], getattr(event, attribute)):
                problems.append(
                    f"{event.kind}.{attribute} = {getattr(event, attribute)!r},"
                    f" expected {key} {want[key]!r}"
                )
        if isinstance(event, OrderObserved | TradeObserved) and ("fee" in want or "fees" in want):
            fees = expected_fees(want)
            got = None if event.fees is None else {f.currency: f.cost for f in event.fees}
            if got != fees:
                problems.append(f"{event.kind}.fees = {got}, expected {fees}")
    return problems


def _carries_state(order: Any) -> bool:
    return (
        isinstance(order, Mapping)
        and order.get("status") in VENUE_STATUSES
        and order.get("amount") is not None
        and order.get("filled") is not None
    )


def _balances(expected: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(c): v
        for c, v in expected.items()
        if isinstance(v, Mapping) and c not in ("info", "free", "used", "total", "debt")
    }


def _balance_fields(expected: Mapping[str, Any], event: BalanceObserved) -> list[str]:
    problems = []
    got = {b.currency: b for b in event.balances}
    if "timestamp" in expected and not same(expected["timestamp"], event.exchange_ts):
        problems.append(f"balance exchange_ts {event.exchange_ts}, expected {expected}")
    for currency, want in _balances(expected).items():
        balance = got.get(currency)
        if balance is None:
            problems.append(f"balance of {currency} missing")
            continue
        problems.extend(
            f"balance {currency}.{key} = {getattr(balance, key)}, expected {want[key]!r}"
            for key in ("free", "used", "total")
            if key in want and not same(want[key], getattr(balance, key))
        )
    return problems


def jsonable(value: Any) -> Any:
    """``value`` by JSON's value model (what a JSON round trip gives back)."""
    return json.loads(json.dumps(value, default=repr))


def within(expected: Any, got: Any, path: str = "") -> list[str]:
    """Where ``got`` lacks what ``expected`` holds (numbers exactly)."""
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return [f"{path or '.'}: {got!r}, expected a dict"]
        return [p for k, v in expected.items() for p in within(v, got.get(k), f"{path}.{k}")]
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) < len(expected):
            return [f"{path}: {got!r}, expected a list of {len(expected)}"]
        return [p for i, v in enumerate(expected) for p in within(v, got[i], f"{path}[{i}]")]
    return [] if same(expected, got) else [f"{path}: {got!r}, expected {expected!r}"]


def check_raw(case: Case, events: Sequence[Event], answers: Sequence[Any]) -> list[str]:
    """Each observation's raw is the unified dict ccxt returned, verbatim (see the module
    docstring), and holds ``expected``."""
    if len(answers) != 1:
        return [f"the adapter made {len(answers)} ccxt calls for one recorded answer"]
    (answer,) = answers
    items = answer if isinstance(answer, list) else [answer]
    observations = _observations(events)
    if case.method == "createOrder":
        items = [answer] * len(observations)
    if len(items) != len(observations):
        return [f"{len(observations)} observations of {len(items)} unified structures"]
    problems = []
    for i, (item, event) in enumerate(zip(items, observations, strict=True)):
        raw = event.info()
        if raw != jsonable(item):
            problems.append(f"{event.kind} raw is not ccxt's unified dict (item {i})")
        if "info" not in raw:
            problems.append(f"{event.kind} raw has no venue payload (info)")
    wanted = case.expected if isinstance(case.expected, list) else [case.expected]
    for i, want in enumerate(wanted):
        if i < len(observations):
            problems += [
                f"raw{p}" for p in within(want, observations[i].info(), f"[{i}]" if i else "")
            ]
    return problems


def check_state(case: Case, state: State) -> list[str]:
    """The folded state holds what ``expected`` implies."""
    problems = [f"anomaly at {a.seq}: {a.kind}: {a.reason}" for a in state.anomalies.values()]
    items = case.expected if isinstance(case.expected, list) else [case.expected]
    moved: dict[str, Decimal] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if case.method == "fetchBalance":
            problems += _balance_state(item, state)
        elif case.method == "fetchPositions":
            problems += _position_state(item, state)
        elif case.method == "fetchMyTrades":
            problems += _trade_state(item, state, moved)
        else:
            problems += _order_state(item, state, moved)
    if not state.margin and case.method not in ("fetchBalance", "fetchPositions"):
        for currency, delta in moved.items():
            cash = state.cash.get(currency)
            shown = Decimal(0) if cash is None else cash.total
            if shown != delta:
                problems.append(f"cash {currency} {shown}, the fills move {delta}")
    return problems


def _status(item: Mapping[str, Any]) -> str:
    status = item.get("status")
    if status is None:
        return "acknowledged"  # a create answered with ids only
    filled, amount = number(item.get("filled")) or 0, number(item.get("amount"))
    if status == "open" and filled > 0 and (amount is None or filled < amount):
        return "partially_filled"
    return str(status)


def _spot_effect(
    symbol: str,
    side: Any,
    amount: Decimal | None,
    cost: Decimal | None,
    fees: Mapping[str | None, Decimal] | None,
    moved: dict[str, Decimal],
) -> None:
    if ":" in symbol or "/" not in symbol or side not in ("buy", "sell"):
        return
    if not amount or cost is None:
        return
    base, quote = symbol.split("/", 1)
    sign = 1 if side == "buy" else -1
    moved[base] = moved.get(base, Decimal(0)) + sign * amount
    moved[quote] = moved.get(quote, Decimal(0)) - sign * cost
    for currency, fee in (fees or {}).items():
        if currency is not None:
            moved[currency] = moved.get(currency, Decimal(0)) - fee


def _order_state(item: Mapping[str, Any], state: State, moved: dict[str, Decimal]) -> list[str]:
    order = state.orders.get(str(item.get("id")))
    if order is None:
        return [f"no order {item.get('id')} in the state"]
    problems = []
    if order.status != _status(item):
        problems.append(f"order {order.order_id} status {order.status}, expected {_status(item)}")
    for key, value in (
        ("side", order.side),
        ("type", order.order_type),
        ("price", order.price),
        ("amount", order.amount),
        ("filled", order.filled),
        ("cost", order.cost),
        ("clientOrderId", order.client_order_id),
    ):
        if item.get(key) is not None and not same(item[key], value):
            problems.append(f"order {order.order_id} {key} {value!r}, expected {item[key]!r}")
    fees = expected_fees(item)
    for currency, fee in (fees or {}).items():
        if currency is not None and order.fee(currency) != fee:
            problems.append(f"order {order.order_id} fee {order.fee(currency)} {currency}: {fee}")
    if fees is None and "fee" not in item and "fees" not in item:
        fees = dict(order.fees)  # expected leaves the fee out: the cash moves by the venue's
    filled = number(item.get("filled"))
    if filled and sum((f.amount for f in order.fills), Decimal(0)) != filled:
        problems.append(f"order {order.order_id} fills do not add up to {filled}")
    _spot_effect(order.symbol, item.get("side"), filled, number(item.get("cost")), fees, moved)
    return problems


def _trade_state(item: Mapping[str, Any], state: State, moved: dict[str, Decimal]) -> list[str]:
    order = state.orders.get(str(item.get("order")))
    if order is None:
        return [f"no order {item.get('order')} for trade {item.get('id')} in the state"]
    fill = next((f for f in order.fills if f.trade_id == str(item.get("id"))), None)
    if fill is None:
        return [f"trade {item.get('id')} is not a fill of order {order.order_id}"]
    problems = []
    for key, value in (("amount", fill.amount), ("cost", fill.cost), ("side", fill.side)):
        if item.get(key) is not None and not same(item[key], value):
            problems.append(f"fill {fill.trade_id} {key} {value!r}, expected {item[key]!r}")
    fees = expected_fees(item) or {}
    for currency, fee in fees.items():
        if currency is not None and fill.fee(currency) != fee:
            problems.append(f"fill {fill.trade_id} fee {fill.fee(currency)} {currency}: {fee}")
    _spot_effect(order.symbol, item.get("side"), number(item.get("amount")), fill.cost, fees, moved)
    return problems


def _balance_state(item: Mapping[str, Any], state: State) -> list[str]:
    problems = []
    for currency, want in _balances(item).items():
        cash = state.cash.get(currency)
        if cash is None:
            problems.append(f"no cash {currency} in the state")
            continue
        problems.extend(
            f"cash {currency}.{key} {getattr(cash, key)}, expected {want[key]!r}"
            for key in ("total", "free", "used")
            if want.get(key) is not None and not same(want[key], getattr(cash, key))
        )
    return problems


def _position_state(item: Mapping[str, Any], state: State) -> list[str]:
    contracts = number(item.get("contracts")) or Decimal(0)
    key = (str(item.get("symbol")), str(item.get("side")))
    position = state.positions.get(key)
    if not contracts:
        return [] if position is None else [f"a flat position {key} is held in the state"]
    if position is None:
        return [f"no position {key} in the state"]
    problems = []
    for name, value in (
        ("contracts", position.contracts),
        ("entryPrice", position.entry_price),
        ("markPrice", position.mark_price),
        ("leverage", position.leverage),
        ("liquidationPrice", position.liquidation_price),
        ("unrealizedPnl", position.unrealized_pnl),
        ("marginMode", position.margin_mode),
    ):
        if item.get(name) is not None and not same(item[name], value):
            problems.append(f"position {key} {name} {value!r}, expected {item[name]!r}")
    return problems
