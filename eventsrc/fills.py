"""Fills of an order: its real trades, plus fills emulated from its cumulative totals.

Many venues report an order's cumulative ``filled``, ``cost`` and fee but no trades (ccxt
``has["fetchMyTrades"]`` false), or report trades late. An order's fills are therefore a pure
function of two sets, so neither arrival order nor duplicates matter:

- its real trades (by trade id), and
- every distinct cumulative point the venue reported (a *level*: filled, cost, fee).

The real trades explain the order up to their summed amount R. Each reported level above R
adds an emulated fill for the difference from the previous point (R's own totals for the first
one): amount = difference in filled, cost = difference in cost, fee = difference in the
cumulative fee; its price is cost / amount. (Planar prices such a fill with ``average`` while
taking its cost from ``cost``: mixing a price with a cost; here both come from cumulative
totals, and ``average * filled`` is used only where the venue gave no cost at all.) When real
trades for an emulated fill arrive, R moves up and the emulated fill shrinks or vanishes, so
nothing is counted twice. The order's totals are those of the furthest level, or the real
trades' sums where they are ahead, which makes them equal the venue's totals exactly.

Folding keeps only the two sets, the furthest level and the real sums (O(1) per report);
``fills_of`` lays the fills out when someone asks for them.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from eventsrc.state import EXACT, ZERO, Fill, Level, Order

__all__ = ["fills_of", "totals"]

_sub = EXACT.subtract


def totals(top: Level, real_total: Level, fee_level: Level) -> Level:
    """An order's totals: filled and cost of its furthest reported level, or of its real
    trades where those are ahead; the fee likewise, from the furthest level that reported one
    (a report that says nothing of fees does not make them zero)."""
    furthest = top if top.filled >= real_total.filled else real_total
    fee = fee_level.fee if fee_level.filled >= real_total.filled else real_total.fee
    return Level(furthest.filled, furthest.cost, fee)


def fills_of(order: Order) -> tuple[Fill, ...]:
    """Real trades (by venue time, then id), then the emulated fills above them, one per
    reported amount; their amounts, costs and fees sum to the order's totals."""
    real = sorted(order.real.values(), key=lambda f: (f.exchange_ts or 0, f.trade_id or ""))
    real = [_filled_in(f, order) for f in real]
    emulated: list[Fill] = []
    done = order.real_total  # what the fills so far explain
    fee = done.fee
    levels = sorted(level for level in order.levels if level.filled > done.filled)
    for i, level in enumerate(levels):
        if level.fee_known:
            fee = level.fee
        if i + 1 < len(levels) and levels[i + 1].filled == level.filled:
            continue  # several reports of one amount: the furthest stands for them
        emulated.append(
            _emulated(
                order,
                _sub(level.filled, done.filled),
                _sub(level.cost, done.cost),
                _sub(fee, done.fee),
            )
        )
        done = Level(level.filled, level.cost, fee)
    expected = totals(order.top, order.real_total, order.fee_level).fee
    if expected != done.fee:
        # A fee reported beyond what any amount explains (say a venue's later adjustment).
        emulated.append(_emulated(order, ZERO, ZERO, _sub(expected, done.fee)))
    return (*real, *emulated)


def _emulated(order: Order, amount: Decimal, cost: Decimal, fee: Decimal) -> Fill:
    return Fill(
        order_id=order.order_id or "",
        symbol=order.symbol,
        side=order.side,
        amount=amount,
        cost=cost,
        fee_cost=fee,
        fee_currency=order.fee_currency,
        trade_id=None,
        emulated=True,
        seq=order.last_seq,
    )


def _filled_in(fill: Fill, order: Order) -> Fill:
    """A real trade with what it left out (side, fee currency) taken from its order."""
    if fill.side is not None and (fill.fee_currency is not None or not fill.fee_cost):
        return fill
    return attrs.evolve(
        fill, side=fill.side or order.side, fee_currency=fill.fee_currency or order.fee_currency
    )
