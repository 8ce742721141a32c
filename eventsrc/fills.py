"""Fills of an order: its real trades, plus fills emulated from its cumulative totals.

Many venues report an order's cumulative ``filled``, ``cost`` and fees but no trades (ccxt
``has["fetchMyTrades"]`` false), or report trades late, or lose one. An order's fills are
therefore a pure function of two sets, so neither arrival order nor duplicates matter:

- its real trades (by trade id), and
- every distinct cumulative point the venue reported (a *level*: filled, cost, fees), with when
  it was first true.

Consecutive levels cut the order's history into *segments* (from one reported amount to the
next). Each real trade is placed in the segment it belongs to: the one its time falls in (the
venue dates trades and, through ``lastTradeTimestamp``, reports), else the one it matches
exactly in amount and cost, else the first whose amount and cost it fits in; a trade dated after
the furthest report, or undated and fitting no segment, is beyond every report. Whatever of a
segment its trades do not explain becomes one emulated fill (amount, cost and fees: the
differences of the cumulative totals, less the trades'). So a missing trade is emulated where
it was missing, a real trade is never counted twice, and no fill has a negative amount or cost.
(Planar prices such a fill with ``average`` while taking its cost from ``cost``; here both come
from cumulative totals.)

The order's totals are the sums of its fills: the venue's furthest report, or the real trades'
where those are ahead. Where reports and trades disagree at the same amount (a cost from a
rounded average, say), the trades are taken and the difference is returned for the reducer to
record as an anomaly. Fees the reports name beyond what the segments explain become a fill with
no amount that carries only them.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from immutables import Map

from eventsrc.state import (
    EXACT,
    NO_FEES,
    ZERO,
    Fees,
    Fill,
    Level,
    When,
    fees_minus,
    fees_of,
    replace,
)

__all__ = ["Layout", "lay_out"]

_add = EXACT.add
_sub = EXACT.subtract


class Layout(NamedTuple):
    """An order's fills and their sums; ``disagreement`` says where reports and trades differ."""

    fills: tuple[Fill, ...]
    filled: Decimal
    cost: Decimal
    fees: Fees
    disagreement: str | None


class _Segment(NamedTuple):
    amount: Decimal
    cost: Decimal
    fees: Fees | None  # None: the reports did not say
    when: When
    filled: Decimal  # the cumulative amount at its end
    total_cost: Decimal  # the cumulative cost at its end
    seen: int = 0  # the first event that showed any of it (a later report includes it too)


def _trade_key(fill: Fill) -> tuple[bool, int, str]:
    return (fill.exchange_ts is None, fill.exchange_ts or 0, fill.trade_id or "")


def _segments(levels: Map[Level, When]) -> tuple[list[_Segment], Level | None, When | None]:
    """The segments between consecutive reported amounts, and the furthest level that reported
    fees (with its when)."""
    groups: dict[Decimal, tuple[Level, When, Level | None]] = {}
    for level, when in levels.items():
        found = groups.get(level.filled)
        if found is None:
            groups[level.filled] = (level, when, level if level.fee_known else None)
            continue
        top, first, fee_level = found
        if level.fee_known and (fee_level is None or level > fee_level):
            fee_level = level
        groups[level.filled] = (max(top, level), first.earliest(when), fee_level)
    segments: list[_Segment] = []
    filled = cost = ZERO
    known: Fees = NO_FEES
    fee_top: Level | None = None
    fee_when: When | None = None
    for amount in sorted(groups):
        top, when, fee_level = groups[amount]
        fees: Fees | None = None
        if fee_level is not None:
            fees = fees_minus(fee_level.fees, known)
            known = fee_level.fees
            fee_top, fee_when = fee_level, when
        segments.append(
            _Segment(_sub(amount, filled), _sub(top.cost, cost), fees, when, amount, top.cost)
        )
        filled, cost = amount, top.cost
    earliest: int | None = None
    for i in range(len(segments) - 1, -1, -1):
        seq = segments[i].when.seq
        earliest = seq if earliest is None else min(earliest, seq)
        segments[i] = segments[i]._replace(seen=earliest)
    return segments, fee_top, fee_when


def _seen_by(trade: Fill, seq: int) -> Fill:
    """``trade``, dated in the trace by the first event that showed it (its own, or an
    earlier report of the order's totals that includes it)."""
    return replace(trade, seq=seq) if seq < trade.seq else trade


def _place(trades: Sequence[Fill], segments: list[_Segment]) -> tuple[list[list[Fill]], list[Fill]]:
    """Which segment each real trade belongs to (see the module docstring): by time where the
    trade and the reports are dated, else the segment it matches exactly, else the first whose
    amount and cost it fits in. An undated trade that fits none is beyond every report (a fill
    after the furthest one, at another price); it is returned apart."""
    room = [s.amount for s in segments]
    cost_room = [s.cost for s in segments]
    placed: list[list[Fill]] = [[] for _ in segments]

    def put(k: int, trade: Fill) -> None:
        placed[k].append(trade)
        room[k] = _sub(room[k], trade.amount)
        cost_room[k] = _sub(cost_room[k], trade.cost)

    undated: list[Fill] = []
    for trade in trades:
        ms = trade.exchange_ts
        at = None
        if ms is not None:
            at = next(
                (j for j, s in enumerate(segments) if s.when.ms is not None and s.when.ms >= ms),
                None,
            )
        if at is None:
            undated.append(trade)
        else:
            put(at, trade)
    exact: dict[tuple[Decimal, Decimal], list[int]] = {}
    for index, segment in enumerate(segments):
        if not placed[index]:
            exact.setdefault((segment.amount, segment.cost), []).append(index)
    rest: list[Fill] = []
    for trade in undated:
        candidates = exact.get((trade.amount, trade.cost))
        if candidates:
            put(candidates.pop(0), trade)
        else:
            rest.append(trade)
    beyond: list[Fill] = []
    for trade in rest:
        fits = next(
            (
                j
                for j in range(len(segments))
                if room[j] >= trade.amount and cost_room[j] >= trade.cost
            ),
            None,
        )
        if fits is None:
            beyond.append(trade)
        else:
            put(fits, trade)
    return placed, beyond


def lay_out(
    order_id: str,
    symbol: str,
    side: str | None,
    levels: Map[Level, When],
    real: Map[str, Fill],
) -> Layout:
    """The fills of an order from its reported levels and its real trades (see the module
    docstring); their amounts, costs and fees sum to the returned totals."""
    trades = sorted(real.values(), key=_trade_key)
    if side is not None:
        trades = [t if t.side is not None else replace(t, side=side) for t in trades]
    segments, fee_top, fee_when = _segments(levels)
    top_filled = segments[-1].filled if segments else ZERO
    # Trades dated after the furthest report are beyond what any report shows.
    top_ms = segments[-1].when.ms if segments else None
    beyond: list[Fill] = []
    if top_ms is not None:
        beyond = [t for t in trades if t.exchange_ts is not None and t.exchange_ts > top_ms]
        if beyond:
            trades = [t for t in trades if t.exchange_ts is None or t.exchange_ts <= top_ms]
    r_filled = r_cost = ZERO
    for t in trades:
        r_filled, r_cost = _add(r_filled, t.amount), _add(r_cost, t.cost)
    r_fees = fees_of(pair for t in trades for pair in t.fees)

    if r_filled >= top_filled:  # the trades explain everything the venue reported
        disagreement = None
        if segments and r_filled == top_filled:
            top_cost = segments[-1].total_cost
            if top_cost != r_cost:
                disagreement = (
                    f"the venue reports cost {top_cost} at filled {top_filled}, its trades sum "
                    f"to {r_cost} (difference {_sub(top_cost, r_cost)}); the trades are taken"
                )
        covered = []
        at, total = 0, ZERO
        for t in trades:
            total = _add(total, t.amount)
            while at < len(segments) and segments[at].filled < total:
                at += 1
            covered.append(_seen_by(t, segments[at].seen) if at < len(segments) else t)
        return _summed([*covered, *beyond], disagreement)

    def emulated(amount: Decimal, cost: Decimal, fees: Fees, when: When, seen: int) -> Fill:
        return Fill(order_id, symbol, side, amount, cost, fees, None, True, when.ms, seen)

    placed, after = _place(trades, segments)
    if after:
        beyond = [*after, *beyond]
        trades = [t for t in trades if t not in after]
        r_filled = r_cost = ZERO
        for t in trades:
            r_filled, r_cost = _add(r_filled, t.amount), _add(r_cost, t.cost)
        r_fees = fees_of(pair for t in trades for pair in t.fees)
    fills: list[Fill] = []
    disagreement = None
    carry_amount = carry_cost = ZERO
    for segment, mine in zip(segments, placed, strict=True):
        fills.extend(_seen_by(t, segment.seen) for t in mine)
        amount, cost = _add(segment.amount, carry_amount), _add(segment.cost, carry_cost)
        fees = NO_FEES
        for t in mine:
            amount, cost = _sub(amount, t.amount), _sub(cost, t.cost)
        if segment.fees is not None:
            fees = fees_minus(segment.fees, fees_of(pair for t in mine for pair in t.fees))
        if amount > 0 and cost >= 0:
            fills.append(emulated(amount, cost, fees, segment.when, segment.seen))
            carry_amount = carry_cost = ZERO
        else:  # explained already (or inconsistent so far): the next segment settles it
            carry_amount, carry_cost = amount, cost
    if carry_amount or carry_cost:
        # What the trades and the reports say cannot be reconciled segment by segment: one
        # emulated fill for what the trades leave of the furthest report, never negative.
        top = segments[-1]
        top_cost = top.total_cost
        amount, cost = _sub(top_filled, r_filled), _sub(top_cost, r_cost)
        disagreement = (
            f"the venue's reports (filled {top_filled}, cost {top_cost}) and its trades "
            f"(filled {r_filled}, cost {r_cost}) do not add up; the trades are taken and the "
            f"rest emulated as one fill"
        )
        fills = [*trades, emulated(amount, max(cost, ZERO), NO_FEES, top.when, top.seen)]

    # Fees: the furthest report that names them, or the trades' where those are ahead.
    expected = fee_top.fees if fee_top is not None and fee_top.filled > r_filled else r_fees
    laid = fees_of(pair for f in fills for pair in f.fees)
    if laid != expected:
        when = fee_when if fee_when is not None else segments[-1].when
        fills.append(emulated(ZERO, ZERO, fees_minus(expected, laid), when, when.seq))
    return _summed([*fills, *beyond], disagreement)


def _summed(fills: list[Fill], disagreement: str | None) -> Layout:
    filled = cost = ZERO
    for f in fills:
        filled, cost = _add(filled, f.amount), _add(cost, f.cost)
    fees = fees_of(pair for f in fills for pair in f.fees)
    return Layout(tuple(fills), filled, cost, fees, disagreement)
