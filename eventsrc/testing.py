"""Hypothesis strategies and law checks, for the project's tests and for users' own.

- ``events()`` draws any registered kind (or only the kinds given), every field drawn from its
  type hint: exact Decimals, bytes, nested attrs values, optional fields sometimes None.
- ``fill_histories()`` draws one order's life at a venue (cumulative reports after each partial
  fill, and its trades); ``shuffled(events)`` reorders and repeats them; ``event_streams()``
  draws a whole strategy's stream, with missing trades and malformed observations;
  ``venue_histories()`` draws an account's orders and balance snapshots on one timeline, with
  the cash every prefix of its reports must add up to.
- ``check_*`` are the reducer's laws as plain functions: point them at any reducer.

The project's own law tests use exactly these. Requires hypothesis
(``pip install eventsrc[testing]``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar, Union, get_args, get_origin

import attrs
from hypothesis import reject
from hypothesis import strategies as st

from eventsrc.events import (
    REGISTRY,
    Balance,
    BalanceObserved,
    Event,
    EventRegistry,
    Fee,
    LocalCheckFailed,
    OrderAcknowledged,
    OrderObserved,
    OrderRejected,
    OrderRequested,
    OrderRequestFailed,
    PositionObserved,
    StrategyStarted,
    TickerObserved,
    TradeObserved,
)

__all__ = [
    "UNIVERSE",
    "FillHistory",
    "VenueFill",
    "VenueHistory",
    "VenueOrder",
    "balances",
    "check_fold_composes",
    "check_idempotent",
    "check_order_insensitive",
    "decimals",
    "event_of",
    "event_streams",
    "events",
    "fill_histories",
    "fold_with",
    "malformed_observations",
    "positions",
    "request_outcomes",
    "shuffled",
    "stamp_all",
    "strategy_for",
    "strategy_started",
    "symbols",
    "tickers",
    "venue_histories",
]

INT64 = (-(2**63), 2**63 - 1)

symbols = st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT", "XRP/EUR"])
"""A few market symbols in ccxt form."""


def decimals(allow_infinity: bool = True) -> st.SearchStrategy[Decimal]:
    """Exact decimals as exchanges report them, plus the odd extreme (no NaN: NaN != NaN)."""
    return st.one_of(
        st.integers(0, 10**12).map(lambda i: Decimal(i).scaleb(-8)),
        st.decimals(allow_nan=False, allow_infinity=allow_infinity),
    )


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the type hint ``tp`` as event fields use them."""
    if tp is type(None) or tp is None:
        return st.none()
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(a) for a in get_args(tp)])
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin in (dict, Mapping):
        key, value = get_args(tp)
        return st.dictionaries(strategy_for(key), strategy_for(value), max_size=4)
    if tp is Decimal:
        return decimals()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(*INT64)
    if tp is float:
        return st.floats(allow_nan=False)
    if tp is str:
        return st.text(max_size=24)
    if tp is bytes:
        return st.binary(max_size=64)
    if attrs.has(tp):
        return _builds(tp)
    if tp is Any:
        return st.none() | st.integers() | st.text(max_size=8)
    raise TypeError(f"no strategy for {tp!r}")


_ENVELOPE: dict[str, st.SearchStrategy[Any]] = {
    "seq": st.none(),
    "ts": st.none(),
    "exchange_ts": st.none() | st.integers(0, 4_102_444_800_000),
    "asset": st.none() | symbols,
    "source": st.sampled_from(["", "watch_orders", "watch_ticker", "strategy", "sync"]),
    "cause": st.none() | st.integers(0, 2**40) | st.text(min_size=1, max_size=20),
}


def _builds(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {
        a.name: _ENVELOPE[a.name] if a.name in _ENVELOPE else strategy_for(hints[a.name])
        for a in attrs.fields(cls)
    }
    if hasattr(cls, "__check__"):  # values that pass each field's type may still be refused
        return st.fixed_dictionaries(fields).map(lambda kw: _construct(cls, kw))
    return st.builds(cls, **fields)


def _construct(cls: type[Any], kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except ValueError:
        reject()


def event_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    """Events of one registered kind."""
    return _builds(cls)


def events(
    kinds: Sequence[type[Event]] | None = None, registry: EventRegistry = REGISTRY
) -> st.SearchStrategy[Event]:
    """Events of any registered kind (or only of ``kinds``), before a trace stamps them."""
    classes = list(kinds) if kinds is not None else [info.cls for info in registry.kinds()]
    return st.one_of([event_of(cls) for cls in classes])


# ---------------------------------------------------------------------------------------------
# Event streams: orders with partial fills, their trades, balances, positions, tickers


@attrs.frozen
class FillHistory:
    """One order's life at the venue, as events: its cumulative reports and its trades.

    ``observations`` are the order's reports after each fill (filled and cost cumulative),
    ``trades`` one TradeObserved per fill; ``filled``, ``cost`` and ``fee`` the venue's final
    totals. Folding any interleaving of them (with duplicates) must give those totals.
    """

    symbol: str
    order_id: str
    client_order_id: str
    side: str
    amount: Decimal
    observations: tuple[OrderObserved, ...]
    trades: tuple[TradeObserved, ...]
    filled: Decimal
    cost: Decimal
    fee: Decimal
    status: str

    def events(self) -> list[Event]:
        return [*self.observations, *self.trades]


UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
_prices = st.integers(1, 10**7).map(lambda i: Decimal(i).scaleb(-2))  # 0.01 .. 100000.00
_quantities = st.integers(1, 10**6).map(lambda i: Decimal(i).scaleb(-4))  # 0.0001 .. 100


@st.composite
def fill_histories(
    draw: st.DrawFn,
    symbol: str | None = None,
    order_id: str | None = None,
    max_fills: int = 6,
    sparse: bool = False,
) -> FillHistory:
    """A random order with 0..max_fills partial fills at different prices, exact to the cent.

    ``sparse``: some reports and trades leave out the side, the fee or its currency, as
    real venues' messages do (the totals then are what the complete reports say)."""
    symbol = symbol or draw(st.sampled_from(UNIVERSE))
    order_id = order_id or f"o{draw(st.integers(1, 10**9))}"
    client_order_id = f"c-{order_id}"
    side = draw(st.sampled_from(["buy", "sell"]))
    fills = draw(st.lists(st.tuples(_quantities, _prices), max_size=max_fills))
    extra = draw(st.sampled_from([Decimal(0), Decimal("0.5")]))
    filled_total = sum((q for q, _ in fills), Decimal(0))
    amount = filled_total + extra if fills else Decimal(1) + extra
    end = "closed" if filled_total == amount else draw(st.sampled_from(["open", "canceled"]))
    quote = symbol.split("/")[1]
    start_ms = draw(st.integers(1_700_000_000_000, 1_800_000_000_000))
    observations = [
        OrderObserved(
            order_id=order_id,
            client_order_id=client_order_id,
            side=side,
            order_type="limit",
            status="open",
            price=fills[0][1] if fills else Decimal(100),
            amount=amount,
            filled=Decimal(0),
            remaining=amount,
            cost=Decimal(0),
            fees=(Fee(quote, Decimal(0)),),
            asset=symbol,
            exchange_ts=start_ms,
            source="watch_orders",
        )
    ]
    trades = []
    filled = cost = fee = Decimal(0)
    for i, (quantity, price) in enumerate(fills, 1):
        fill_cost = quantity * price
        fill_fee = (fill_cost / 1000).quantize(Decimal("0.00000001"))
        filled, cost, fee = filled + quantity, cost + fill_cost, fee + fill_fee
        status = end if i == len(fills) else "open"
        trades.append(
            TradeObserved(
                trade_id=f"{order_id}-t{i}",
                order_id=order_id,
                client_order_id=client_order_id,
                side=side,
                price=price,
                amount=quantity,
                cost=fill_cost,
                fees=(Fee(quote, fill_fee),),
                asset=symbol,
                exchange_ts=start_ms + i,
                source="watch_my_trades",
            )
        )
        observations.append(
            OrderObserved(
                order_id=order_id,
                client_order_id=client_order_id,
                side=side,
                order_type="limit",
                status=status,
                price=fills[0][1],
                amount=amount,
                filled=filled,
                remaining=amount - filled,
                cost=cost,
                average=cost / filled,
                fees=(Fee(quote, fee),),
                asset=symbol,
                exchange_ts=start_ms + i,
                last_trade_timestamp=start_ms + i,
                source="watch_orders",
            )
        )
    if not fills and end != "open":
        observations.append(attrs.evolve(observations[0], status=end, exchange_ts=start_ms + 1))
    if sparse:
        gaps: st.SearchStrategy[str] = st.sampled_from(["", "side", "fee currency", "fees"])

        def gap(event: Any, which: str) -> Any:
            if which == "side":
                return attrs.evolve(event, side=None)
            if which == "fee currency":
                return attrs.evolve(event, fees=tuple(Fee(None, f.cost) for f in event.fees))
            if which == "fees":
                return attrs.evolve(event, fees=None)
            return event

        observations = [gap(o, draw(gaps)) for o in observations]
        trades = [gap(t, draw(gaps)) for t in trades]
    return FillHistory(
        symbol,
        order_id,
        client_order_id,
        side,
        amount,
        tuple(observations),
        tuple(trades),
        filled,
        cost,
        fee,
        end,
    )


# ---------------------------------------------------------------------------------------------
# A venue's account over time: what the balance reports must add up to


@attrs.frozen
class VenueFill:
    """One fill at the venue: at ``ms``, its fee in ``fee_currency``."""

    ms: int
    amount: Decimal
    cost: Decimal
    fee: Decimal
    fee_currency: str


@attrs.frozen
class VenueOrder:
    order_id: str
    symbol: str
    side: str
    amount: Decimal
    fills: tuple[VenueFill, ...]

    def effects(self, fill: VenueFill) -> dict[str, Decimal]:
        """What ``fill`` does to each currency's balance."""
        base, quote = self.symbol.split("/")
        sign = 1 if self.side == "buy" else -1
        moved: dict[str, Decimal] = {}
        for currency, delta in (
            (base, sign * fill.amount),
            (quote, -sign * fill.cost),
            (fill.fee_currency, -fill.fee),
        ):
            moved[currency] = moved.get(currency, Decimal(0)) + delta
        return moved


@attrs.frozen
class VenueHistory:
    """One spot account at a venue: orders filled at known times (fees in the quote currency
    or in BNB, outside the universe), balance snapshots exact as of their time (some listing
    only a few currencies, as streamed updates do; the last lists all), and every report the
    venue sends of them: each fill's trade and the order's cumulative report after it (some
    of either left out), each snapshot's balance report. The venue dates everything.

    ``expected_cash(seen)`` is what cash must be after the reports ``seen``, in the order they
    arrived: for each currency, its latest balance report seen (by the venue's time), plus the
    effect of every fill seen that the report cannot include. A fill is seen through its trade
    (which dates it exactly) or through a cumulative report that includes it: then all that is
    known is that it happened after the last such report before it and at or before the first
    one that includes it. A balance report includes a fill dated at or before its time, not one
    after; where the dates cannot tell, it includes the fills shown before it arrived."""

    initial: dict[str, Decimal]
    orders: tuple[VenueOrder, ...]
    reports: tuple[Event, ...]

    def balance_at(self, ms: int) -> dict[str, Decimal]:
        balance = dict(self.initial)
        for order in self.orders:
            for fill in order.fills:
                if fill.ms <= ms:
                    for currency, delta in order.effects(fill).items():
                        balance[currency] = balance.get(currency, Decimal(0)) + delta
        return balance

    def expected_cash(self, seen: Sequence[Event]) -> dict[str, Decimal]:
        latest: dict[str, tuple[int, Decimal, int]] = {}  # currency -> (ms, total, arrival)
        trades: dict[str, int] = {}  # trade id -> arrival
        levels: dict[str, dict[Decimal, int]] = {}  # order -> reported filled -> arrival
        for arrival, event in enumerate(seen):
            if isinstance(event, BalanceObserved):
                assert event.exchange_ts is not None
                for b in event.balances:
                    assert b.total is not None
                    if b.currency not in latest or latest[b.currency][0] < event.exchange_ts:
                        latest[b.currency] = (event.exchange_ts, b.total, arrival)
            elif isinstance(event, TradeObserved) and event.trade_id is not None:
                trades.setdefault(event.trade_id, arrival)
            elif isinstance(event, OrderObserved) and event.order_id and event.filled:
                levels.setdefault(event.order_id, {}).setdefault(event.filled, arrival)
        cash = {currency: total for currency, (_, total, _) in latest.items()}
        for order in self.orders:
            reported = levels.get(order.order_id, {})
            cumulative = Decimal(0)
            for i, fill in enumerate(order.fills, 1):
                cumulative += fill.amount
                after: int | None
                if f"{order.order_id}-t{i}" in trades:
                    after, until, shown = fill.ms - 1, fill.ms, trades[f"{order.order_id}-t{i}"]
                else:
                    covering = sorted(level for level in reported if level >= cumulative)
                    if not covering:
                        continue  # nothing seen says this fill happened
                    before = [level for level in reported if level < cumulative]
                    until = order.fills[_fills_to(order, covering[0]) - 1].ms
                    after = order.fills[_fills_to(order, max(before)) - 1].ms if before else None
                    shown = min(reported[level] for level in covering)
                for currency, delta in order.effects(fill).items():
                    report = latest.get(currency)
                    if report is not None:
                        ms, _, arrival = report
                        if until <= ms or (
                            not (after is not None and after >= ms) and shown < arrival
                        ):
                            continue  # the report includes it
                    cash[currency] = cash.get(currency, Decimal(0)) + delta
        return cash


def _fills_to(order: VenueOrder, filled: Decimal) -> int:
    """How many of ``order``'s fills make up ``filled``."""
    total = Decimal(0)
    for i, fill in enumerate(order.fills, 1):
        total += fill.amount
        if total == filled:
            return i
    raise ValueError(f"{filled} is not a cumulative amount of order {order.order_id}")


@st.composite
def venue_histories(draw: st.DrawFn, max_orders: int = 3, max_fills: int = 4) -> VenueHistory:
    """A VenueHistory (see there): orders on UNIVERSE, fills and snapshots on one timeline."""
    currencies = ("USDT", "BTC", "ETH", "SOL", "BNB")
    initial = {c: draw(_quantities) for c in currencies}
    start = 1_750_000_000_000
    n_orders = draw(st.integers(1, max_orders))
    plans = [
        (draw(st.sampled_from(UNIVERSE)), draw(st.sampled_from(["buy", "sell"])))
        for _ in range(n_orders)
    ]
    counts = [draw(st.integers(1, max_fills)) for _ in range(n_orders)]
    # One timeline: which order fills next, 10 ms apart.
    sequence = draw(st.permutations([i for i, n in enumerate(counts) for _ in range(n)]))
    fills: list[list[VenueFill]] = [[] for _ in plans]
    for step, index in enumerate(sequence):
        symbol, _ = plans[index]
        quote = symbol.split("/")[1]
        amount, price = draw(_quantities), draw(_prices)
        cost = amount * price
        fee = (cost / 1000).quantize(Decimal("0.00000001"))
        fee_currency = draw(st.sampled_from([quote, quote, "BNB"]))
        if fee_currency == "BNB":
            fee = Decimal("0.0001") * (1 + step)
        fills[index].append(VenueFill(start + 10 * (step + 1), amount, cost, fee, fee_currency))
    orders = tuple(
        VenueOrder(f"v{i}", symbol, side, sum((f.amount for f in fills[i]), Decimal(0)), tuple(f))
        for i, ((symbol, side), f) in enumerate(zip(plans, fills, strict=True))
    )
    end = start + 10 * (len(sequence) + 1)
    history = VenueHistory(initial, orders, ())
    # A spot venue refuses what an account cannot cover: no balance ever goes below zero
    # (the reducer refuses a negative one), so the account starts with enough for each dip.
    for ms in sorted(f.ms for order in orders for f in order.fills):
        for currency, total in history.balance_at(ms).items():
            if total < 0:
                initial[currency] -= total
    reports: list[Event] = []
    for order in orders:
        filled = cost = Decimal(0)
        fees: dict[str, Decimal] = {}
        for i, fill in enumerate(order.fills, 1):
            filled, cost = filled + fill.amount, cost + fill.cost
            fees[fill.fee_currency] = fees.get(fill.fee_currency, Decimal(0)) + fill.fee
            fee_tuple = tuple(Fee(c, v) for c, v in sorted(fees.items()))
            if draw(st.booleans()) or i == len(order.fills):
                reports.append(
                    OrderObserved(
                        order_id=order.order_id,
                        side=order.side,
                        order_type="limit",
                        status="closed" if i == len(order.fills) else "open",
                        amount=order.amount,
                        filled=filled,
                        cost=cost,
                        fees=fee_tuple,
                        asset=order.symbol,
                        exchange_ts=start,
                        last_trade_timestamp=fill.ms,
                        source="watch_orders",
                    )
                )
            if draw(st.booleans()):
                reports.append(
                    TradeObserved(
                        trade_id=f"{order.order_id}-t{i}",
                        order_id=order.order_id,
                        side=order.side,
                        amount=fill.amount,
                        cost=fill.cost,
                        fees=(Fee(fill.fee_currency, fill.fee),),
                        asset=order.symbol,
                        exchange_ts=fill.ms,
                        source="watch_my_trades",
                    )
                )
    times = draw(st.lists(st.integers(start, end), max_size=4, unique=True))
    for ms in [*times, end + 1]:
        listed = (
            currencies
            if ms > end
            else draw(st.lists(st.sampled_from(currencies), min_size=1, unique=True))
        )
        balance = history.balance_at(ms)
        reports.append(
            BalanceObserved(
                balances=tuple(Balance(c, balance[c], balance[c], Decimal(0)) for c in listed),
                exchange_ts=ms,
                source="watch_balance",
            )
        )
    return VenueHistory(initial, orders, tuple(reports))


def shuffled(events: list[Event]) -> st.SearchStrategy[list[Event]]:
    """``events`` in any order, some of them repeated."""
    return st.permutations(events).flatmap(
        lambda order: (
            st.lists(st.sampled_from(order), max_size=len(order)).map(
                lambda repeats: [*order, *repeats]
            )
            if order
            else st.just([])
        )
    )


def strategy_started(universe: tuple[str, ...] = UNIVERSE, margin: bool = False) -> Event:
    return StrategyStarted("USDT", universe, margin=margin, exchange="sim", strategy="test")


@st.composite
def balances(draw: st.DrawFn, currencies: tuple[str, ...] = ("USDT", "BTC", "ETH", "SOL")) -> Event:
    chosen = draw(st.lists(st.sampled_from(currencies), min_size=1, unique=True))
    entries = []
    for currency in chosen:
        free, used = draw(_quantities), draw(st.sampled_from([Decimal(0), Decimal("1.5")]))
        entries.append(Balance(currency, free + used, free, used))
    return BalanceObserved(balances=tuple(entries), source="watch_balance")


@st.composite
def positions(draw: st.DrawFn, symbols: tuple[str, ...] = ("BTC/USDT:USDT",)) -> Event:
    return PositionObserved(
        side=draw(st.sampled_from(["long", "short"])),
        contracts=draw(st.sampled_from([Decimal(0), Decimal("0.01"), Decimal("0.5")])),
        entry_price=draw(_prices),
        leverage=Decimal(5),
        asset=draw(st.sampled_from(symbols)),
        source="watch_positions",
    )


def tickers(symbols: tuple[str, ...] = UNIVERSE) -> st.SearchStrategy[Event]:
    return st.builds(
        lambda symbol, bid, spread: TickerObserved(
            asset=symbol, bid=bid, ask=bid + spread, last=bid, source="watch_ticker"
        ),
        st.sampled_from(symbols),
        _prices,
        st.sampled_from([Decimal("0.01"), Decimal("0.5")]),
    )


def malformed_observations(symbols: tuple[str, ...] = UNIVERSE) -> st.SearchStrategy[Event]:
    """Observations the reducer must record as anomalies and otherwise ignore."""
    symbol = st.sampled_from(symbols)
    return st.one_of(
        st.builds(
            lambda s: OrderObserved(
                order_id=None, asset=s, status="open", amount=Decimal(1), filled=Decimal(0)
            ),
            symbol,
        ),
        st.builds(
            lambda s: OrderObserved(
                order_id="bad-1", asset=s, status="open", amount=Decimal(-1), filled=Decimal(0)
            ),
            symbol,
        ),
        st.builds(
            lambda s: OrderObserved(
                order_id="bad-2",
                asset=s,
                status="open",
                amount=Decimal(1),
                filled=Decimal(2),
                cost=Decimal(2),
            ),
            symbol,
        ),
        st.builds(
            lambda s: OrderObserved(
                order_id="bad-3", asset=s, status="open", amount=None, filled=Decimal(0)
            ),
            symbol,
        ),
        st.just(
            OrderObserved(
                order_id="bad-4",
                asset="NOPE/USDT",
                status="open",
                amount=Decimal(1),
                filled=Decimal(0),
            )
        ),
        st.builds(
            lambda s: OrderObserved(
                order_id="bad-5", asset=s, status="open", amount=Decimal(1), filled=Decimal("NaN")
            ),
            symbol,
        ),
        st.builds(
            lambda s: TradeObserved(
                trade_id=None, order_id="x", asset=s, amount=Decimal(1), price=Decimal(1)
            ),
            symbol,
        ),
        st.builds(
            lambda s: TradeObserved(
                trade_id="t-bad", order_id="x", asset=s, amount=None, price=Decimal(1)
            ),
            symbol,
        ),
        st.just(PositionObserved(side="sideways", contracts=Decimal(1), asset=symbols[0])),
        st.just(BalanceObserved(balances=(Balance("USDT"),))),
    )


def request_outcomes(history: FillHistory) -> st.SearchStrategy[list[Event]]:
    """What a create request of ``history``'s order may have got back, as the engine records
    it: an acknowledgement (naming the symbol or not), a refusal of a retry as a duplicate, a
    request with no answer, a local refusal; some of them, in some order."""
    cid, oid = history.client_order_id, history.order_id
    return st.lists(
        st.sampled_from(
            [
                OrderAcknowledged(client_order_id=cid, order_id=oid, asset=history.symbol),
                OrderAcknowledged(client_order_id=cid, order_id=oid),
                OrderRejected(client_order_id=cid, error="DuplicateOrderId"),
                OrderRejected(client_order_id=cid, error="InsufficientFunds", message="no"),
                OrderRequestFailed(client_order_id=cid, error="RequestTimeout"),
                LocalCheckFailed("not enough USDT", client_order_id=cid),
            ]
        ),
        max_size=3,
    )


def event_streams(max_orders: int = 4) -> st.SearchStrategy[list[Event]]:
    """A strategy's stream: StrategyStarted, then orders with partial fills (their reports and
    trades interleaved, some trades missing, the answers to their requests), balances, tickers
    and malformed observations."""

    @st.composite
    def build(draw: st.DrawFn) -> list[Event]:
        histories = draw(
            st.lists(fill_histories(), max_size=max_orders, unique_by=lambda h: h.order_id)
        )
        parts: list[Event] = []
        for history in histories:
            keep = draw(
                st.lists(st.booleans(), min_size=len(history.trades), max_size=len(history.trades))
            )
            parts.append(
                OrderRequested(
                    history.client_order_id,
                    history.side,
                    "limit",
                    history.amount,
                    history.observations[0].price,
                    asset=history.symbol,
                    source="strategy",
                )
            )
            parts.extend(history.observations)
            parts.extend(t for t, k in zip(history.trades, keep, strict=True) if k)
            parts.extend(draw(request_outcomes(history)))
        parts.extend(draw(st.lists(st.one_of(balances(), tickers()), max_size=4)))
        parts.extend(draw(st.lists(malformed_observations(), max_size=2)))
        return [strategy_started(), *draw(st.permutations(parts))]

    return build()


# ---------------------------------------------------------------------------------------------
# Laws: point them at any reducer (state, event) -> state with a fixed empty state

S = TypeVar("S")


def stamp_all(events: Sequence[Event], start: int = 0) -> list[Event]:
    """Copies of ``events`` stamped with dense seqs from ``start`` (as a trace would)."""
    return [attrs.evolve(e, seq=start + i, ts=0) for i, e in enumerate(events)]


def fold_with(reducer: Callable[[S, Event], S], state: S, events: Iterable[Event]) -> S:
    for event in events:
        state = reducer(state, event)
    return state


def check_fold_composes(
    reducer: Callable[[S, Event], S], empty: S, a: Sequence[Event], b: Sequence[Event]
) -> None:
    """fold(a + b) == fold(b) started from fold(a)."""
    whole = fold_with(reducer, empty, [*a, *b])
    parts = fold_with(reducer, fold_with(reducer, empty, a), b)
    assert whole == parts, "fold(a + b) differs from fold(b, from fold(a))"


def check_idempotent(reducer: Callable[[S, Event], S], state: S, event: Event) -> None:
    """Folding the same observation twice == folding it once."""
    once = reducer(state, event)
    twice = reducer(once, event)
    assert twice == once, f"folding {event.kind} at seq {event.seq} twice changed the state"


def check_order_insensitive(
    reducer: Callable[[S, Event], S],
    start: S,
    events: Sequence[Event],
    reordered: Sequence[Event],
    project: Callable[[S], Any],
) -> None:
    """Folding ``reordered`` (the same events, permuted, repeated) gives the same
    ``project(state)`` as folding ``events``."""
    expected = project(fold_with(reducer, start, events))
    actual = project(fold_with(reducer, start, reordered))
    assert actual == expected, "the order of the events changed the state"
