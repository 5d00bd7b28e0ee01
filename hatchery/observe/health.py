"""fleet-bus-health: staleness detection from retained heartbeats and Wills.

An agent is
- ``offline`` when its retained state says so (its Last Will, or a goodbye),
- ``missing`` when it is in the inventory but never left a heartbeat or state,
- ``stale`` when its last heartbeat is older than the threshold (default:
  twice its ``heartbeat_interval``),
- ``healthy`` otherwise (``unhealthy`` if its own heartbeat says ok=false).

``classify`` is pure (a Snapshot and a clock in, a report out); ``bus_health``
only adds the bus read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Optional

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.core.results import Result
from hatchery.inventory.model import Inventory
from hatchery.observe.monitor import AgentView, Snapshot, snapshot

HEALTHY, STALE, OFFLINE, MISSING, UNHEALTHY = "healthy", "stale", "offline", "missing", "unhealthy"
# The start time read from $SYS/broker/uptime is late by up to the broker's
# sys_interval (configs.broker.SYS_INTERVAL) plus a second of rounding.
RESTART_TOLERANCE = timedelta(seconds=3)


@dataclass
class AgentHealth:
    agent: str
    verdict: str
    age_s: Optional[float]
    threshold_s: float
    reason: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class HealthReport(Result):
    agents: list                      # AgentHealth, inventory order
    checked_at: datetime
    seconds: float = 0.0
    columns: tuple = ("agent", "verdict", "age_s", "threshold_s", "reason")

    @property
    def items(self) -> list:
        return self.agents

    @property
    def ok(self) -> bool:
        return all(a.verdict == HEALTHY for a in self.agents)

    @property
    def problems(self) -> list:
        """One line per agent that is not healthy, naming it and why."""
        return [f"{a.agent}: {a.verdict}: {a.reason}" for a in self.agents if a.verdict != HEALTHY]

    def observed_at(self) -> datetime:
        return self.checked_at

    def extras(self) -> dict:
        return {"bus_read_s": round(self.seconds, 4)}


def bus_health(inv: Inventory, bus: BusClient, *, threshold: Optional[float] = None,
               now: Optional[datetime] = None, timeout: float = 5.0) -> HealthReport:
    """Read the bus once and classify every inventory agent."""
    snap = snapshot(inv, bus, timeout=timeout)
    report = classify(inv, snap, threshold=threshold, now=now or snap.taken_at)
    report.seconds = snap.seconds
    return report


def classify(inv: Inventory, snap: Snapshot, *, threshold: Optional[float] = None,
             now: Optional[datetime] = None) -> HealthReport:
    """Pure: a verdict for each inventory agent from what the bus retained."""
    now = now or datetime.now(timezone.utc)
    verdicts = []
    for name, spec in inv.agents.items():
        limit = threshold if threshold is not None else 2 * spec.heartbeat_interval
        view = snap.agents.get(name) or AgentView(name)
        verdicts.append(judge(view, limit, now, broker_started=snap.broker_started))
    return HealthReport(verdicts, now)


def judge(view: AgentView, limit: float, now: datetime,
          broker_started: Optional[datetime] = None) -> AgentHealth:
    """One agent's verdict; the order of the checks is the order of severity.

    ``broker_started``: a live agent re-announces itself (birth + heartbeat)
    within seconds of a broker (re)start; retained state older than the start
    is what a crash rolled back, and is not taken as alive.
    """
    age = view.age(now)
    rounded = None if age is None else round(age, 1)

    def verdict(kind: str, reason: str) -> AgentHealth:
        return AgentHealth(view.agent, kind, rounded, limit, reason)

    if view.state == contract.STATE_OFFLINE:
        return verdict(OFFLINE, "its retained state is offline (Last Will or a clean stop)")
    if view.heartbeat is None and view.state != contract.STATE_ONLINE:
        return verdict(MISSING, "never reported: no heartbeat and no online state on the bus")
    if age is None:
        return verdict(STALE, "online, but no heartbeat retained yet")
    announced = view.last_announced()
    if broker_started and announced and announced < broker_started - RESTART_TOLERANCE:
        return verdict(STALE, f"not heard from since the broker started at "
                              f"{broker_started:%H:%M:%S}: its retained state predates the "
                              "restart (a crash may have rolled back its offline state)")
    ahead = view.future_by(now)
    if ahead:
        return verdict(STALE, f"last heartbeat is dated {ahead:.0f}s in the future "
                              "(clock skew or a forged ts): not taken as fresh")
    if age > limit:
        return verdict(STALE, f"last heartbeat {age:.0f}s ago (threshold {limit:g}s)")
    if view.beat("ok") is False:
        return verdict(UNHEALTHY, "its last heartbeat reports ok=false")
    return verdict(HEALTHY, f"heartbeat {age:.0f}s ago")
