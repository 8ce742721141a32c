"""Fills of an order: its real trades, plus fills emulated from its cumulative totals.

Many venues report an order's cumulative ``filled``, ``cost`` and fees but no trades (ccxt
``has["fetchMyTrades"]`` false), or report trades late, or lose one. An order's fills are
therefore a pure function of two sets, so neither arrival order nor duplicates matter:

- its real trades (by trade id), and
- every distinct cumulative point the venue reported (a *level*: filled, cost, fees), with
  bounds on when it was reached (a report dating its last trade gives the time exactly).

Consecutive levels cut the order's history into *segments* (from one reported amount to the
next). Each real trade is placed in the segment it belongs to: by its time where the reports
around it are dated so that only one segment can hold it; else the segment it matches exactly
(amount and cost, then amount: a venue's cost may be rounded); else the first it fits in
(amount and cost, then amount). A trade dated after the furthest report, or for which no
segment has room, is beyond every report. Undated, a trade that could be inside the reports is
taken to be: counting a fill the reports already hold a second time is worse than counting it
one report late. Whatever of a segment its trades do not explain becomes one emulated fill
(amount, cost and fees: the differences of the cumulative totals, less the trades'). So a
missing trade is emulated where it was missing, a real trade is never counted twice, and no
fill has a negative amount or cost. (Planar prices such a fill with ``average`` while taking
its cost from ``cost``; here both come from cumulative totals.)

The order's totals are the sums of its fills: the venue's furthest report, or the real trades'
where those are ahead. Where reports and trades disagree at the same amount (a cost from a
rounded average, say), the trades are taken and the difference is returned for the reducer to
record as an anomaly. A segment's fees are the reports' where they name them (less the fees of
the trades in it that name theirs), else the trades'.

Cost: the layout is rebuilt when an order changes, O(n log n) in its fills: measured here, one
more report of an order with 250 partial fills folds in ~1.5 ms, with 1,000 in ~8 ms
(benchmarks/replay_bench.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

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
    fees_plus,
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
    filled: Decimal  # the cumulative amount at its end
    total_cost: Decimal  # the cumulative cost at its end
    lo: int | None  # its end level was reached at or after this (ms)...
    hi: int | None  # ... and at or before this
    after: int | None  # its fills happened after this (the previous level's ``lo``)
    seen: int  # the first event that showed any of it (a later report includes it too)


def _canonical(level: Level) -> tuple[Any, ...]:
    """A level's order, ties between equal values (1.0 and 1) broken by how they are
    written: the layout must not depend on a map's iteration order (that is, on hash seeds)."""
    return (
        level,
        str(level.filled),
        str(level.cost),
        tuple((c, str(v)) for c, v in level.fees),
    )


def _trade_key(fill: Fill) -> tuple[bool, int, int, str]:
    """Trades by the venue's time, then by id (numeric ids by number: "9" before "11")."""
    trade_id = fill.trade_id or ""
    return (
        fill.exchange_ts is None,
        fill.exchange_ts or 0,
        len(trade_id) if trade_id.isdigit() else 1 << 30,
        trade_id,
    )


def _segments(levels: Map[Level, When]) -> list[_Segment]:
    """The segments between consecutive reported amounts, with their reported fees and the
    bounds on their times (each level reached no earlier than the one before it)."""
    groups: dict[Decimal, tuple[Level, When, Level | None]] = {}
    for level, when in sorted(levels.items(), key=lambda kv: _canonical(kv[0])):
        found = groups.get(level.filled)
        if found is None:
            groups[level.filled] = (level, when, level if level.fee_known else None)
            continue
        top, first, fee_level = found
        if level.fee_known:
            fee_level = level  # the furthest of the group that named its fees (sorted input)
        groups[level.filled] = (level, first.narrowed(when), fee_level)
    ordered = [groups[amount] for amount in sorted(groups)]
    # Bounds: a level is reached no earlier than any before it, no later than any after it.
    lows: list[int | None] = []
    low: int | None = None
    for _, when, _ in ordered:
        if when.lo_ms is not None:
            low = when.lo_ms if low is None else max(low, when.lo_ms)
        lows.append(low)
    highs: list[int | None] = [None] * len(ordered)
    seens = [0] * len(ordered)
    high: int | None = None
    seen: int | None = None
    for i in range(len(ordered) - 1, -1, -1):
        when = ordered[i][1]
        if when.hi_ms is not None:
            high = when.hi_ms if high is None else min(high, when.hi_ms)
        highs[i] = high
        seen = when.seq if seen is None else min(seen, when.seq)
        seens[i] = seen
    segments: list[_Segment] = []
    filled = cost = ZERO
    known: Fees = NO_FEES
    for i, (top, _, fee_level) in enumerate(ordered):
        fees: Fees | None = None
        if fee_level is not None:
            fees = fees_minus(fee_level.fees, known)
            known = fee_level.fees
        segments.append(
            _Segment(
                _sub(top.filled, filled),
                _sub(top.cost, cost),
                fees,
                top.filled,
                top.cost,
                lows[i],
                highs[i],
                lows[i - 1] if i else None,
                seens[i],
            )
        )
        filled, cost = top.filled, top.cost
    return segments


def _fee_spans(segments: list[_Segment]) -> list[tuple[int, int, Fees]]:
    """For each segment whose report names fees: the segments its fees cover (since the last
    report that named them), and those fees."""
    spans: list[tuple[int, int, Fees]] = []
    first = 0
    for i, segment in enumerate(segments):
        if segment.fees is not None:
            spans.append((first, i, segment.fees))
            first = i + 1
    return spans


def _by_time(trade: Fill, segments: list[_Segment], lows: list[int]) -> int | None:
    """The one segment a dated trade can belong to, if the reports' times leave only one: its
    end level reached at or after the trade, the level before it reached before the trade."""
    ms = trade.exchange_ts
    if ms is None or not lows:
        return None
    first_dated = len(segments) - len(lows)
    i = first_dated + bisect.bisect_left(lows, ms)
    if i >= len(segments):
        return None
    if i == 0:
        return 0
    before = segments[i - 1].hi
    return i if before is not None and before < ms else None


def _place(trades: Sequence[Fill], segments: list[_Segment]) -> tuple[list[list[Fill]], list[Fill]]:
    """Which segment each real trade belongs to (see the module docstring), and the trades
    beyond every report."""
    room = [s.amount for s in segments]
    cost_room = [s.cost for s in segments]
    placed: list[list[Fill]] = [[] for _ in segments]
    beyond: list[Fill] = []

    def put(k: int, trade: Fill) -> None:
        placed[k].append(trade)
        room[k] = _sub(room[k], trade.amount)
        cost_room[k] = _sub(cost_room[k], trade.cost)

    top_hi = segments[-1].hi if segments else None
    lows: list[int] = [s.lo for s in segments if s.lo is not None]
    undated: list[Fill] = []
    for trade in trades:
        ms = trade.exchange_ts
        if ms is not None and top_hi is not None and ms > top_hi:
            beyond.append(trade)  # after the furthest report was true: no report holds it
            continue
        at = _by_time(trade, segments, lows)
        if at is None:
            undated.append(trade)
        else:
            put(at, trade)

    def matched(trades: list[Fill], exact: bool) -> list[Fill]:
        """Trades put in an empty segment they match (amount and cost, or amount); the rest."""
        free: dict[Any, list[int]] = {}
        for index, segment in enumerate(segments):
            if not placed[index]:
                key = (segment.amount, segment.cost) if exact else segment.amount
                free.setdefault(key, []).append(index)
        rest: list[Fill] = []
        for trade in trades:
            candidates = free.get((trade.amount, trade.cost) if exact else trade.amount)
            if candidates:
                put(candidates.pop(0), trade)
            else:
                rest.append(trade)
        return rest

    undated = matched(undated, exact=True)
    # Largest first, where amount and cost both fit; then a segment of the same amount (a
    # venue's cost may be rounded); then where the amount fits.
    unfit: list[Fill] = []
    for trade in sorted(undated, key=lambda t: t.amount, reverse=True):
        k = next(
            (
                j
                for j in range(len(segments))
                if room[j] >= trade.amount and cost_room[j] >= trade.cost
            ),
            None,
        )
        if k is None:
            unfit.append(trade)
        else:
            put(k, trade)
    unfit = matched(sorted(unfit, key=_trade_key), exact=False)
    for trade in unfit:
        k = next((j for j in range(len(segments)) if room[j] >= trade.amount), None)
        if k is None and segments and sum(room, ZERO) >= trade.amount:
            k = max(range(len(segments)), key=lambda j: (room[j], -j))  # split by the venue?
        if k is None:
            beyond.append(trade)
        else:
            put(k, trade)
    return placed, beyond


def _seen_by(trade: Fill, seq: int) -> Fill:
    """``trade``, dated in the trace by the first event that showed it (its own, or an
    earlier report of the order's totals that includes it)."""
    return replace(trade, seq=seq) if seq < trade.seq else trade


def lay_out(
    order_id: str,
    symbol: str,
    side: str | None,
    levels: Map[Level, When],
    real: Map[str, Fill],
    amount: Decimal | None = None,
) -> Layout:
    """The fills of an order from its reported levels and its real trades (see the module
    docstring); their amounts, costs and fees sum to the returned totals. Fills beyond the
    order's ``amount`` are a disagreement too."""
    layout = _lay_out(order_id, symbol, side, levels, real)
    if amount is not None and layout.filled > amount:
        beyond = (
            f"its fills add up to {layout.filled}, more than its amount {amount} (trades the "
            "reports cannot place, or reports of another order)"
        )
        disagreement = f"{layout.disagreement}; {beyond}" if layout.disagreement else beyond
        return layout._replace(disagreement=disagreement)
    return layout


def _lay_out(
    order_id: str,
    symbol: str,
    side: str | None,
    levels: Map[Level, When],
    real: Map[str, Fill],
) -> Layout:
    trades = sorted(real.values(), key=_trade_key)
    if side is not None:
        trades = [t if t.side is not None else replace(t, side=side) for t in trades]
    segments = _segments(levels)
    placed, beyond = _place(trades, segments)

    def emulated(amount: Decimal, cost: Decimal, fees: Fees, segment: _Segment) -> Fill:
        exact = segment.lo if segment.lo is not None and segment.lo == segment.hi else None
        return Fill(
            order_id,
            symbol,
            side,
            amount,
            cost,
            fees,
            None,
            True,
            exact,
            segment.after,
            segment.hi,
            True,
            segment.seen,
        )

    fills: list[Fill] = []
    emulated_at: list[int | None] = []  # per segment: its emulated fill in ``fills``, if any
    problems: list[str] = []
    carry_amount = carry_cost = ZERO
    for segment, mine in zip(segments, placed, strict=True):
        mine.sort(key=_trade_key)
        fills.extend(_seen_by(t, segment.seen) for t in mine)
        amount, cost = _add(segment.amount, carry_amount), _add(segment.cost, carry_cost)
        for t in mine:
            amount, cost = _sub(amount, t.amount), _sub(cost, t.cost)
        emulated_at.append(None)
        if amount > 0 and cost >= 0:
            emulated_at[-1] = len(fills)
            fills.append(emulated(amount, cost, NO_FEES, segment))
            carry_amount = carry_cost = ZERO
        elif amount == 0:  # the trades explain it (a cost they disagree on settles below)
            carry_amount, carry_cost = ZERO, cost
        else:  # inconsistent so far: the next segment settles it
            carry_amount, carry_cost = amount, cost
    spans = _fee_spans(segments)
    if carry_amount:
        # What the trades and the reports say cannot be reconciled segment by segment: one
        # emulated fill for what the trades leave of the furthest report, never negative.
        top = segments[-1]
        r_filled = r_cost = ZERO
        for trades_of in placed:
            for t in trades_of:
                r_filled, r_cost = _add(r_filled, t.amount), _add(r_cost, t.cost)
        problems.append(
            f"the venue's reports (filled {top.filled}, cost {top.total_cost}) and its trades "
            f"(filled {r_filled}, cost {r_cost}) do not add up; the trades are taken and the "
            f"rest emulated as one fill"
        )
        fills = [f for f in fills if not f.emulated]
        emulated_at = [None] * len(segments)
        rest_amount, rest_cost = _sub(top.filled, r_filled), _sub(top.total_cost, r_cost)
        if rest_amount > 0:
            emulated_at[-1] = len(fills)
            fills.append(emulated(rest_amount, max(rest_cost, ZERO), NO_FEES, top))
        if spans:  # the fees: one span, up to the furthest report that names them
            last = spans[-1][1]
            fees = fees_of(p for i in range(last + 1) for p in segments[i].fees or ())
            spans = [(0, len(segments) - 1 if rest_amount > 0 else last, fees)]
    elif carry_cost:
        # A cost the trades explain differently from the reports: what the emulated fills
        # carry makes it up (the reports' totals stand), else the trades are taken.
        for at in reversed([k for k in emulated_at if k is not None]):
            f = fills[at]
            if _add(f.cost, carry_cost) >= 0:
                fills[at] = replace(f, cost=_add(f.cost, carry_cost))
                carry_cost = ZERO
                break
        if carry_cost:
            top = segments[-1]
            problems.append(
                f"the venue reports cost {top.total_cost} at filled {top.filled}, its trades "
                f"sum to {_sub(top.total_cost, carry_cost)} (difference {carry_cost}); the "
                "trades are taken"
            )
    # Fees: each report that names them covers the segments since the last one that did;
    # what its trades' fees leave goes to an emulated fill of those segments, or on to the next
    # such report (a trade placed a segment early, where the reports do not date them).
    where = {f.trade_id: k for k, f in enumerate(fills) if not f.emulated}
    carry: Fees = NO_FEES
    for first, last, reported in spans:
        traded = [t for k in range(first, last + 1) for t in placed[k]]
        if len(reported) == 1 and any(c == "" for t in traded for c, _ in t.fees):
            # A trade that did not name its fee's currency: the reports do.
            currency = reported[0][0]
            for t in traded:
                if any(c == "" for c, _ in t.fees):
                    named = fees_of((c or currency, v) for c, v in t.fees)
                    position = where.get(t.trade_id)
                    if position is not None:
                        fills[position] = replace(fills[position], fees=named)
            traded = [
                replace(t, fees=fees_of((c or currency, v) for c, v in t.fees)) for t in traded
            ]
        charged = fees_of(p for t in traded if t.fee_known for p in t.fees)
        left = fees_plus(fees_minus(reported, charged), carry)
        carry = NO_FEES
        if not left:
            continue
        candidates = (emulated_at[k] for k in range(last, first - 1, -1))
        target = next((k for k in candidates if k is not None), None)
        if target is not None:
            fills[target] = replace(fills[target], fees=fees_plus(fills[target].fees, left))
        elif not all(t.fee_known for t in traded):
            fills.append(emulated(ZERO, ZERO, left, segments[last]))  # what trades left out
        else:
            carry = left
    if carry:  # an emulated fill before makes it up (the reports' totals stand)
        target = next((k for k in reversed(emulated_at) if k is not None), None)
        if target is not None:
            fills[target] = replace(fills[target], fees=fees_plus(fills[target].fees, carry))
        else:
            problems.append(
                f"the venue's reports and its trades differ on fees by {carry}; the trades "
                "are taken"
            )
    disagreement = "; ".join(problems) or None
    fills.extend(beyond)
    filled = cost = ZERO
    for f in fills:
        filled, cost = _add(filled, f.amount), _add(cost, f.cost)
    return Layout(
        tuple(fills), filled, cost, fees_of(p for f in fills for p in f.fees), disagreement
    )
