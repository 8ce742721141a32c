"""Strategy state: an immutable value, the fold of ``reduce`` over a trace.

Numeric model: every amount, price, cost and fee is a ``decimal.Decimal`` and all arithmetic on
them runs in ``EXACT``, a decimal context with 200 significant digits and traps on, so sums of
any number of partial fills equal the venue's totals exactly (no float, no silent rounding).
Only averages (a division) are rounded, and they are derived, never accumulated.

Collections are ``immutables.Map`` (persistent hash maps): changing one entry costs ~0.5 us
and shares the rest. State is a frozen attrs class; ``state_hash`` is a stable digest of its
canonical serialization, which checkpoints record and ``verify`` compares.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

import attrs
import msgspec
from immutables import Map

__all__ = [
    "EXACT",
    "ZERO",
    "Account",
    "Anomaly",
    "Book",
    "Cash",
    "Config",
    "Fill",
    "Health",
    "Order",
    "Position",
    "State",
    "WatcherHealth",
    "state_hash",
]

EXACT = decimal.Context(
    prec=200,
    Emax=999_999,
    Emin=-999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)
"""The context all money arithmetic of the reducer runs in: wide enough to be exact."""
ZERO = Decimal(0)

K = TypeVar("K")
V = TypeVar("V")

# Order lifecycle, in order of progress. A status never goes back to a lower rank.
REQUESTED = "requested"
ACKNOWLEDGED = "acknowledged"
OPEN = "open"
PARTIALLY_FILLED = "partially_filled"
CLOSED = "closed"
CANCELED = "canceled"
EXPIRED = "expired"
REJECTED = "rejected"
FAILED = "failed"
TERMINAL = frozenset({CLOSED, CANCELED, EXPIRED, REJECTED, FAILED})
STATUS_RANK = {
    REQUESTED: (0, 0),
    FAILED: (1, 0),  # a request that got no answer: the order may still exist
    ACKNOWLEDGED: (2, 0),
    OPEN: (3, 0),
    PARTIALLY_FILLED: (3, 0),
    REJECTED: (4, 0),
    EXPIRED: (4, 1),
    CANCELED: (4, 2),
    CLOSED: (4, 3),
}
"""Progress of each status; an order's status is the furthest ever reported for it (so the
order in which reports arrive does not matter). Terminal ties are broken by a fixed order."""


def furthest(a: str, b: str) -> str:
    """The status further along of two; ``a`` when they are equally far."""
    return b if STATUS_RANK[b] > STATUS_RANK[a] else a


@attrs.frozen
class Cash:
    """One currency's balance (ccxt total/free/used), plus fills folded since the venue last
    reported it (spot: the venue's next balance report replaces it)."""

    total: Decimal = ZERO
    free: Decimal = ZERO
    used: Decimal = ZERO


@attrs.frozen
class Position:
    """A derivatives position as the venue last reported it."""

    symbol: str
    side: str
    contracts: Decimal
    contract_size: Decimal | None = None
    entry_price: Decimal | None = None
    mark_price: Decimal | None = None
    leverage: Decimal | None = None
    liquidation_price: Decimal | None = None
    collateral: Decimal | None = None
    initial_margin: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    margin_mode: str | None = None
    seq: int = -1


@attrs.frozen
class Fill:
    """One execution of an order: a real trade from the venue, or one emulated from the
    progress of the order's cumulative totals (``emulated=True``, ``trade_id`` None)."""

    order_id: str
    symbol: str
    side: str | None
    amount: Decimal
    cost: Decimal
    fee_cost: Decimal
    fee_currency: str | None
    trade_id: str | None
    emulated: bool
    seq: int = attrs.field(eq=False)
    """The event that last produced this fill (not part of equality: a fill is the same
    whichever event brought it)."""
    exchange_ts: int | None = None

    @property
    def price(self) -> Decimal | None:
        """The fill's average price (cost / amount)."""
        return self.cost / self.amount if self.amount else None


class Level(NamedTuple):
    """One cumulative progress point of an order as the venue reported it. A tuple: levels
    are compared, ordered and hashed on every report, and tuples do that in C.

    ``fee_known`` is False when the report said nothing of fees (``fee`` is then 0): an
    unknown fee is not a fee of zero, and must not undo fees known from trades."""

    filled: Decimal
    cost: Decimal
    fee: Decimal
    fee_known: bool = True


def _none_last(value: Any) -> tuple[int, Any]:
    return (0, 0) if value is None else (1, value)


class Report(NamedTuple):
    """The parts of a venue report of an order that rank it: an order's descriptive fields
    come from its highest-ranked report. The rank is how far along the order the report is,
    ties broken by content (never by arrival order, nor by timestamps: a polling watcher's
    repeat of a known state is an equal report, and changes nothing). A tuple, so that the
    common case, an equal report, is one comparison in C."""

    filled: Decimal
    status: str
    cost: Decimal
    fee: Decimal | None
    amount: Decimal | None
    price: Decimal | None
    side: str | None
    order_type: str | None
    fee_currency: str | None

    def rank(self) -> tuple[Any, ...]:
        return (
            self.filled,
            STATUS_RANK[self.status],
            self.cost,
            _none_last(self.fee),
            _none_last(self.amount),
            _none_last(self.price),
            self.status,
            _none_last(self.side),
            _none_last(self.order_type),
            _none_last(self.fee_currency),
        )


NO_LEVEL = Level(ZERO, ZERO, ZERO)


@attrs.frozen
class Order:
    """An order and its lifecycle.

    ``filled``, ``cost`` and ``fee_cost`` are the order's totals: the venue's highest reported
    cumulative values, or the sums of its real trades where those are ahead. ``trades`` are
    its fills: real trades, then emulated ones for whatever the real trades do not explain
    (see eventsrc.fills). Updating an order costs O(1) however many fills it has; ``trades``
    is computed when asked for.
    """

    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: str | None = None
    order_type: str | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    status: str = REQUESTED
    filled: Decimal = ZERO
    cost: Decimal = ZERO
    fee_cost: Decimal = ZERO
    fee_currency: str | None = None
    levels: Map[Level, bool] = attrs.field(factory=Map)
    """Every distinct cumulative point the venue reported (a set)."""
    top: Level = NO_LEVEL
    """The furthest of ``levels``."""
    fee_level: Level = NO_LEVEL
    """The furthest of ``levels`` that reported a fee."""
    real: Map[str, Fill] = attrs.field(factory=Map)
    """Real trades by trade id."""
    real_total: Level = NO_LEVEL
    """The sums of the real trades."""
    best: Report | None = None
    """The highest-ranked venue report folded so far."""
    accounted: Level = NO_LEVEL
    """The totals already applied to cash (spot)."""
    reason: str | None = None
    last_seq: int = attrs.field(default=-1, eq=False)
    """The event that last changed the order (not part of equality: the same order is the
    same whatever order its reports arrived in)."""

    @property
    def trades(self) -> tuple[Fill, ...]:
        """The order's fills: real trades by time, then emulated fills by level."""
        from eventsrc.fills import fills_of

        return fills_of(self)

    @property
    def average(self) -> Decimal | None:
        """Average fill price: cost / filled (None before any fill)."""
        return self.cost / self.filled if self.filled else None

    @property
    def remaining(self) -> Decimal | None:
        return None if self.amount is None else self.amount - self.filled


@attrs.frozen
class WatcherHealth:
    status: str
    """"running", "stopped", "error" or "reconnected"."""
    since_seq: int
    errors: int = 0
    gaps: int = 0
    last_error: str | None = None


@attrs.frozen
class Anomaly:
    """A malformed observation: recorded, and otherwise changing nothing."""

    seq: int
    kind: str
    reason: str


@attrs.frozen
class Config:
    """What StrategyStarted says: the strategy, its venue, main currency and universe."""

    main_currency: str | None = None
    universe: tuple[str, ...] = ()
    margin: bool = False
    exchange: str = ""
    strategy: str = ""
    running: bool = False

    def currencies(self) -> frozenset[str]:
        """The currencies of the universe: bases, quotes and settlement, and the main one."""
        return _currencies(self.universe, self.main_currency)

    def symbols(self) -> frozenset[str]:
        return _symbols(self.universe)


@functools.cache
def _currencies(universe: tuple[str, ...], main_currency: str | None) -> frozenset[str]:
    found = {main_currency} if main_currency else set()
    for symbol in universe:
        base, quote, settle = split_symbol(symbol)
        found.update(c for c in (base, quote, settle) if c)
    return frozenset(found)


@functools.cache
def _symbols(universe: tuple[str, ...]) -> frozenset[str]:
    return frozenset(universe)


@functools.cache
def split_symbol(symbol: str) -> tuple[str | None, str | None, str | None]:
    """``"BTC/USDT"`` -> (BTC, USDT, None); ``"BTC/USDT:USDT"`` -> (BTC, USDT, USDT)."""
    pair, _, settle = symbol.partition(":")
    base, slash, quote = pair.partition("/")
    if not slash or not base or not quote:
        return None, None, None
    return base, quote, settle.split("-")[0] or None


def _empty() -> Map[Any, Any]:
    return Map()


@attrs.frozen
class Account:
    """What the strategy holds: cash per currency, positions per (symbol, side)."""

    cash: Map[str, Cash] = attrs.field(factory=_empty)
    positions: Map[tuple[str, str], Position] = attrs.field(factory=_empty)


@attrs.frozen
class Book:
    """The strategy's orders."""

    orders: Map[str, Order] = attrs.field(factory=_empty)
    """Orders the venue has named, by order id."""
    requests: Map[str, Order] = attrs.field(factory=_empty)
    """Orders requested locally and not yet named by the venue, by client order id."""
    client_orders: Map[str, str] = attrs.field(factory=_empty)
    """Client order id -> order id, for every named order that has one."""


@attrs.frozen
class Health:
    """Watchers' health and the anomalies seen."""

    watchers: Map[str, WatcherHealth] = attrs.field(factory=_empty)
    anomalies: Map[int, Anomaly] = attrs.field(factory=_empty)


_NO_ACCOUNT = Account()
_NO_BOOK = Book()
_NO_HEALTH = Health()


@attrs.frozen
class State:
    """The whole strategy state after folding events ``0..seq`` (``State()`` is empty).

    Grouped so that folding an event rebuilds only what it touches: a ticker (most of a trace)
    builds a six-field State and shares everything else.
    """

    seq: int = -1
    config: Config = Config()
    last_price: Map[str, Decimal] = attrs.field(factory=_empty)
    account: Account = _NO_ACCOUNT
    book: Book = _NO_BOOK
    health: Health = _NO_HEALTH

    @property
    def cash(self) -> Map[str, Cash]:
        return self.account.cash

    @property
    def positions(self) -> Map[tuple[str, str], Position]:
        return self.account.positions

    @property
    def orders(self) -> Map[str, Order]:
        """Orders the venue has named, by order id."""
        return self.book.orders

    @property
    def requests(self) -> Map[str, Order]:
        """Orders requested locally and not yet named by the venue, by client order id."""
        return self.book.requests

    @property
    def client_orders(self) -> Map[str, str]:
        return self.book.client_orders

    @property
    def watchers(self) -> Map[str, WatcherHealth]:
        return self.health.watchers

    @property
    def anomalies(self) -> Map[int, Anomaly]:
        return self.health.anomalies

    @property
    def main_currency(self) -> str | None:
        return self.config.main_currency

    @property
    def universe(self) -> tuple[str, ...]:
        return self.config.universe

    @property
    def margin(self) -> bool:
        return self.config.margin

    @property
    def trades(self) -> TradesBySymbol:
        """Every fill (real and emulated) by symbol: ``state.trades["BTC/USDT"]``."""
        return TradesBySymbol(self)

    def order(self, key: str) -> Order | None:
        """An order by order id or client order id, named by the venue or only requested."""
        found = self.orders.get(key)
        if found is None:
            order_id = self.client_orders.get(key)
            found = self.orders.get(order_id) if order_id else self.requests.get(key)
        return found


class TradesBySymbol(Mapping[str, tuple[Fill, ...]]):
    """A read-only view: symbol -> fills of all its orders, in the order they were folded."""

    __slots__ = ("_state",)

    def __init__(self, state: State) -> None:
        self._state = state

    def _by_symbol(self) -> dict[str, list[Fill]]:
        found: dict[str, list[Fill]] = {}
        for order in self._state.orders.values():
            if order.trades:
                found.setdefault(order.symbol, []).extend(order.trades)
        for fills in found.values():
            fills.sort(key=lambda f: (f.seq, f.emulated, f.trade_id or ""))
        return found

    def __getitem__(self, symbol: str) -> tuple[Fill, ...]:
        fills = self._by_symbol().get(symbol)
        if fills is None:
            raise KeyError(symbol)
        return tuple(fills)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_symbol()))

    def __len__(self) -> int:
        return len(self._by_symbol())


# ---------------------------------------------------------------------------------------------
# Canonical serialization: snapshots and the state hash


def _canonical(value: Any) -> Any:
    """Plain data with a fixed order: maps become lists of [key, value] sorted by key."""
    if isinstance(value, Map):
        items = [(_canonical(k), _canonical(v)) for k, v in value.items()]
        items.sort(key=lambda kv: msgspec.msgpack.encode(kv[0]))
        return [[k, v] for k, v in items]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if attrs.has(type(value)):
        return [_canonical(getattr(value, a.name)) for a in attrs.fields(type(value))]
    return value


def state_hash(state: State) -> str:
    """A stable hex digest of the state after folding up to ``state.seq`` (sha256 of its
    canonical MessagePack form); the same state gives the same hash in any process."""
    return hashlib.sha256(msgspec.msgpack.encode(_canonical(state))).hexdigest()
