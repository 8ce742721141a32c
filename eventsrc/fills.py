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

from eventsrc.state import EXACT, Fill, Level, Order

__all__ = ["fills_of", "totals"]

_sub = EXACT.subtract


def totals(top: Level, real_total: Level) -> Level:
    """An order's totals: its furthest reported level, or its real trades where ahead."""
    return top if top.filled >= real_total.filled else real_total


def fills_of(order: Order) -> tuple[Fill, ...]:
    """Real trades (by venue time, then id), then the emulated fills above them (by level)."""
    real = sorted(order.real.values(), key=lambda f: (f.exchange_ts or 0, f.trade_id or ""))
    emulated: list[Fill] = []
    prev = order.real_total
    for level in sorted(order.levels):
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
                seq=order.last_seq,
            )
        )
        prev = level
    return (*real, *emulated)
