"""The live views' model (fleet.dashboard, fleet.top): rows over the one fleet state.

``FleetModel`` is a thin view: bus messages go into a ``FleetState`` (the one
fold, which validates every payload), and each agent's row carries the
verdict of the one rule (``fleetstate.judge``) with the operator's intent, so
the page and top say ``stopped`` for an agent the operator stopped and never
show a retired one. A row holds only contract values (a name, a slug, a
number, a version reduced to printable text) plus the groups and host from
the inventory.

A verdict can change with no message at all (an online agent turns stale
when its heartbeat grows old), so the rows are re-judged against the clock
at least every ``TICK`` seconds. Each changed row bumps a version number: a
reader asks "what changed since version N" (``changes_since``) and waits for
the next change with ``wait_for_change`` instead of polling.
"""

from __future__ import annotations

import threading
import time
from typing import Optional
from urllib.parse import urlsplit

from agent_kit import contract, messages
from hatchery.core.intent import IntentBook, read_intent
from hatchery.inventory.model import Inventory
from hatchery.observe.fleetstate import BROKER_UPTIME_TOPIC, AgentFacts, FleetState, Judgement, Verdict

LOCAL_HOST = "localhost"
TICK = 1.0              # seconds: verdicts are re-judged against the clock at least this often
INTENT_EVERY = 2.0      # seconds between reads of the operator's intent (agent.stop, retire)


def host_of(docker_host: Optional[str]) -> str:
    """The machine an agent runs on, as a short label: ``ssh://root@h2`` -> ``h2``."""
    if not docker_host:
        return LOCAL_HOST
    parts = urlsplit(docker_host)
    return parts.hostname or parts.path or docker_host


def placement(inv: Inventory) -> dict:
    """{agent: (groups, host)} for the inventory's agents, in file order."""
    groups: dict = {}
    for group, members in inv.groups.items():
        for name in members:
            groups.setdefault(name, []).append(group)
    return {name: (tuple(sorted(set(groups.get(name, ())) | set(spec.groups))), host_of(spec.docker_host))
            for name, spec in inv.agents.items()}


def row(facts: AgentFacts, judgement: Judgement, groups: tuple = (), host: str = "?",
        interval: Optional[float] = None) -> dict:
    """One agent as the page and top show it (the dashboard's JSON keys). Only the verdict
    moves with the clock (FleetModel re-judges it); a reader computes the heartbeat's age
    from ``beat_ts``."""
    beat = facts.beat
    return {"agent": facts.name, "groups": list(groups), "host": host,
            "interval": interval or (beat.interval if beat else None),
            "in_inventory": facts.in_inventory, "state": str(judgement.verdict),
            "intent": str(judgement.intent), "beat_ts": beat.ts if beat else None,
            "ok": beat.ok if beat else None,
            "version": messages.printable(facts.version) if facts.version else None,
            "errors": beat.error_total if beat else None, "rtt_ms": facts.rtt_ms,
            "alerts": sum(facts.alerts.values()), "last_alert": facts.last_alert,
            "invalid": facts.invalid}


class FleetModel:
    """Bus messages in (``observe``), judged rows out; thread-safe, with change notification."""

    def __init__(self, inv: Inventory, clock=time.time, intent=None):
        self.clock = clock
        self.state = FleetState.for_inventory(inv, clock=clock)
        self.places = placement(inv)
        self._read_intent = intent or (lambda: read_intent(inv))
        self._book, self._book_at = IntentBook(), float("-inf")
        self._rows: dict = {}           # name -> the row last handed out
        self._changed: dict = {}        # name -> self.version when its row last changed
        self._seen = -1                 # the FleetState version folded into the rows
        self._judged_at = float("-inf")
        self.version = 0
        self._lock = threading.Lock()

    # --- input (network thread) ---------------------------------------------------

    def observe(self, message) -> None:
        self.state.observe(message)

    @property
    def dropped_extra(self) -> int:
        return self.state.dropped_extra

    # --- judging ------------------------------------------------------------------

    def refresh(self) -> int:
        """Fold what the bus changed into the rows, and re-judge every agent against the
        clock when TICK has passed; returns the current version."""
        with self._lock:
            now = self.clock()
            book = self._intent(now)
            self._seen, changed = self.state.changes_since(self._seen)
            names = [f.name for f in changed]
            if now - self._judged_at >= TICK:
                # list() of a dict runs whole under the GIL: no copy of every agent's facts
                names, self._judged_at = list(self.state.agents), now
            for name in names:
                self._update(name, book, now)
            return self.version

    def _intent(self, now: float) -> IntentBook:
        if now - self._book_at >= INTENT_EVERY:
            self._book, self._book_at = self._read_intent(), now
            self._judged_at = float("-inf")     # a new book may change any verdict
        return self._book

    def _update(self, name: str, book: IntentBook, now: float) -> None:
        groups, host = self.places.get(name, ((), "?"))
        facts = self.state.facts(name)
        new = row(facts, self.state.judge_facts(facts, book, now=now), groups, host,
                  self.state.intervals.get(name))
        old = self._rows.get(name)
        if old is None and new["state"] == Verdict.RETIRED:
            return                      # never shown: nothing to take off the page
        if new != old:
            self.version += 1
            self._rows[name], self._changed[name] = new, self.version

    # --- output (any thread) ------------------------------------------------------

    def changes_since(self, version: int) -> tuple:
        """(current version, rows changed after ``version``); a retired agent's last row
        says ``retired`` so that a page drops it."""
        current = self.refresh()
        with self._lock:
            rows = [self._rows[n] for n, v in self._changed.items() if v > version
                    and (version >= 0 or self._rows[n]["state"] != Verdict.RETIRED)]
        return current, rows

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until a row is newer than ``version`` (True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while self.refresh() <= version:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.state.wait_for_change(self._seen, min(left, TICK))
        return True

    def snapshot(self) -> list:
        """Every agent's row but the retired ones, for a reader that sorts and draws them."""
        self.refresh()
        with self._lock:
            return [dict(r) for r in self._rows.values() if r["state"] != Verdict.RETIRED]


def live_filters() -> list:
    """What the live views follow: everything under fleet/ (states, heartbeats, alerts,
    replies, commands, fleet.heal's alerts) and the broker's uptime (a restart's date)."""
    return [f"{contract.FLEET_PREFIX}/+/+", BROKER_UPTIME_TOPIC]
