"""The venue seam: the few calls the engine makes of an exchange, answered in the core's own
events and errors, and the watchers that turn its streams into events.

``adapters.venue.CcxtVenue`` implements ``Venue`` for any ccxt exchange object (and so for the
simulated exchange, which speaks ccxt); it owns every mapping from ccxt's dicts to events and
from ccxt's exceptions to the errors below. The core never sees a ccxt dict or exception.

Every call answers with events (``source`` names the call: ``"create_order"``,
``"fetch_order"``, ``"watch_orders"``, ...) or raises a ``VenueError``:

- ``Refused``: the venue answered no (an invalid order, not enough funds, a client order id it
  already has: ``error == "DuplicateOrderId"``, an unsupported call). Retrying will not help.
- ``NotFound``: the venue has no such order.
- ``Unreachable``: no answer (a timeout, a network error, the venue unavailable or rate
  limiting): the request may or may not have taken effect; ``retry_after`` is the venue's
  hint, if it gave one. Retrying may help.

A ``Watcher`` is nothing but an event producer: the engine runs each as a task, hands it a
``Feed`` to put its events in, and supervises it (a watcher records its own gaps and errors
as events; one that dies is recorded and restarted).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import ClassVar, Protocol

import attrs

from eventsrc.clock import Clock
from eventsrc.errors import EventsrcError
from eventsrc.events import Event, OrderRequested

__all__ = [
    "STREAMS",
    "Feed",
    "Market",
    "NotFound",
    "Refused",
    "Unreachable",
    "Venue",
    "VenueError",
    "Watcher",
]

STREAMS = ("orders", "trades", "balance", "positions", "ticker")
"""The streams a venue may offer (``Venue.can_watch``) and watchers produce."""


class VenueError(EventsrcError):
    """A venue's refusal or failure. ``error`` is the venue library's name for it (ccxt's
    exception class, e.g. ``"InsufficientFunds"``); ``message`` what it said, secrets removed."""

    retryable: ClassVar[bool] = False

    def __init__(self, error: str, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(f"{error}: {message}" if message else error)
        self.error = error
        self.message = message
        self.retry_after = retry_after


class Refused(VenueError):
    """The venue answered no; retrying the same request will not help."""


class NotFound(VenueError):
    """The venue has no such order."""


class Unreachable(VenueError):
    """No answer: the request may or may not have taken effect; retrying may help."""

    retryable = True


def _step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding) * step


@attrs.frozen
class Market:
    """What the engine checks an order against before sending it.

    ``contract``: a swap or future (its fills move no spot cash; it needs a margin strategy).
    ``amount_step``/``price_step``: the venue's precision as a step (ccxt's TICK_SIZE); amounts
    are truncated to it and prices rounded to it, as ccxt's ``amount_to_precision`` and
    ``price_to_precision`` do. ``min_amount``/``min_cost``: the venue's minimums (None: none).
    """

    symbol: str
    base: str
    quote: str
    settle: str | None = None
    contract: bool = False
    amount_step: Decimal | None = None
    price_step: Decimal | None = None
    min_amount: Decimal | None = None
    min_cost: Decimal | None = None
    contract_size: Decimal | None = None

    def amount_to_precision(self, amount: Decimal) -> Decimal:
        """``amount`` truncated to the amount step (what the venue will be sent)."""
        if self.amount_step is None or not self.amount_step:
            return amount
        return _step(amount, self.amount_step, ROUND_DOWN)

    def price_to_precision(self, price: Decimal) -> Decimal:
        """``price`` rounded to the price step (half up, as ccxt rounds prices)."""
        if self.price_step is None or not self.price_step:
            return price
        return _step(price, self.price_step, ROUND_HALF_UP)


class Feed(Protocol):
    """Where a watcher puts what it observes; the engine appends, folds and answers."""

    @property
    def clock(self) -> Clock: ...

    async def put(self, event: Event) -> None:
        """Record ``event`` (returns once it is appended and folded; while the engine's trace
        takes no events, once it is held for later, or dropped: see ``eventsrc.engine``)."""


class Watcher(Protocol):
    """An event producer the engine runs and supervises."""

    @property
    def name(self) -> str:
        """A stable name (``"orders:BTC/USDT"``, ``"balance"``): its health is kept under it."""

    async def run(self, feed: Feed) -> None:
        """Produce events into ``feed`` until cancelled. Recording its own start, gaps and
        errors is the watcher's; raising ends it (the engine records why and restarts it)."""


class Venue(Protocol):
    """An exchange, as the engine sees it (see the module docstring)."""

    @property
    def name(self) -> str:
        """The exchange's id (``"binance"``, ``"sim"``)."""

    async def load_markets(self) -> dict[str, Market]:
        """The venue's markets by symbol (loaded once, then cached)."""

    def can_watch(self, stream: str) -> bool:
        """Whether ``stream`` (one of ``STREAMS``) can be watched (else it is polled)."""

    def can_fetch_trades(self) -> bool:
        """Whether the venue reports trades at all (else fills are emulated from orders)."""

    async def create_order(self, request: OrderRequested) -> list[Event]:
        """Place the order ``request`` describes (its client order id goes to the venue):
        an OrderAcknowledged, and the OrderObserved of what the venue answered if it did."""

    async def cancel_order(self, symbol: str, order_id: str) -> list[Event]:
        """Cancel an order: a CancelObserved, and the OrderObserved if the venue answered it."""

    async def fetch_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> list[Event]:
        """One order, by id or client order id (NotFound if the venue has none)."""

    async def fetch_order_trades(self, symbol: str, order_id: str) -> list[Event]:
        """The trades of one order (empty if the venue reports none)."""

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Event]: ...

    async def fetch_closed_orders(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        """Closed, canceled and expired orders from ``since_ms`` on, every page of them."""

    async def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[Event]:
        """The account's trades from ``since_ms`` on, every page of them."""

    async def fetch_balance(self) -> list[Event]: ...

    async def fetch_positions(self, symbols: Sequence[str]) -> list[Event]:
        """A PositionObserved per symbol (a flat one where there is no position)."""

    async def fetch_ticker(self, symbol: str) -> list[Event]: ...

    async def set_leverage(self, symbol: str, leverage: Decimal) -> None: ...

    def watcher(self, stream: str, symbol: str | None = None) -> Watcher:
        """A watcher of ``stream`` (of ``symbol``, for orders, trades and ticker): streaming
        where ``can_watch`` says so, else polling."""
