"""``python -m tests.conformance [--fixtures DIR] [--json]``: the conformance report.

A table of venue x method -> cases, events recorded, state equal to what ccxt's ``expected``
implies (yes/no; "skipped" with why for a method the adapter cannot make), then each
difference. Exits 1 if any case differs, 2 if the directory holds no venue file. Sockets are
refused while it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.ccxt_fixtures import no_network
from tests.conformance import DEFAULT_FIXTURES, Outcome, cases_in, run_cases, venue_files


def table(outcomes: Sequence[Outcome]) -> str:
    """venue x method -> cases, events recorded, state equal to expected."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.case.venue, outcome.case.method), []).append(outcome)
    rows = [("venue", "method", "cases", "events", "state equal")]
    for (venue, method), group in groups.items():
        skipped = [o for o in group if o.skipped is not None]
        equal = (
            "skipped"
            if len(skipped) == len(group)
            else ("yes" if all(o.ok for o in group if o.skipped is None) else "no")
        )
        events = sum(len(o.events) for o in group)
        rows.append((venue, method, str(len(group)), str(events), equal))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def details(outcomes: Sequence[Outcome]) -> list[str]:
    lines = []
    for o in outcomes:
        if o.skipped is not None:
            lines.append(f"{o.case.name} ({o.case.description}): skipped: {o.skipped}")
        lines.extend(
            f"{o.case.name} ({o.case.description}): {difference}" for difference in o.differences
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="Recorded venue answers through ccxt, CcxtVenue, a trace and the fold.",
    )
    parser.add_argument(
        "--fixtures",
        type=Path,
        default=DEFAULT_FIXTURES,
        help=f"a directory of venue files (default: {DEFAULT_FIXTURES})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    files = venue_files(args.fixtures)
    if not files:
        print(f"no venue file in {args.fixtures}", file=sys.stderr)
        return 2
    with no_network():
        outcomes = run_cases([c for path in files for c in cases_in(path)])
    failed = [o for o in outcomes if o.skipped is None and not o.ok]
    if args.json:
        report = {
            "fixtures": str(args.fixtures),
            "cases": len(outcomes),
            "equal": sum(o.ok for o in outcomes),
            "skipped": sum(o.skipped is not None for o in outcomes),
            "differ": len(failed),
            "outcomes": [o.to_json() for o in outcomes],
        }
        print(json.dumps(report, indent=2))
    else:
        print(table(outcomes))
        for line in details(outcomes):
            print(line)
        print(
            f"{len(outcomes)} cases from {len(files)} venue files in {args.fixtures}:"
            f" {sum(o.ok for o in outcomes)} equal,"
            f" {sum(o.skipped is not None for o in outcomes)} skipped, {len(failed)} differ"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
