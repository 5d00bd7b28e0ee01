"""fleet.top: the data of the live terminal view (the drawing is in hatchery.tasks.views).

Pure functions over ``FleetModel.snapshot()`` (judged rows, retired agents
left out): the rows to show, sorted by verdict (worst first) or by heartbeat
age (oldest first), the fleet totals, the keys the view understands, and the
layout of the table for a terminal width.

The layout keeps columns where they are: every column has a fixed width (the
agent's and the host's are those of the longest name in the inventory), so a
refresh never moves one. When the terminal is too narrow, whole columns go,
least needed first (``PRIORITY``): groups and the last alert before anything
else; the agent's name and its state are never dropped nor cut.

Everything shown is a validated contract value (a name, a slug, a number, a
version reduced to printable text); the drawing still escapes it for the
terminal.
"""

from __future__ import annotations

import time
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
COLUMNS = ("agent", "state", "since", "age", "uptime", "memory", "cpu", "version", "rtt",
           "errors", "alerts", "last alert", "groups", "host")
KEYS_HELP = "q quit · s sort by state · a sort by heartbeat age · n sort by name"
GAP = 1                 # spaces between columns
NEVER_DROPPED = 0
# Which columns go first when the terminal is narrow: the highest number first.
PRIORITY = {"agent": NEVER_DROPPED, "state": NEVER_DROPPED, "age": 1, "host": 2, "memory": 3,
            "cpu": 3, "version": 4, "since": 5, "uptime": 6, "rtt": 7, "errors": 8, "alerts": 8,
            "last alert": 10, "groups": 11}
WIDTH = {"state": 9, "since": 5, "age": 5, "uptime": 6, "memory": 6, "cpu": 5, "version": 14,
         "rtt": 8, "errors": 6, "alerts": 6, "last alert": 16, "groups": 14}
RIGHT = frozenset({"since", "age", "uptime", "memory", "cpu", "rtt", "errors", "alerts"})
MAX_HOST = 24
EVENTS_SHOWN = 4        # lines of recent events under the table


@dataclass
class TopRow:
    agent: str
    state: str
    since: Optional[float]
    age: Optional[float]
    uptime: Optional[float]
    mem_kb: Optional[int]
    cpu: Optional[float]
    version: Optional[str]
    rtt_ms: Optional[float]
    errors: Optional[int]
    alerts: int
    last_alert: Optional[str]
    groups: str
    host: str

    def cells(self) -> tuple:
        """The row's text per column of COLUMNS (not yet fitted to a width)."""
        return (self.agent, self.state, _span(self.since), _span(self.age), _span(self.uptime),
                _memory(self.mem_kb), _cpu(self.cpu),
                self.version or "-", "-" if self.rtt_ms is None else f"{self.rtt_ms:.1f}ms",
                "-" if self.errors is None else str(self.errors), str(self.alerts),
                self.last_alert or "-", self.groups or "-", self.host)


def to_row(live: dict, now: float) -> TopRow:
    """A ``live.row`` for the terminal; the ages are counted from the agent's own ts."""
    name = live["agent"] if live["in_inventory"] else f"{live['agent']} (not in inventory)"
    age = None if live["beat_ts"] is None else max(0.0, now - live["beat_ts"])
    since = None if live.get("since") is None else max(0.0, now - live["since"])
    return TopRow(name, live["state"], since, age, live.get("uptime"), live.get("mem_kb"),
                  live.get("cpu"), live["version"], live["rtt_ms"], live["errors"], live["alerts"],
                  live["last_alert"], ",".join(live["groups"]), live["host"])


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


def summary(counts: dict) -> str:
    """'5 agents: 3 online, 1 stale, 1 offline · 2 alerts': the verdicts that have agents."""
    states = ", ".join(f"{counts[v]} {v}" for v in TOTALS if counts.get(v))
    extra = [f"{counts[k]} {k}" for k in ("errors", "alerts") if counts.get(k)]
    return " · ".join([f"{counts['agents']} agents" + (f": {states}" if states else ""), *extra])


def sort_for_key(key: str, current: str) -> Optional[str]:
    """The sort a key press asks for; None when the key means nothing to us."""
    return {"s": SORT_STATE, "a": SORT_AGE, "n": SORT_NAME}.get(key.lower())


# --- the layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    index: int              # in COLUMNS (and TopRow.cells())
    width: int
    right: bool


def layout(width: int, names: list, hosts: list) -> list:
    """The columns that fit ``width``, in COLUMNS order, each with its fixed width. ``names``
    and ``hosts``: every agent name and host the view may show (the inventory's), so the
    widths stay put while agents come and go."""
    sized = {**WIDTH, "agent": max([5, *map(len, names)]),
             "host": min(MAX_HOST, max([4, *map(len, hosts)]))}
    kept = list(COLUMNS)
    while _total(kept, sized) > width:
        droppable = [c for c in kept if PRIORITY[c] != NEVER_DROPPED]
        if not droppable:
            break
        kept.remove(max(reversed(droppable), key=lambda c: PRIORITY[c]))
    return [Column(c, COLUMNS.index(c), sized[c], c in RIGHT) for c in kept]


def _total(kept: list, sized: dict) -> int:
    return sum(sized[c] for c in kept) + GAP * (len(kept) - 1)


def fit(text: str, column: Column) -> str:
    """``text`` padded (or cut with '…') to the column's width; names are never cut. Anything
    not printable becomes '?' (no escape sequence reaches the terminal)."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > column.width:
        if PRIORITY[column.name] == NEVER_DROPPED:
            return text
        text = text[: column.width - 1] + "…"
    return text.rjust(column.width) if column.right else text.ljust(column.width)


def header(columns: list) -> str:
    return (" " * GAP).join(fit(c.name, c) for c in columns)


def line(row: TopRow, columns: list) -> tuple:
    """(the row's text, (start, end) of its state) for the drawing to colour."""
    cells = row.cells()
    parts, state, at = [], (0, 0), 0
    for column in columns:
        text = fit(cells[column.index], column)
        if column.name == "state":
            state = (at, at + len(text))
        parts.append(text)
        at += len(text) + GAP
    return (" " * GAP).join(parts), state


def event_lines(events: list, width: int) -> list:
    """The newest events (``history.Event``), newest first, one line each, cut to ``width``."""
    out = []
    for event in reversed(events[-EVENTS_SHOWN:]):
        stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
        who = f" {event.agent}" if event.agent else ""
        said = f"{event.kind} {event.text}" if event.kind in ("alert", "heal") else event.text
        text = f"{stamp}{who} {said}"
        out.append(text if len(text) <= width else text[: max(1, width - 1)] + "…")
    return out


def _span(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _cpu(share: Optional[float]) -> str:
    if share is None:
        return "-"
    percent = share * 100
    return f"{percent:.1f}%" if percent < 10 else f"{percent:.0f}%"


def _memory(kb: Optional[int]) -> str:
    if kb is None:
        return "-"
    return f"{kb / 1024:.1f}M" if kb < 1024 * 1024 else f"{kb / 1024 / 1024:.2f}G"
