"""fleet-bus-health: every inventory agent's verdict, for people and for cron.

The verdicts are the one rule's (``observe.fleetstate.judge``), from the bus's
retained heartbeats and states and the operator's intent (``core.intent``):

- ``online``, ``unhealthy`` (its own heartbeat says ok=false), ``stale`` (its
  heartbeat is older than the threshold, default twice its interval, or dated
  in the future), ``offline`` (its Last Will or a goodbye), ``missing`` (it
  never reported), ``unknown`` (its online state predates the broker's last
  start);
- ``stopped`` (agent.stop) and ``retired`` (agent.retire): down on purpose,
  shown as such and never a problem, even when an older copy of the inventory
  still lists a retired agent; an agent in a rollout (fleet.rollout's lease)
  keeps its verdict but is not a problem either.

The exit code follows ``Judgement.problem``. ``classify`` is pure (a Snapshot
in, a report out); ``bus_health`` only adds the bus read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from hatchery.bus.client import BusClient
from hatchery.core.results import Result
from hatchery.inventory.model import Inventory
from hatchery.observe.fleetstate import Verdict
from hatchery.observe.monitor import Snapshot, snapshot

# The verdicts by name, for callers that compare (heal: health.OFFLINE, health.STALE).
ONLINE, UNHEALTHY, STALE = Verdict.ONLINE, Verdict.UNHEALTHY, Verdict.STALE
OFFLINE, MISSING, UNKNOWN = Verdict.OFFLINE, Verdict.MISSING, Verdict.UNKNOWN
STOPPED, RETIRED = Verdict.STOPPED, Verdict.RETIRED


@dataclass
class HealthReport(Result):
    agents: list                      # fleetstate.Judgement, inventory order
    checked_at: datetime
    seconds: float = 0.0
    columns: tuple = ("agent", "verdict", "age_s", "threshold_s", "reason")

    @property
    def items(self) -> list:
        return self.agents

    @property
    def problems(self) -> list:
        """One line per agent that is a problem, naming it and why (stopped, retired and
        agents in a rollout never are)."""
        return [f"{a.agent}: {a.verdict}: {a.reason}" for a in self.agents if a.problem]

    def observed_at(self) -> datetime:
        return self.checked_at

    def extras(self) -> dict:
        return {"bus_read_s": round(self.seconds, 4)}


def bus_health(inv: Inventory, bus: BusClient, *, threshold: Optional[float] = None,
               timeout: float = 5.0) -> HealthReport:
    """Read the bus once and judge every inventory agent."""
    snap = snapshot(inv, bus, timeout=timeout, threshold=threshold)
    report = classify(inv, snap)
    report.seconds = snap.seconds
    return report


def classify(inv: Inventory, snap: Snapshot) -> HealthReport:
    """Pure: the snapshot's judgements of the inventory's agents, in inventory order."""
    return HealthReport([snap.judgements[name] for name in inv.agents],
                        datetime.fromtimestamp(snap.taken_at, timezone.utc))
