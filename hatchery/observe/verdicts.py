"""The one rule: what the bus said about an agent (``AgentFacts``) and the operator's
intent, judged.

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

import time
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Optional

from agent_kit import contract, messages
from hatchery.core.intent import Intent, IntentBook
from hatchery.core.words import Word

# The start time read from $SYS/broker/uptime is late by up to the broker's
# sys_interval (configs.broker.SYS_INTERVAL) plus a second of rounding.
RESTART_TOLERANCE_S = 3.0
DEFAULT_INTERVAL_S = 600.0      # for agents outside the inventory that never said theirs
STALE_FACTOR = 2.0              # stale after this many heartbeat intervals (unless a threshold is given)
BIRTHS_KEPT = 8                 # recent births per agent, to see two instances taking turns
DUEL_WINDOW_S = 60.0


class Verdict(Word):
    ONLINE = "online"
    UNHEALTHY = "unhealthy"
    STALE = "stale"
    OFFLINE = "offline"
    MISSING = "missing"
    UNKNOWN = "unknown"
    STOPPED = "stopped"
    RETIRED = "retired"


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


def judge(facts: AgentFacts, *, intent: Intent, limit: float, now: float,
          broker_started: Optional[float] = None, intent_note: str = "") -> Judgement:
    """The verdict on one agent: pure, facts and intent in (see the module's docstring)."""
    age = facts.age(now)
    if intent is Intent.RETIRED:
        kind, reason = Verdict.RETIRED, "retired by agent.retire: credentials revoked"
    elif intent is Intent.STOPPED:
        said = " (the bus still says online)" if facts.online else ""
        kind, reason = Verdict.STOPPED, f"stopped by the operator{intent_note}{said}"
    else:
        kind, reason = _bus_verdict(facts, age, limit, now, broker_started)
        if intent is Intent.IN_ROLLOUT and kind in PROBLEMS:
            reason = f"{reason}; in a rollout{intent_note}"
    return _judgement(facts.name, kind, reason, None if age is None else round(age, 1), limit, intent)


def _judgement(*values) -> Judgement:
    """``Judgement(*values)`` without the frozen dataclass's __init__ (a snapshot makes one per
    agent; the __init__ sets each field through object.__setattr__). Equal to it."""
    made = object.__new__(Judgement)
    made.__dict__.update(zip(_JUDGEMENT_FIELDS, values))
    return made


_JUDGEMENT_FIELDS = tuple(f.name for f in fields(Judgement))


def _bus_verdict(facts: AgentFacts, age: Optional[float], limit: float, now: float,
                 broker_started: Optional[float]) -> tuple:
    """(verdict, reason) from what the bus said, for an agent the operator wants running."""
    if facts.online is False:
        return Verdict.OFFLINE, "its retained state is offline (Last Will or a clean stop)"
    if facts.beat is None and facts.online is None:
        return Verdict.MISSING, "never reported: no heartbeat and no online state on the bus"
    announced = facts.last_announced() if broker_started else None
    if broker_started and announced and announced < broker_started - RESTART_TOLERANCE_S:
        return Verdict.UNKNOWN, (f"not heard from since the broker started at "
                                 f"{time.strftime('%H:%M:%S', time.gmtime(broker_started))}Z: "
                                 "its retained state predates the restart (a crash may have "
                                 "rolled it back), unconfirmed")
    if age is None:
        return Verdict.STALE, "online, but no heartbeat retained yet"
    ahead = facts.future_by(now)
    if ahead:
        return Verdict.STALE, (f"last heartbeat is dated {ahead:.0f}s in the future "
                               "(clock skew or a forged ts): not taken as fresh")
    if age > limit:
        return Verdict.STALE, f"last heartbeat {age:.0f}s ago (threshold {limit:g}s)"
    if facts.beat.ok is False:
        return Verdict.UNHEALTHY, "its last heartbeat reports ok=false"
    return Verdict.ONLINE, f"heartbeat {age:.0f}s ago"


def threshold_for(interval: Optional[float], threshold: Optional[float]) -> float:
    """The staleness limit: the operator's threshold, else STALE_FACTOR heartbeat intervals."""
    if threshold is not None:
        return float(threshold)
    return STALE_FACTOR * float(interval or DEFAULT_INTERVAL_S)


def intent_reason(book: IntentBook, name: str, intent: Intent) -> str:
    """' at 14:02 by agent.stop' / ' (lease by fleet.rollout pid 9 until 14:05)' for a reason line."""
    if intent is Intent.STOPPED:
        entry = book.stopped[name]
        return f" at {time.strftime('%H:%M:%S', time.localtime(entry.at))}" + (f" ({entry.by})" if entry.by else "")
    if intent is Intent.IN_ROLLOUT:
        lease = book.lease(name)
        if lease:
            return f" (lease by {lease.owner} until {time.strftime('%H:%M:%S', time.localtime(lease.expires))})"
    return ""
