"""fleet.top: the data of the live terminal view (the drawing is in hatchery.tasks.views).

Pure functions over ``FleetModel.snapshot()`` (judged rows, retired agents
left out): the rows to show, sorted by verdict (worst first) or by heartbeat
age (oldest first), the fleet totals, and the keys the view understands.
Everything shown is a validated contract value (a name, a slug, a number, a
version reduced to printable text); the drawing still escapes it for the
terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hatchery.observe.fleetstate import Verdict

SORT_STATE, SORT_AGE, SORT_NAME = "state", "age", "name"
SORTS = (SORT_STATE, SORT_AGE, SORT_NAME)
# worst first; stopped (on purpose) just above online
STATE_ORDER = {str(v): i for i, v in enumerate((
    Verdict.OFFLINE, Verdict.MISSING, Verdict.UNHEALTHY, Verdict.STALE, Verdict.UNKNOWN,
    Verdict.STOPPED, Verdict.ONLINE))}
TOTALS = ("online", "unhealthy", "stale", "offline", "missing", "unknown", "stopped")
COLUMNS = ("agent", "state", "age", "version", "rtt", "errors", "alerts", "last alert",
           "groups", "host")
KEYS_HELP = "q quit · s sort by state · a sort by heartbeat age · n sort by name"


@dataclass
class TopRow:
    agent: str
    state: str
    age: Optional[float]
    version: Optional[str]
    rtt_ms: Optional[float]
    errors: Optional[int]
    alerts: int
    last_alert: Optional[str]
    groups: str
    host: str

    def cells(self) -> tuple:
        return (self.agent, self.state, _age(self.age), self.version or "-",
                "-" if self.rtt_ms is None else f"{self.rtt_ms:.1f} ms",
                "-" if self.errors is None else str(self.errors), str(self.alerts),
                self.last_alert or "-", self.groups, self.host)


def to_row(live: dict, now: float) -> TopRow:
    """A ``live.row`` for the terminal; the age is counted from the heartbeat's own ts."""
    name = live["agent"] if live["in_inventory"] else f"{live['agent']} (not in inventory)"
    age = None if live["beat_ts"] is None else max(0.0, now - live["beat_ts"])
    return TopRow(name, live["state"], age, live["version"], live["rtt_ms"], live["errors"],
                  live["alerts"], live["last_alert"], ",".join(live["groups"]), live["host"])


def rows(agents: list, now: float, sort: str = SORT_STATE) -> list:
    """Rows in display order: worst verdict first, or oldest heartbeat first, or by name."""
    table = [to_row(a, now) for a in agents]
    if sort == SORT_AGE:   # never heard from first, then the oldest heartbeat
        return sorted(table, key=lambda r: (r.age is not None, -(r.age or 0.0), r.agent))
    if sort == SORT_NAME:
        return sorted(table, key=lambda r: r.agent)
    return sorted(table, key=lambda r: (STATE_ORDER.get(r.state, 9), r.agent))


def totals(table: list) -> dict:
    counts = {"agents": len(table), **dict.fromkeys(TOTALS, 0)}
    for row in table:
        counts[row.state] = counts.get(row.state, 0) + 1
    counts["errors"] = sum(r.errors or 0 for r in table)
    counts["alerts"] = sum(r.alerts for r in table)
    return counts


def sort_for_key(key: str, current: str) -> Optional[str]:
    """The sort a key press asks for; None when the key means nothing to us."""
    return {"s": SORT_STATE, "a": SORT_AGE, "n": SORT_NAME}.get(key.lower())


def _age(age: Optional[float]) -> str:
    if age is None:
        return "-"
    if age < 120:
        return f"{age:.1f}s"
    if age < 7200:
        return f"{age / 60:.1f}m"
    return f"{age / 3600:.1f}h"
