"""What a reliability run (crash, soak) ends with: one summary table, printed at the end of the
pytest run (conftest.py) and written where ``EVENTSRC_RELIABILITY_REPORTS`` points, if set; and
the checks that make the run fail loudly on a lost acknowledged event, an order placed twice for
one intent, or a final state that differs from the venue's truth."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

REPORTS: list[RunReport] = []


@attrs.define
class RunReport:
    name: str
    faults: dict[str, int] = attrs.Factory(dict)
    """Faults the venue injected, by kind (and kills, for a crash run)."""
    restarts: int = 0
    """Engine processes killed and restarted on the same trace."""
    orders_placed: int = 0
    """Orders the venue placed."""
    unique_intents: int = 0
    """Distinct intents (client order ids) among them."""
    events_acknowledged: int = 0
    """Events whose append returned (the trace's durability made them durable)."""
    events_found: int = 0
    """Of those, found byte-identical in the trace after recovery."""
    anomalies: int = 0
    """Anomalies the reducer recorded."""
    equal: bool = False
    """The final state equals the venue's truth."""
    notes: dict[str, Any] = attrs.Factory(dict)
    problems: list[str] = attrs.Factory(list)

    def table(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()) if v) or "none"
        rows = [
            ("faults injected", faults),
            ("restarts survived", str(self.restarts)),
            ("orders placed / unique intents", f"{self.orders_placed} / {self.unique_intents}"),
            (
                "events acknowledged / found after recovery",
                f"{self.events_acknowledged} / {self.events_found}",
            ),
            ("anomalies recorded", str(self.anomalies)),
            ("final state equals the venue's", "yes" if self.equal else "NO"),
            *((k, str(v)) for k, v in self.notes.items()),
        ]
        lines = [f"#### {self.name}", "", "| | |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        if self.problems:
            lines += ["", "Problems:", *(f"- {p}" for p in self.problems)]
        return "\n".join(lines)

    def finish(self) -> None:
        """Keep the table, then fail on anything the run must never do."""
        if self.orders_placed != self.unique_intents:
            self.problems.append(
                f"{self.orders_placed - self.unique_intents} order(s) placed twice for one intent"
            )
        if self.events_found != self.events_acknowledged:
            self.problems.append(
                f"{self.events_acknowledged - self.events_found} acknowledged event(s) lost"
            )
        if not self.equal:
            self.problems.append("the final state differs from the venue's truth")
        REPORTS.append(self)
        where = os.environ.get("EVENTSRC_RELIABILITY_REPORTS")
        if where:
            Path(where).mkdir(parents=True, exist_ok=True)
            (Path(where) / f"{self.name}.md").write_text(self.table() + "\n")
        assert not self.problems, "\n" + self.table()


def placed_twice(client_order_ids: list[str]) -> dict[str, int]:
    """The client order ids the venue placed more than once."""
    return {cid: n for cid, n in Counter(client_order_ids).items() if n > 1}
