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

Time context: each row says ``since`` when its verdict began (the moment this
model saw it change; for the verdicts it found at start, the best the facts
tell: the birth of an online agent, the last word of an offline one, the
moment a silent one crossed its threshold; ``since_exact`` is then False),
and every change, alert, heal action, rollout batch and retirement goes into
the ``history`` (``observe.history``) with the memory, CPU and round trip
each agent reported, for the last hour.

Rollout batches are read from the operator's intent, not from the bus:
fleet.rollout leases each batch's agents (``core.intent``) while it replaces
them, so a new set of agents leased by one owner is a batch and its release
ends it. Nothing new goes on the bus for it, and the model already reads the
intent for stopped and retired agents.
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
from hatchery.observe.history import History

LOCAL_HOST = "localhost"
TICK = 1.0              # seconds: verdicts are re-judged against the clock at least this often
INTENT_EVERY = 2.0      # seconds between reads of the operator's intent (agent.stop, retire, leases)
ROLLOUT_OWNER = "fleet.rollout"     # core.intent.owner_label of a rollout's lease starts so
SAMPLED = frozenset({Verdict.ONLINE, Verdict.UNHEALTHY})   # verdicts whose figures the history keeps
NAMES_SHOWN = 10        # agents named in one rollout event; the rest are counted
MAX_OWNERS = 100        # lease owners whose batch numbers are remembered


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
    from ``beat_ts``. ``since`` is FleetModel's to fill."""
    beat = facts.beat
    return {"agent": facts.name, "groups": list(groups), "host": host,
            "interval": interval or (beat.interval if beat else None),
            "in_inventory": facts.in_inventory, "state": str(judgement.verdict),
            "intent": str(judgement.intent), "beat_ts": beat.ts if beat else None,
            "ok": beat.ok if beat else None,
            "version": messages.printable(facts.version) if facts.version else None,
            "uptime": beat.uptime if beat else None, "mem_kb": beat.mem_kb if beat else None,
            "cpu": beat.cpu if beat else None,
            "errors": beat.error_total if beat else None, "rtt_ms": facts.rtt_ms,
            "alerts": sum(facts.alerts.values()), "last_alert": facts.last_alert,
            "last_alert_at": facts.last_alert_at, "invalid": facts.invalid,
            "since": None, "since_exact": False}


def first_since(facts: AgentFacts, judgement: Judgement, book: IntentBook,
                now: float) -> tuple:
    """(when the verdict found at start began, exact?) as far as the facts tell: a birth, a
    threshold crossed and a recorded stop are exact; an offline or unknown agent's last
    word is only a bound (it went down after it)."""
    verdict, beat = judgement.verdict, facts.beat
    if verdict is Verdict.STOPPED:
        return book.since(facts.name), True
    if verdict is Verdict.STALE and beat is not None and beat.ts <= now:
        return beat.ts + judgement.threshold_s, True    # when it crossed the threshold
    if verdict in SAMPLED and facts.online:
        return facts.state_ts, True                     # its birth
    return facts.last_announced(), False                # offline, unknown: its last word


class FleetModel:
    """Bus messages in (``observe``), judged rows out; thread-safe, with change notification."""

    def __init__(self, inv: Inventory, clock=time.time, intent=None):
        self.inv, self.clock = inv, clock
        self.state = FleetState.for_inventory(inv, clock=clock)
        self.places = placement(inv)
        self._read_intent = intent or (lambda: read_intent(inv))
        self._book, self._book_at = IntentBook(), float("-inf")
        self._rows: dict = {}           # name -> the row last handed out
        self._changed: dict = {}        # name -> self.version when its row last changed
        self._seen = -1                 # the FleetState version folded into the rows
        self._judged_at = float("-inf")
        self.version = 0
        self.history = History()
        self._batches: dict = {}        # lease owner -> (batch number, its names, still held)
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
            ticked = now - self._judged_at >= TICK
            if ticked:
                # list() of a dict runs whole under the GIL: no copy of every agent's facts
                names, self._judged_at = list(self.state.agents), now
            for name in names:
                self._update(name, book, now)
            if ticked:
                self.history.fleet.put(now, self._counts())
            return self.version

    def _counts(self) -> dict:
        counts: dict = {}
        for shown in self._rows.values():
            counts[shown["state"]] = counts.get(shown["state"], 0) + 1
        return counts

    def _intent(self, now: float) -> IntentBook:
        if now - self._book_at >= INTENT_EVERY:
            book = self._read_intent()
            self._leases(book, now)
            self._book, self._book_at = book, now
            self._judged_at = float("-inf")     # a new book may change any verdict
        return self._book

    def _leases(self, book: IntentBook, now: float) -> None:
        """Rollout batches from the leases: a new set of names held by one owner starts a
        batch (at the time the lease was taken), the owner holding nothing ends it."""
        held: dict = {}                 # owner -> {name: taken}
        for name, lease in book.leases.items():
            if lease.valid(now):
                held.setdefault(lease.owner, {})[name] = lease.taken
        for owner, names in held.items():
            number, before, _ = self._batches.get(owner, (0, frozenset(), False))
            if set(names) - before:
                self._batches[owner] = (number + 1, frozenset(names), True)
                self._lease_event(min(names.values()) or now, owner,
                                  f"batch {number + 1} started", sorted(names))
        for owner, (number, names, active) in list(self._batches.items()):
            if active and owner not in held:
                self._batches[owner] = (number, frozenset(), False)
                self._lease_event(now, owner, f"batch {number} done", sorted(names))
        while len(self._batches) > MAX_OWNERS:      # a rollout's owner label holds its pid
            del self._batches[next(iter(self._batches))]

    def _lease_event(self, at: float, owner: str, what: str, names: list) -> None:
        rollout = owner.startswith(ROLLOUT_OWNER)
        shown = ", ".join(names[:NAMES_SHOWN]) + (f" and {len(names) - NAMES_SHOWN} more"
                                                  if len(names) > NAMES_SHOWN else "")
        self.history.timeline.add(at, "rollout" if rollout else "lease", None,
                                  f"{'rollout' if rollout else 'lease'} {what}: {shown} ({owner})")

    def _update(self, name: str, book: IntentBook, now: float) -> None:
        groups, host = self.places.get(name, ((), "?"))
        facts = self.state.facts(name)
        judgement = self.state.judge_facts(facts, book, now=now)
        new = row(facts, judgement, groups, host, self.state.intervals.get(name))
        old = self._rows.get(name)
        if old is None and new["state"] == Verdict.RETIRED:
            return                      # never shown: nothing to take off the page
        self._time_context(new, old, facts, judgement, book, now)
        if judgement.verdict in SAMPLED and facts.beat is not None:
            self.history.sparks.put(name, now, facts.beat.mem_kb, facts.beat.cpu, facts.rtt_ms)
        if new != old:
            self.version += 1
            self._rows[name], self._changed[name] = new, self.version

    def _time_context(self, new: dict, old: Optional[dict], facts: AgentFacts,
                      judgement: Judgement, book: IntentBook, now: float) -> None:
        """``since`` on the new row, and the timeline's events for what changed."""
        timeline, name = self.history.timeline, new["agent"]
        if old is None:
            new["since"], new["since_exact"] = first_since(facts, judgement, book, now)
        elif old["state"] == new["state"]:
            new["since"], new["since_exact"] = old["since"], old["since_exact"]
        else:
            new["since"], new["since_exact"] = _since_change(facts, judgement, book, now), True
            kind = "retired" if judgement.verdict is Verdict.RETIRED else "state"
            if kind == "retired":
                self.history.sparks.forget(name)
            timeline.add(new["since"], kind, name, f"{old['state']} → {new['state']}")
        at = new["last_alert_at"]
        if old is not None and at is not None and at != old["last_alert_at"]:
            code = new["last_alert"] or "?"
            more = new["alerts"] - old["alerts"]
            timeline.add(at, "heal" if code.startswith("heal-") else "alert", name,
                         code + (f" ×{more}" if more > 1 else ""))
    def keep_time(self, stop: threading.Event) -> threading.Thread:
        """Re-judge every TICK on a thread of its own until ``stop``: the history records
        its hour even while no page is open (readers only refresh while they read)."""
        def tick() -> None:
            while not stop.wait(TICK):
                self.refresh()
        thread = threading.Thread(target=tick, name="fleet-clock", daemon=True)
        thread.start()
        return thread

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


def _since_change(facts: AgentFacts, judgement: Judgement, book: IntentBook, now: float) -> float:
    """A verdict that just changed began now, but a heartbeat that just grew too old
    crossed its threshold a little earlier (between two re-judgements), and a stop was
    recorded when agent.stop ran."""
    if judgement.verdict is Verdict.STOPPED:
        return min(now, book.since(facts.name) or now)
    if judgement.verdict is Verdict.STALE and facts.beat is not None:
        crossed = facts.beat.ts + judgement.threshold_s
        return crossed if crossed <= now else now
    return now


def live_filters() -> list:
    """What the live views follow: everything under fleet/ (states, heartbeats, alerts,
    replies, commands, fleet.heal's alerts) and the broker's uptime (a restart's date)."""
    return [f"{contract.FLEET_PREFIX}/+/+", BROKER_UPTIME_TOPIC]
