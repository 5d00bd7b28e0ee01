"""One fleet state: every bus message folded once, every agent judged by one rule.

``FleetState.observe`` takes bus messages (a retained snapshot or a live
stream) and keeps, per agent, what the contract lets an agent say: its
retained online/offline state and the instance that announced it, its last
heartbeat, the version it reported, alert codes, the last round trip, and
how many of its payloads broke the contract. Payloads are decoded once, by
``agent_kit.messages``; one that breaks the contract is counted against its
agent and otherwise ignored.

``judge`` is the one rule that turns those facts and the operator's intent
(``core.intent``) into a verdict. Every reader uses it: fleet.monitor,
fleet.bus-health, the exporter, the dashboard and fleet.top, heal and
rollout. Nothing else in hatchery decides whether an agent is stale.

Verdicts, in the order ``judge`` checks them:

- ``retired``: agent.retire revoked it (never a problem);
- ``stopped``: agent.stop stopped it on purpose (never a problem);
- ``offline``: its retained state is offline (its Last Will or a goodbye);
- ``missing``: it never reported (no heartbeat, no state);
- ``unknown``: its retained ``online`` predates the broker's last start, so a
  broker crash may have rolled it back: unconfirmed until it speaks again;
- ``stale``: its last heartbeat is older than the threshold, or dated in the
  future (clock skew or a forged ts is never taken as fresh);
- ``unhealthy``: its own heartbeat says ok=false;
- ``online``.

An agent in a rollout (a valid lease) keeps its verdict but is not counted
as a problem: the rollout is restarting it on purpose.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Iterable, Optional

from agent_kit import contract, messages
from hatchery.core.intent import Intent, IntentBook

# The start time read from $SYS/broker/uptime is late by up to the broker's
# sys_interval (configs.broker.SYS_INTERVAL) plus a second of rounding.
RESTART_TOLERANCE_S = 3.0
BROKER_UPTIME_TOPIC = "$SYS/broker/uptime"
DEFAULT_INTERVAL_S = 600.0      # for agents outside the inventory that never said theirs
STALE_FACTOR = 2.0              # stale after this many heartbeat intervals (unless a threshold is given)
MAX_EXTRA_AGENTS = 1000         # agents on the bus but not in the inventory we track, at most
MAX_ALERT_CODES = 32            # distinct alert codes remembered per agent
MAX_PENDING = 10000             # commands awaiting a reply we remember, at most
BIRTHS_KEPT = 8                 # recent births per agent, to see two instances taking turns
DUEL_WINDOW_S = 60.0


class Verdict(str, Enum):
    ONLINE = "online"
    UNHEALTHY = "unhealthy"
    STALE = "stale"
    OFFLINE = "offline"
    MISSING = "missing"
    UNKNOWN = "unknown"
    STOPPED = "stopped"
    RETIRED = "retired"

    def __str__(self) -> str:
        return self.value


# Verdicts that make bus-health exit 1 and that heal looks into; stopped and retired never do.
PROBLEMS = frozenset({Verdict.UNHEALTHY, Verdict.STALE, Verdict.OFFLINE, Verdict.MISSING, Verdict.UNKNOWN})
DOWN = frozenset({Verdict.STALE, Verdict.OFFLINE, Verdict.UNKNOWN})


@dataclass
class AgentFacts:
    """What the bus said about one agent (times are epoch seconds)."""

    name: str
    in_inventory: bool = True
    online: Optional[bool] = None           # the retained state; None: none seen
    state_ts: Optional[float] = None        # the agent's own ts on that state
    instance: Optional[str] = None          # the instance that announced that state
    beat: Optional[messages.Heartbeat] = None
    beat_received: Optional[float] = None
    version: Optional[str] = None           # version-report's answer (printable) or the heartbeat's
    rtt_ms: Optional[float] = None
    alerts: dict = field(default_factory=dict)      # code -> count
    last_alert: Optional[str] = None
    last_alert_at: Optional[float] = None
    invalid: int = 0                        # payloads that broke the contract
    last_seen: Optional[float] = None       # when we last received anything valid from it
    births: deque = field(default_factory=lambda: deque(maxlen=BIRTHS_KEPT))   # (received, instance)
    confirmed: Optional[str] = None         # the instance the runtime says runs it (FleetState.confirm)
    changed: int = 0                        # FleetState.version of its last change

    def age(self, now: float) -> Optional[float]:
        """Seconds since its last heartbeat by the agent's clock (never negative)."""
        return None if self.beat is None else max(0.0, now - self.beat.ts)

    def future_by(self, now: float) -> float:
        """How far beyond the allowed slack its last heartbeat is dated ahead of ``now`` (0.0: not)."""
        if self.beat is None:
            return 0.0
        ahead = self.beat.ts - now
        return ahead if ahead > contract.FUTURE_SLACK_S else 0.0

    def last_announced(self) -> Optional[float]:
        """The newest ts the agent itself put on its retained topics."""
        stamps = [t for t in (self.beat.ts if self.beat else None, self.state_ts) if t is not None]
        return max(stamps) if stamps else None

    def duelling(self, now: float) -> tuple:
        """The instances that took turns announcing themselves within DUEL_WINDOW_S (two
        handlers with one login kicking each other off), or () when there is one."""
        recent = [instance for at, instance in self.births if now - at <= DUEL_WINDOW_S and instance]
        distinct = tuple(dict.fromkeys(recent))
        switches = sum(1 for a, b in zip(recent, recent[1:]) if a != b)
        return distinct if len(distinct) > 1 and switches >= 2 else ()

    def copy(self) -> "AgentFacts":
        # Not dataclasses.replace: readers copy every agent on every snapshot, scrape and
        # judgement, and replace() (which re-runs __init__) cost ~15 µs an agent.
        new = object.__new__(AgentFacts)
        new.__dict__.update(self.__dict__)
        new.alerts, new.births = dict(self.alerts), deque(self.births, maxlen=BIRTHS_KEPT)
        return new


@dataclass(frozen=True)
class Judgement:
    """One agent's verdict and why; ``problem`` is what bus-health's exit code counts."""

    agent: str
    verdict: Verdict
    reason: str
    age_s: Optional[float]
    threshold_s: float
    intent: Intent = Intent.RUNNING

    @property
    def problem(self) -> bool:
        return self.verdict in PROBLEMS and self.intent is not Intent.IN_ROLLOUT

    def as_dict(self) -> dict:
        return {"agent": self.agent, "verdict": str(self.verdict), "age_s": self.age_s,
                "threshold_s": self.threshold_s, "intent": str(self.intent), "reason": self.reason}


def _unconfirmed(facts: AgentFacts, instance: Optional[str]) -> bool:
    """True for a message of another instance than the one the runtime confirmed: one left
    running behind a partition, taking turns with the real one on the same login."""
    return bool(facts.confirmed and instance and instance != facts.confirmed)


def judge(facts: AgentFacts, *, intent: Intent, limit: float, now: float,
          broker_started: Optional[float] = None, intent_note: str = "") -> Judgement:
    """The verdict on one agent: pure, facts and intent in (see the module's docstring)."""
    age = facts.age(now)
    rounded = None if age is None else round(age, 1)

    def verdict(kind: Verdict, reason: str) -> Judgement:
        return Judgement(facts.name, kind, reason, rounded, limit, intent)

    if intent is Intent.RETIRED:
        return verdict(Verdict.RETIRED, "retired by agent.retire: credentials revoked")
    if intent is Intent.STOPPED:
        said = " (the bus still says online)" if facts.online else ""
        return verdict(Verdict.STOPPED, f"stopped by the operator{intent_note}{said}")
    found = _bus_verdict(facts, limit, now, broker_started, verdict)
    if intent is Intent.IN_ROLLOUT and found.verdict in PROBLEMS:
        return replace(found, reason=f"{found.reason}; in a rollout{intent_note}")
    return found


def _bus_verdict(facts: AgentFacts, limit: float, now: float, broker_started: Optional[float],
                 verdict) -> Judgement:
    age = facts.age(now)
    if facts.online is False:
        return verdict(Verdict.OFFLINE, "its retained state is offline (Last Will or a clean stop)")
    if facts.beat is None and facts.online is None:
        return verdict(Verdict.MISSING, "never reported: no heartbeat and no online state on the bus")
    announced = facts.last_announced()
    if broker_started and announced and announced < broker_started - RESTART_TOLERANCE_S:
        return verdict(Verdict.UNKNOWN, f"not heard from since the broker started at "
                                        f"{time.strftime('%H:%M:%S', time.gmtime(broker_started))}Z: "
                                        "its retained state predates the restart (a crash may have "
                                        "rolled it back), unconfirmed")
    if age is None:
        return verdict(Verdict.STALE, "online, but no heartbeat retained yet")
    ahead = facts.future_by(now)
    if ahead:
        return verdict(Verdict.STALE, f"last heartbeat is dated {ahead:.0f}s in the future "
                                      "(clock skew or a forged ts): not taken as fresh")
    if age > limit:
        return verdict(Verdict.STALE, f"last heartbeat {age:.0f}s ago (threshold {limit:g}s)")
    if facts.beat.ok is False:
        return verdict(Verdict.UNHEALTHY, "its last heartbeat reports ok=false")
    return verdict(Verdict.ONLINE, f"heartbeat {age:.0f}s ago")


def threshold_for(interval: Optional[float], threshold: Optional[float]) -> float:
    """The staleness limit: the operator's threshold, else STALE_FACTOR heartbeat intervals."""
    if threshold is not None:
        return float(threshold)
    return STALE_FACTOR * float(interval or DEFAULT_INTERVAL_S)


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
            if getattr(message, "properties_ok", True):
                changed = self._observe(message.topic, message.payload, message.received)
            else:   # MQTT v5 properties its topic may not carry (bus.messages.Message)
                changed = self._refused(message.topic)
            if changed:
                self.version += 1
                self._cond.notify_all()
            return changed

    def observe_all(self, batch: Iterable) -> "FleetState":
        for message in batch:
            self.observe(message)
        return self

    def _observe(self, topic: str, payload: bytes, received: float) -> bool:
        parsed = contract.parse_topic(topic)
        if parsed is None:
            return self._command_seen(topic, payload, received)
        name, kind = parsed
        if name == self.manager:
            return self._manager(kind, payload)
        facts = self._facts(name)
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
        if isinstance(message, messages.Cleared):
            return self._cleared(facts, message.kind)
        if isinstance(message, messages.Command):
            self._remember(message.id, received)
            return False
        facts.last_seen = received
        if isinstance(message, messages.Heartbeat):
            if _unconfirmed(facts, message.instance):
                return False
            facts.beat, facts.beat_received = message, received
            if message.version:
                facts.version = message.version
        elif isinstance(message, messages.State):
            self._state(facts, message, received)
        elif isinstance(message, messages.Reply):
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
        if _unconfirmed(facts, state.instance):
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
        return judge(facts, intent=intent, limit=threshold_for(interval, threshold), now=now,
                     broker_started=self.broker_started, intent_note=_note(book, name, intent))

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


def _note(book: IntentBook, name: str, intent: Intent) -> str:
    """' at 14:02 by agent.stop' / ' (lease by fleet.rollout pid 9 until 14:05)' for a reason line."""
    if intent is Intent.STOPPED:
        entry = book.stopped[name]
        return f" at {time.strftime('%H:%M:%S', time.localtime(entry.at))}" + (f" ({entry.by})" if entry.by else "")
    if intent is Intent.IN_ROLLOUT:
        lease = book.lease(name)
        if lease:
            return f" (lease by {lease.owner} until {time.strftime('%H:%M:%S', time.localtime(lease.expires))})"
    return ""


def retained_filters() -> tuple:
    """What a snapshot reads: every retained heartbeat and state, and the broker's start."""
    return (f"{contract.FLEET_PREFIX}/+/heartbeat", f"{contract.FLEET_PREFIX}/+/status",
            BROKER_UPTIME_TOPIC)


def live_filters(manager: str) -> list:
    """What a live reader follows: everything under fleet/, broadcasts, the broker's uptime."""
    return [f"{contract.FLEET_PREFIX}/+/+", contract.broadcast_topic(manager), BROKER_UPTIME_TOPIC]
