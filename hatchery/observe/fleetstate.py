"""One fleet state: every bus message folded once, every agent judged by one rule.

``FleetState.observe`` takes bus messages (a retained snapshot or a live
stream) and keeps, per agent, what the contract lets an agent say: its
retained online/offline state and the instance that announced it, its last
heartbeat, the version it reported, alert codes, the last round trip, and
how many of its payloads broke the contract. Payloads are decoded once, by
``agent_kit.messages``; one that breaks the contract is counted against its
agent and otherwise ignored.

``judge`` (``observe.verdicts``) is the one rule that turns those facts and
the operator's intent into a verdict; it is imported from here too.
"""

from __future__ import annotations

import threading
import time
from typing import Iterable, Optional

from agent_kit import contract, messages
from hatchery.core.collector import collector_paused
from hatchery.core.intent import Intent, IntentBook
from hatchery.observe.verdicts import (  # noqa: F401  (the one rule, imported from here by readers)
    BIRTHS_KEPT,
    DEFAULT_INTERVAL_S,
    DOWN,
    DUEL_WINDOW_S,
    PROBLEMS,
    RESTART_TOLERANCE_S,
    STALE_FACTOR,
    AgentFacts,
    Judgement,
    Verdict,
    intent_reason,
    judge,
    threshold_for,
)

BROKER_UPTIME_TOPIC = "$SYS/broker/uptime"
MAX_EXTRA_AGENTS = 1000         # agents on the bus but not in the inventory we track, at most
MAX_ALERT_CODES = 32            # distinct alert codes remembered per agent
MAX_PENDING = 10000             # commands awaiting a reply we remember, at most


def _unconfirmed(facts: AgentFacts, instance: Optional[str]) -> bool:
    """True for a message of another instance than the one the runtime confirmed: one left
    running behind a partition, taking turns with the real one on the same login."""
    return bool(facts.confirmed and instance and instance != facts.confirmed)


class FleetState:
    """Bus messages in, per-agent facts and verdicts out; thread-safe, with change notification.

    ``names``: the inventory's agents ({name: heartbeat interval}, in file order);
    agents seen on the bus but not listed are tracked too, up to MAX_EXTRA_AGENTS.
    """

    def __init__(self, intervals: dict, manager: str, *, clock=time.time):
        self.clock = clock
        self.manager = manager
        self.intervals = dict(intervals)
        self.agents: dict = {name: AgentFacts(name) for name in intervals}
        self.broker_started: Optional[float] = None
        self.version = 0
        self.dropped_extra = 0                  # messages from untracked agents past the cap
        self.invalid_by_kind: dict = {}         # kind -> payloads that broke the contract
        self.manager_alerts: list = []          # fleet.heal's alerts (messages.Alert), newest last
        self._commands: dict = {}               # command id -> when we saw it go out
        self._cond = threading.Condition()

    @classmethod
    def for_inventory(cls, inv, *, clock=time.time) -> "FleetState":
        return cls({n: a.heartbeat_interval for n, a in inv.agents.items()}, inv.manager, clock=clock)

    # --- input (any thread, usually paho's network thread) ---------------------------

    def observe(self, message) -> bool:
        """Fold one bus message (anything with topic, payload, retain, received); True if it changed
        what a reader would see."""
        if message.topic == BROKER_UPTIME_TOPIC:
            return self._broker_uptime(message.payload, message.received)
        with self._cond:
            changed = self._observe_one(message)
            if changed:
                self._cond.notify_all()
            return changed

    def observe_all(self, batch: Iterable) -> "FleetState":
        """Fold a batch (a snapshot's retained messages): one hold of the lock, one wake-up, and
        no cyclic collection meanwhile (tens of thousands of new objects, none of them cyclic
        garbage, set off collections that rescanned the whole heap: ~60 ms at 10,000 agents)."""
        batch = batch if isinstance(batch, (list, tuple)) else list(batch)   # never wait holding it
        with collector_paused(), self._cond:
            before = self.version
            for message in batch:
                if message.topic == BROKER_UPTIME_TOPIC:
                    self._broker_uptime(message.payload, message.received)
                else:
                    self._observe_one(message)
            if self.version != before:
                self._cond.notify_all()
        return self

    def _observe_one(self, message) -> bool:
        """observe() under the lock, without the wake-up."""
        if getattr(message, "properties_ok", True):
            changed = self._observe(message.topic, message.payload, message.received)
        else:   # MQTT v5 properties its topic may not carry (bus.messages.Message)
            changed = self._refused(message.topic)
        if changed:
            self.version += 1
        return changed

    def _observe(self, topic: str, payload: bytes, received: float) -> bool:
        parsed = contract.parse_topic(topic)
        if parsed is None:
            return self._command_seen(topic, payload, received)
        name, kind = parsed
        if name == self.manager:
            return self._manager(kind, payload)
        facts = self.agents.get(name) or self._facts(name)
        if facts is None:
            return False
        try:    # decode, not read(): the topic is parsed already
            decoded = messages.decode(name, kind, payload) if payload else messages.Cleared(name, kind)
        except contract.ContractError:
            return self._invalid(facts, kind)
        return self._fold(facts, decoded, received)

    def _invalid(self, facts: AgentFacts, kind: str) -> bool:
        facts.invalid += 1
        self.invalid_by_kind[kind] = self.invalid_by_kind.get(kind, 0) + 1
        return self._touch(facts)

    def _refused(self, topic: str) -> bool:
        """An agent's message carrying properties the contract does not allow: invalid."""
        parsed = contract.parse_topic(topic)
        facts = self._facts(parsed[0]) if parsed and parsed[0] != self.manager else None
        return False if facts is None else self._invalid(facts, parsed[1])

    def _facts(self, name: str) -> Optional[AgentFacts]:
        facts = self.agents.get(name)
        if facts is None:
            if len(self.agents) - len(self.intervals) >= MAX_EXTRA_AGENTS:
                self.dropped_extra += 1
                return None
            facts = self.agents[name] = AgentFacts(name, in_inventory=False)
        return facts

    def _touch(self, facts: AgentFacts) -> bool:
        facts.changed = self.version + 1
        return True

    def _fold(self, facts: AgentFacts, message, received: float) -> bool:
        # heartbeats and states first: they are a snapshot's every message
        if isinstance(message, messages.Heartbeat):
            facts.last_seen = received
            if facts.confirmed and _unconfirmed(facts, message.instance):
                return False
            facts.beat, facts.beat_received = message, received
            if message.version:
                facts.version = message.version
        elif isinstance(message, messages.State):
            facts.last_seen = received
            self._state(facts, message, received)
        elif isinstance(message, messages.Cleared):
            return self._cleared(facts, message.kind)
        elif isinstance(message, messages.Command):
            self._remember(message.id, received)
            return False
        else:
            facts.last_seen = received
            if isinstance(message, messages.Reply):
                self._reply(facts, message, received)
            elif isinstance(message, messages.Alert):
                self._alert(facts, message, received)
            else:
                return False        # an event: nothing a reader shows changes
        return self._touch(facts)

    def _state(self, facts: AgentFacts, state: messages.State, received: float) -> None:
        # A Will from an instance that is no longer the one announced (an old handler's
        # connection dying after its successor's birth) says nothing about the successor.
        if not state.online and state.instance and facts.instance and state.instance != facts.instance \
                and facts.online:
            return
        if state.online:
            facts.births.append((received, state.instance))    # every one: duelling() sees both
        if facts.confirmed and _unconfirmed(facts, state.instance):
            return
        facts.online, facts.state_ts = state.online, state.ts
        if state.online:
            if state.instance != facts.instance:
                facts.rtt_ms = None     # the round trip belongs to the instance that answered
            facts.instance = state.instance

    def _reply(self, facts: AgentFacts, reply: messages.Reply, received: float) -> None:
        if reply.version:
            facts.version = reply.version
        sent = self._commands.pop(reply.id, None)
        if sent is not None:
            facts.rtt_ms = round(max(0.0, received - sent) * 1000, 2)

    def _alert(self, facts: AgentFacts, alert: messages.Alert, received: float) -> None:
        if alert.code in facts.alerts or len(facts.alerts) < MAX_ALERT_CODES:
            facts.alerts[alert.code] = facts.alerts.get(alert.code, 0) + 1
        facts.last_alert, facts.last_alert_at = alert.code, received

    def _cleared(self, facts: AgentFacts, kind: str) -> bool:
        """An empty retained payload (agent.retire clears them): forget what it replaced."""
        if kind == "heartbeat":
            facts.beat = facts.beat_received = None
        elif kind == "status":
            facts.online = facts.state_ts = facts.instance = None
        else:
            return False
        return self._touch(facts)

    def _manager(self, kind: str, payload: bytes) -> bool:
        """fleet/{manager}/alert: fleet.heal's actions, each naming the agent it acted on."""
        if kind != "alert" or not payload:
            return False
        try:
            alert = messages.decode(self.manager, kind, payload, about_others=True)
        except contract.ContractError:
            self.invalid_by_kind["manager-alert"] = self.invalid_by_kind.get("manager-alert", 0) + 1
            return False
        facts = self.agents.get(alert.agent)
        if facts is None or not facts.in_inventory:
            return False
        self.manager_alerts = [*self.manager_alerts[-99:], alert]
        facts.last_alert, facts.last_alert_at = alert.code, alert.ts
        return self._touch(facts)

    def _command_seen(self, topic: str, payload: bytes, received: float) -> bool:
        if topic != contract.broadcast_topic(self.manager) or not payload:
            return False
        try:
            command = messages.read(topic, payload, manager=self.manager)[2]
        except contract.ContractError:
            return False
        self._remember(command.id, received)
        return False

    def _remember(self, command_id: str, at: float) -> None:
        if len(self._commands) >= MAX_PENDING:      # forget the oldest half
            for key in list(self._commands)[: MAX_PENDING // 2]:
                del self._commands[key]
        self._commands.setdefault(command_id, at)

    def _broker_uptime(self, payload: bytes, received: float) -> bool:
        """``$SYS/broker/uptime`` ("123 seconds") dates the broker's last start."""
        words = payload[:32].split()
        if len(words) != 2 or words[1] != b"seconds" or not words[0].isdigit():
            return False
        with self._cond:
            self.broker_started = received - int(words[0])
        return False

    # --- output (any thread) -----------------------------------------------------------

    def confirm(self, name: str, instance: Optional[str]) -> None:
        """The instance the runtime runs ``name`` as now (None: forget it). While it is set,
        another instance's state and heartbeats stay out of the facts, so readers show one
        instance; its births are still counted, so ``duelling()`` still sees the duel."""
        with self._cond:
            facts = self._facts(name)
            if facts is None or facts.confirmed == instance:
                return
            facts.confirmed = instance
            if instance:
                facts.instance = instance
            facts.changed = self.version = self.version + 1
            self._cond.notify_all()

    def facts(self, name: str) -> AgentFacts:
        """A copy of what the bus said about ``name`` (an empty record if nothing)."""
        with self._cond:
            found = self.agents.get(name)
            return found.copy() if found else AgentFacts(name, in_inventory=name in self.intervals)

    def snapshot(self) -> list:
        """Copies of every agent's facts: inventory order, then agents outside it."""
        with self._cond:
            return [f.copy() for f in self.agents.values()]

    def judge(self, name: str, book: IntentBook, *, threshold: Optional[float] = None,
              now: Optional[float] = None) -> Judgement:
        return self.judge_facts(self.facts(name), book, threshold=threshold, now=now)

    def judge_facts(self, facts: AgentFacts, book: IntentBook, *, threshold: Optional[float] = None,
                    now: Optional[float] = None) -> Judgement:
        """``judge`` on facts the caller already copied (``snapshot``, ``changes_since``)."""
        now = self.clock() if now is None else now
        name = facts.name
        interval = self.intervals.get(name) or (facts.beat.interval if facts.beat else None)
        intent = book.of(name, now)
        note = "" if intent is Intent.RUNNING else intent_reason(book, name, intent)
        return judge(facts, intent=intent, limit=threshold_for(interval, threshold), now=now,
                     broker_started=self.broker_started, intent_note=note)

    def judge_every(self, book: IntentBook, *, threshold: Optional[float] = None,
                    now: Optional[float] = None, live: bool = False) -> tuple:
        """({name: AgentFacts}, {name: Judgement}) of every agent (inventory order, then the
        others), under one hold of the lock. ``live``: hand out the live facts, not copies:
        only for a state nothing folds into any more (monitor.snapshot's own, once read),
        where copying 10,000 agents' facts was a tenth of the snapshot."""
        now = self.clock() if now is None else now
        with collector_paused(), self._cond:
            facts = dict(self.agents) if live else {name: f.copy() for name, f in self.agents.items()}
            judged = {name: self.judge_facts(f, book, threshold=threshold, now=now) for name, f in facts.items()}
        return facts, judged

    def judge_all(self, book: IntentBook, *, threshold: Optional[float] = None,
                  now: Optional[float] = None, names: Optional[Iterable[str]] = None) -> list:
        """A Judgement per agent: the inventory's (or ``names``), in order."""
        now = self.clock() if now is None else now
        return [self.judge(n, book, threshold=threshold, now=now)
                for n in (self.intervals if names is None else names)]

    def changes_since(self, version: int) -> tuple:
        """(current version, copies of the facts changed after ``version``)."""
        with self._cond:
            return self.version, [f.copy() for f in self.agents.values() if f.changed > version]

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until the state is newer than ``version`` (True) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: self.version > version, timeout)


def retained_filters() -> tuple:
    """What a snapshot reads: every retained heartbeat and state, and the broker's start."""
    return (f"{contract.FLEET_PREFIX}/+/heartbeat", f"{contract.FLEET_PREFIX}/+/status",
            BROKER_UPTIME_TOPIC)


def live_filters(manager: str) -> list:
    """What a live reader follows: everything under fleet/, broadcasts, the broker's uptime."""
    return [f"{contract.FLEET_PREFIX}/+/+", contract.broadcast_topic(manager), BROKER_UPTIME_TOPIC]
