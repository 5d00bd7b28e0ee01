"""The exporter's /metrics text at fleet scale: only agents that changed are rendered again.

Between two scrapes (15 s apart) few of 10,000 agents change: a heartbeat
comes every few minutes. ``ScrapeText`` keeps each agent's sample lines,
rendered once, and re-renders an agent only when the fleet state says it
changed (``FleetState.changes_since``) or its pinned error codes did. Per
scrape it still writes what depends on the clock (each online agent's
heartbeat age) and on the operator's intent (stopped agents are marked,
retired ones left out), and the bus-wide counters. The text is the same as
``BusMetrics.families()`` rendered whole (tests/fleet/test_exporter_text.py).
"""

from __future__ import annotations

from typing import Optional

from agent_kit import contract
from hatchery.observe import metrics_text
from hatchery.observe.metrics_text import escape_label, go_float

# The per-agent families in exposition order (BusMetrics.agent_family_map's keys).
AGENT_KEYS = ("up", "seen", "interval", "stopped", "age", "uptime", "mem", "cpu", "errors", "rtt")


class Entry:
    """One agent's rendered lines, and what they were rendered from."""

    __slots__ = ("changed", "codes", "lines", "sent", "bad")

    def __init__(self, changed: int, codes: int, lines: dict, sent: Optional[float], bad: bool):
        self.changed, self.codes, self.lines, self.sent, self.bad = changed, codes, lines, sent, bad


class ScrapeText:
    """``render()``: the exposition text of a BusMetrics, agents' lines cached."""

    def __init__(self, metrics):
        self.metrics = metrics
        self.families = metrics.agent_family_map()    # definitions only: names, help, labels
        self.version = -1
        self.entries: dict = {}         # agent -> Entry

    def render(self) -> bytes:
        metrics = self.metrics
        book, now = metrics.intent(), metrics.clock()
        version, changed = metrics.state.changes_since(self.version)
        with metrics.lock:
            for facts in changed:
                self.entries[facts.name] = self._entry(facts, now)
            self.version = version
            self._refresh_codes(now)
            names = [n for n in list(metrics.state.agents) if n not in book.retired]
            parts = [self._family(self.families[key], key, names, now, book.stopped)
                     for key in AGENT_KEYS]
            bus = metrics._bus_families(list(metrics.state.agents.values()), book.retired)
        return "".join([*parts, *(family.text() for family in bus)]).encode("utf-8")

    def _refresh_codes(self, now: float) -> None:
        """Agents whose pinned error codes changed after their facts did: render again."""
        codes = self.metrics.error_codes
        for name, entry in self.entries.items():
            if entry.codes != len(codes.get(name, ())):
                facts = self.metrics.state.agents.get(name)
                if facts is not None:
                    self.entries[name] = self._entry(facts.copy(), now)

    def _entry(self, facts, now: float) -> Entry:
        metrics, name = self.metrics, facts.name
        codes = len(metrics.error_codes.get(name, ()))
        try:
            samples = metrics._agent_samples(facts, now, False)
        except (ArithmeticError, ValueError, TypeError):
            return Entry(facts.changed, codes, {}, None, True)
        families = self.families
        lines: dict = {}
        sent = None
        for key, labels, value in samples:
            if key == "age":       # rendered per scrape from when the heartbeat was sent
                beat = facts.beat
                sent = min(beat.ts, (facts.beat_received or beat.ts) + contract.FUTURE_SLACK_S)
                continue
            lines[key] = lines.get(key, "") + _line(families[key], labels, value)
        return Entry(facts.changed, codes, lines, sent, False)

    def _family(self, family, key: str, names: list, now: float, stopped: frozenset) -> str:
        entries, metrics = self.entries, self.metrics
        head = f"# HELP {family.name} {metrics_text.escape_help(family.help)}\n" \
               f"# TYPE {family.name} {family.kind}\n"
        if key == "age":
            return head + "".join(
                f'{family.name}{{agent="{escape_label(n)}"}} {go_float(max(0.0, now - e.sent))}\n'
                for n in names if (e := entries.get(n)) is not None and e.sent is not None)
        if key == "stopped":
            return head + "".join(f'{family.name}{{agent="{escape_label(n)}"}} 1.0\n'
                                  for n in names if n in stopped and not _bad(entries.get(n)))
        if key == "up":           # a bad agent's series are left out, and counted once a scrape
            for n in names:
                if _bad(entries.get(n)):
                    metrics.bad_series[n] = metrics.bad_series.get(n, 0) + 1
        return head + "".join(e.lines.get(key, "") for n in names
                              if (e := entries.get(n)) is not None)


def _bad(entry: Optional[Entry]) -> bool:
    return entry is not None and entry.bad


def _line(family, labels, value) -> str:
    if len(family.labels) == 1:
        return f'{family.name}{{{family.labels[0]}="{escape_label(str(labels[0]))}"}} ' \
               f"{go_float(value)}\n"
    pairs = ",".join(f'{name}="{escape_label(str(v))}"' for name, v in zip(family.labels, labels))
    return f"{family.name}{{{pairs}}} {go_float(value)}\n"
