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
nothing is counted twice. The order's totals are those of the highest level, or the real
trades' sums where they are ahead, which makes them equal the venue's totals exactly.
"""

from __future__ import annotations

from decimal import Decimal

import attrs

from eventsrc.state import EXACT, ZERO, Fill, Level, Order

__all__ = ["settle"]

_add = EXACT.add
_sub = EXACT.subtract


def _sum(values: list[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = _add(total, value)
    return total


def settle(order: Order, last_seq: int) -> Order:
    """``order`` with ``filled``, ``cost``, ``fee_cost`` and ``trades`` recomputed from its
    levels and real trades."""
    real = sorted(order.real.values(), key=lambda f: (f.exchange_ts or 0, f.trade_id or ""))
    real_amount = _sum([f.amount for f in real])
    real_cost = _sum([f.cost for f in real])
    real_fee = _sum([f.fee_cost for f in real])
    emulated: list[Fill] = []
    prev = Level(real_amount, real_cost, real_fee)
    for level in order.levels:
        if level.filled <= prev.filled:
            continue
        emulated.append(
            Fill(
                order_id=order.order_id or "",
                symbol=order.symbol,
                side=order.side,
                amount=_sub(level.filled, prev.filled),
                cost=_sub(level.cost, prev.cost),
                fee_cost=_sub(level.fee, prev.fee),
                fee_currency=order.fee_currency,
                trade_id=None,
                emulated=True,
                seq=last_seq,
            )
        )
        prev = level
    top = order.levels[-1] if order.levels else None
    if top is not None and top.filled >= real_amount:
        filled, cost, fee = top.filled, top.cost, top.fee
    else:
        filled, cost, fee = real_amount, real_cost, real_fee
    return attrs.evolve(
        order,
        filled=filled,
        cost=cost,
        fee_cost=fee,
        trades=(*real, *emulated),
        last_seq=last_seq,
    )
