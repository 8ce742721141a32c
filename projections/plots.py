"""A PNG of a trace: the equity curve on top, and below it, for each asset traded (or priced, if
none was traded), its last price over time with the fills on it (buys ▲, sells ▼). And a PNG of
the orders' latencies: a histogram per lifecycle step (``plot_latency``).

Needs matplotlib (``pip install 'eventsrc[analytics]'``), imported only here, only when a plot
is drawn; it draws with matplotlib's object API and the Agg renderer (no pyplot state, no
display).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import IO, Any

from projections.equity import History
from projections.extra import require
from projections.lifecycles import STEPS, Lifecycle

__all__ = ["MAX_ASSETS", "plot_history", "plot_latency"]

MAX_ASSETS = 4
"""At most this many assets get a price panel (the most traded first)."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _time(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


def plot_history(found: History, out: IO[bytes], title: str = "") -> list[str]:
    """Draw ``found`` as a PNG written to ``out``; returns the assets given a price panel."""
    figure_module = require("matplotlib.figure", "plotting")
    traded: dict[str, int] = {}
    for timed in found.fills:
        traded[timed.fill.symbol] = traded.get(timed.fill.symbol, 0) + 1
    priced = sorted({p.symbol for p in found.prices})
    assets = sorted(traded, key=lambda s: (-traded[s], s)) or priced
    assets = assets[:MAX_ASSETS]
    figure: Any = figure_module.Figure(figsize=(10, 3 + 2.5 * len(assets)), layout="constrained")
    axes: Any = figure.subplots(1 + len(assets), 1, sharex=True, squeeze=False)[:, 0]
    dates = require("matplotlib.dates", "plotting")
    locator = dates.AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    top = axes[0]
    currency = found.main_currency or "?"
    # Points with a currency not valued yet (no price seen) would show a jump when its first
    # price arrives that no trade made: drawn only if no point values everything.
    equity = [p for p in found.equity if not p.unvalued] or list(found.equity)
    if equity:
        top.plot(
            [_time(p.ts) for p in equity],
            [float(p.equity) for p in equity],
            drawstyle="steps-post",
            color="tab:blue",
        )
    else:
        top.text(0.5, 0.5, "no equity: no cash valued yet", ha="center", transform=top.transAxes)
    top.set_ylabel(f"equity ({currency})")
    top.set_title(title or "equity at the last prices, and fills")
    top.grid(alpha=0.3)
    for ax, symbol in zip(axes[1:], assets, strict=True):
        points = [p for p in found.prices if p.symbol == symbol]
        if points:
            ax.plot(
                [_time(p.ts) for p in points],
                [float(p.price) for p in points],
                drawstyle="steps-post",
                color="0.4",
                linewidth=1,
                label="last price",
            )
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            fills = [t for t in found.fills if t.fill.symbol == symbol and t.fill.side == side]
            if fills:
                ax.scatter(
                    [_time(t.ts) for t in fills],
                    [float(t.fill.price or 0) for t in fills],
                    marker=marker,
                    color=color,
                    s=40,
                    zorder=3,
                    label=f"{side} ({len(fills)})",
                )
        ax.set_ylabel(symbol)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("time (UTC, when recorded)")
    figure.savefig(out, format="png", dpi=100)
    return assets


_STEP_TITLES = {
    "acknowledge": "request -> acknowledged",
    "first_fill": "acknowledged -> first fill",
    "finish": "last step -> closed / canceled / rejected",
    "total": "request -> finished",
}


def plot_latency(found: Iterable[Lifecycle], out: IO[bytes], title: str = "") -> dict[str, int]:
    """A histogram of each lifecycle step's latency (ms, log scale when they span more than
    two decades) as a PNG written to ``out``; returns how many orders each step counts."""
    figure_module = require("matplotlib.figure", "plotting")
    lives = list(found)
    figure: Any = figure_module.Figure(figsize=(10, 7), layout="constrained")
    axes: Any = figure.subplots(2, 2, squeeze=False).ravel()
    counts: dict[str, int] = {}
    for ax, step in zip(axes, STEPS, strict=True):
        values = [v / 1e6 for life in lives if (v := getattr(life, f"{step}_ns")) is not None]
        counts[step] = len(values)
        if values:
            low, high = min(values), max(values)
            if low > 0 and high / low > 100:
                numpy = require("numpy", "plotting")
                ax.hist(values, bins=numpy.geomspace(low, high, 40), color="tab:blue")
                ax.set_xscale("log")
            else:
                ax.hist(values, bins=40, color="tab:blue")
        else:
            ax.text(0.5, 0.5, "no order reached this step", ha="center", transform=ax.transAxes)
        ax.set_title(f"{_STEP_TITLES[step]} ({len(values)} orders)", fontsize="medium")
        ax.set_xlabel("ms")
        ax.grid(alpha=0.3)
    figure.suptitle(title or "order latencies (local clock)")
    figure.savefig(out, format="png", dpi=100)
    return counts
