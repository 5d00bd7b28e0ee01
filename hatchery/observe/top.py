"""fleet.top: the data of the live terminal view (the drawing is in hatchery.tasks.views).

Pure functions over ``FleetModel.snapshot()``: the rows to show, sorted by
state (worst first) or by heartbeat age (oldest first), the fleet totals, and
the keys the view understands. Everything shown is a validated contract value
(a name, a slug, a number); the drawing still escapes it for the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hatchery.observe.live import STALE, UNKNOWN, AgentLive

SORT_STATE, SORT_AGE, SORT_NAME = "state", "age", "name"
SORTS = (SORT_STATE, SORT_AGE, SORT_NAME)
STATE_ORDER = {"offline": 0, STALE: 1, UNKNOWN: 2, "online": 3}
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


def to_row(agent: AgentLive, now: float) -> TopRow:
    name = agent.name if agent.in_inventory else f"{agent.name} (not in inventory)"
    return TopRow(name, agent.shown_state(now), agent.age(now), agent.version, agent.rtt_ms,
                  agent.errors, sum(agent.alerts.values()), agent.last_alert,
                  ",".join(agent.groups), agent.host)


def rows(agents: list, now: float, sort: str = SORT_STATE) -> list:
    """Rows in display order: worst state first, or oldest heartbeat first, or by name."""
    table = [to_row(a, now) for a in agents]
    if sort == SORT_AGE:   # never heard from first, then the oldest heartbeat
        return sorted(table, key=lambda r: (r.age is not None, -(r.age or 0.0), r.agent))
    if sort == SORT_NAME:
        return sorted(table, key=lambda r: r.agent)
    return sorted(table, key=lambda r: (STATE_ORDER.get(r.state, 9), r.agent))


def totals(table: list) -> dict:
    counts = {"agents": len(table), "online": 0, STALE: 0, "offline": 0, UNKNOWN: 0}
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
