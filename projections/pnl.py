"""What a run made or lost, per market, from the fills in a state: the quote currency that
changed hands, plus the base bought less the base sold valued at the last price, less the
fees (valued at the last prices too). For a linear contract market the base is the
contracts' underlying (a contract size of 1 is assumed)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal, localcontext

import attrs

from eventsrc import State
from eventsrc.state import DERIVED, split_symbol

ZERO = Decimal(0)


@attrs.frozen
class MarketResult:
    symbol: str
    fills: int
    real: int
    """Fills the venue reported as trades (the rest were emulated from the order's totals)."""
    bought: Decimal
    sold: Decimal
    spent: Decimal
    """Quote paid for what was bought."""
    received: Decimal
    """Quote received for what was sold."""
    fees: dict[str, Decimal]
    last_price: Decimal | None
    pnl: Decimal | None
    """In the quote currency; None where a price it needs is unknown."""


@attrs.define
class _Sums:
    fills: int = 0
    real: int = 0
    bought: Decimal = ZERO
    sold: Decimal = ZERO
    spent: Decimal = ZERO
    received: Decimal = ZERO
    fees: defaultdict[str, Decimal] = attrs.field(factory=lambda: defaultdict(lambda: ZERO))


def results(state: State) -> list[MarketResult]:
    """One ``MarketResult`` per market that had a fill, by symbol (in 34 significant digits,
    whatever the caller's decimal context: ccxt changes the global one)."""
    with localcontext(DERIVED):
        return _results(state)


def _results(state: State) -> list[MarketResult]:
    sums: dict[str, _Sums] = {}
    for order in state.orders.values():
        for fill in order.fills:
            if not fill.amount and not fill.fees:
                continue
            s = sums.setdefault(order.symbol, _Sums())
            if fill.amount:
                s.fills += 1
                s.real += not fill.emulated
            if fill.side == "buy":
                s.bought += fill.amount
                s.spent += fill.cost
            elif fill.side == "sell":
                s.sold += fill.amount
                s.received += fill.cost
            for currency, fee in fill.fees:
                s.fees[currency] += fee
    out = []
    for symbol, s in sorted(sums.items()):
        price = state.last_price.get(symbol)
        fees = dict(sorted(s.fees.items()))
        held, cash = s.bought - s.sold, s.received - s.spent
        out.append(
            MarketResult(
                symbol,
                s.fills,
                s.real,
                s.bought,
                s.sold,
                s.spent,
                s.received,
                fees,
                price,
                _pnl(state, symbol, held, cash, fees, price),
            )
        )
    return out


def _pnl(
    state: State,
    symbol: str,
    held: Decimal,
    cash: Decimal,
    fees: dict[str, Decimal],
    price: Decimal | None,
) -> Decimal | None:
    base, quote, _ = split_symbol(symbol)
    if price is None or base is None or quote is None:
        return None
    total = cash + held * price
    for currency, fee in fees.items():
        if currency == quote:
            total -= fee
        elif currency == base:
            total -= fee * price
        else:
            other = state.last_price.get(f"{currency}/{quote}")
            if other is None:
                return None
            total -= fee * other
    return total
