"""Threat 3, poisoned telemetry: the bus is advisory, Docker is the authority.

A compromised (or broken) agent can publish a retained heartbeat that says
``ok`` and an ``online`` state while its container is stopped. For docker
agents this module compares what the bus says with what the Docker API says
and reports every disagreement as ``inconsistent``:

- the bus says healthy, Docker says the container is missing, exited,
  restarting or unhealthy;
- the bus says healthy, but the heartbeat claims an uptime longer than the
  container has been running (a heartbeat from another life, or a lie);
- Docker says running (and past its start), the bus says offline, missing
  or stale.

It covers the agents of every runtime that is ``inspectable`` (reports health
and start times worth checking the bus against). ``docker_view`` (the
runtime's ``AgentState`` in) and ``compare`` (both views in) are pure and
tested on captured data; ``docker_views`` and ``bus_and_docker`` only add the
reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from hatchery.bus.client import BusClient
from hatchery.core.results import Result
from hatchery.inventory.model import Inventory
from hatchery.observe.health import (
    HEALTHY,
    MISSING,
    OFFLINE,
    STALE,
    AgentHealth,
    HealthReport,
    classify,
)
from hatchery.observe.monitor import AgentView, Snapshot, snapshot
from hatchery.runtime import for_runtime
from hatchery.runtime.base import AgentState

CONSISTENT, INCONSISTENT = "consistent", "inconsistent"
CLOCK_SLACK_S = 10.0   # clocks of the agent host and the engine may differ a little
DOWN = {OFFLINE, MISSING, STALE}


@dataclass(frozen=True)
class DockerView:
    """What the Docker API says about one agent's container."""

    agent: str
    status: str                     # running, exited, restarting, paused, created, dead, missing
    health: Optional[str] = None    # healthy, unhealthy, starting; None without a healthcheck
    restart_count: int = 0
    started_at: Optional[datetime] = None

    @property
    def up(self) -> bool:
        return self.status == "running" and self.health != "unhealthy"

    def text(self) -> str:
        health = f" ({self.health})" if self.health else ""
        return f"{self.status}{health}, {self.restart_count} restart(s)"


@dataclass(frozen=True)
class CrossCheck:
    agent: str
    verdict: str                    # consistent / inconsistent
    bus: str                        # the bus-health verdict
    docker: str                     # DockerView.text()
    reason: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CrossCheckReport(Result):
    agents: list                    # CrossCheck, inventory order; docker agents only
    columns: tuple = ("agent", "verdict", "bus", "docker", "reason")

    @property
    def items(self) -> list:
        return self.agents

    @property
    def ok(self) -> bool:
        return all(a.verdict == CONSISTENT for a in self.agents)

    @property
    def problems(self) -> list:
        return [f"{a.agent}: {a.verdict}: {a.reason}" for a in self.agents
                if a.verdict != CONSISTENT]


# --- pure -------------------------------------------------------------------------------

def docker_view(agent: str, state: Optional[AgentState]) -> DockerView:
    """From the runtime's AgentState (None: it has no record of the agent)."""
    if state is None:
        return DockerView(agent, "missing")
    started = None if state.started_at is None else datetime.fromtimestamp(state.started_at, timezone.utc)
    return DockerView(agent, state.status or "unknown", state.health, state.restarts or 0, started)


def compare(view: AgentView, bus: AgentHealth, docker: DockerView, now: datetime) -> CrossCheck:
    """One agent: do the bus and Docker tell the same story?"""
    def result(verdict: str, reason: str) -> CrossCheck:
        return CrossCheck(view.agent, verdict, bus.verdict, docker.text(), reason)

    if bus.verdict == HEALTHY:
        if not docker.up:
            return result(INCONSISTENT, f"the bus says healthy, Docker says {docker.text()}")
        lie = _uptime_mismatch(view, docker)
        if lie:
            return result(INCONSISTENT, lie)
        return result(CONSISTENT, "both say up")
    if bus.verdict in DOWN and docker.up and not _just_started(docker, now, bus.threshold_s):
        return result(INCONSISTENT, f"Docker says {docker.text()}, the bus says {bus.verdict}")
    return result(CONSISTENT, f"the bus says {bus.verdict}, Docker says {docker.text()}")


def _uptime_mismatch(view: AgentView, docker: DockerView) -> str:
    """A heartbeat sent in this container's life cannot claim to predate it."""
    uptime, sent = view.beat("uptime"), view.heartbeat_at
    if docker.started_at is None or sent is None or not isinstance(uptime, (int, float)):
        return ""
    if (sent - docker.started_at).total_seconds() < CLOCK_SLACK_S:
        return ""       # sent before (or around) the last start: from an earlier life
    alive = (sent - docker.started_at).total_seconds()
    if uptime > alive + CLOCK_SLACK_S:
        return (f"the heartbeat claims {uptime:.0f}s of uptime, but the container started "
                f"{alive:.0f}s before it ({docker.restart_count} restart(s))")
    return ""


def _just_started(docker: DockerView, now: datetime, grace_s: float) -> bool:
    """A container that started within the staleness window has not had time to report."""
    if docker.health == "starting":
        return True
    return docker.started_at is not None and (now - docker.started_at).total_seconds() < grace_s


def cross_check(inv: Inventory, snap: Snapshot, report: HealthReport, docker: dict,
                now: Optional[datetime] = None) -> CrossCheckReport:
    """Pure: every docker agent of the inventory, bus view against Docker view."""
    now = now or snap.taken_at
    verdicts = {h.agent: h for h in report.agents}
    checks = []
    for name in docker_agents(inv):
        view = snap.agents.get(name) or AgentView(name)
        checks.append(compare(view, verdicts[name], docker.get(name) or DockerView(name, "missing"),
                              now))
    return CrossCheckReport(checks)


def docker_agents(inv: Inventory) -> list:
    """The agents whose runtime is worth checking the bus against (``inspectable``)."""
    return [a.name for a in inv.agents.values() if for_runtime(a.runtime).inspectable]


# --- reads --------------------------------------------------------------------------------

def docker_views(inv: Inventory) -> dict:
    """{agent: DockerView} for the inventory's docker agents, from their engines."""
    views = {}
    for name in docker_agents(inv):
        agent = inv.agents[name]
        views[name] = docker_view(name, for_runtime(agent.runtime).agent_state(inv, agent))
    return views


def bus_and_docker(inv: Inventory, bus: BusClient, *, threshold: Optional[float] = None,
                   timeout: float = 5.0) -> tuple:
    """(HealthReport, CrossCheckReport): the bus read first, then Docker."""
    snap = snapshot(inv, bus, timeout=timeout)
    report = classify(inv, snap, threshold=threshold, now=snap.taken_at)
    report.seconds = snap.seconds
    return report, cross_check(inv, snap, report, docker_views(inv),
                               now=datetime.now(timezone.utc))
