"""Threat 3, poisoned telemetry: the bus is advisory, the runtime is the authority.

A compromised (or broken) agent can publish a retained heartbeat that says
``ok`` and an ``online`` state while it does not run. For the agents of
every runtime that is ``inspectable`` (it reports health and start times
worth checking the bus against: docker today) this module compares the one
fleet state's facts and verdict with the runtime's word, its typed
``runtime.base.AgentState``, and reports every disagreement as
``inconsistent``:

- the bus says online (or unhealthy), the runtime says missing, exited,
  restarting or unhealthy;
- the bus says online, but the heartbeat claims an uptime longer than the
  agent has been running (a heartbeat from another life, or a lie);
- the runtime says running (and past its start), the bus says offline,
  missing, stale or unknown;
- the operator stopped or retired it (intent), but the runtime says running.

``compare`` (facts, verdict and runtime state in) is pure and tested on
captured data; ``runtime_states`` and ``bus_and_docker`` only add the reads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from hatchery.bus.client import BusClient
from hatchery.core.intent import Intent
from hatchery.core.results import Result
from hatchery.core.words import plural
from hatchery.inventory.model import Inventory
from hatchery.observe.fleetstate import AgentFacts, Judgement, Verdict
from hatchery.observe.health import HealthReport, classify
from hatchery.observe.monitor import Snapshot, snapshot
from hatchery.runtime import for_runtime
from hatchery.runtime.base import AgentState

CONSISTENT, INCONSISTENT = "consistent", "inconsistent"
CLOCK_SLACK_S = 10.0   # clocks of the agent host and the engine may differ a little
UP = frozenset({Verdict.ONLINE, Verdict.UNHEALTHY})
DOWN = frozenset({Verdict.OFFLINE, Verdict.MISSING, Verdict.STALE, Verdict.UNKNOWN})


@dataclass(frozen=True)
class CrossCheck:
    agent: str
    verdict: str                    # consistent / inconsistent
    bus: str                        # the bus-health verdict
    docker: str                     # the runtime's word, as text (runtime_text)
    reason: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class CrossCheckReport(Result):
    agents: list                    # CrossCheck, inventory order; checked agents only
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

def runtime_text(state: AgentState) -> str:
    """'running (healthy), 0 restarts': the runtime's word for a table."""
    health = f" ({state.health})" if state.health else ""
    restarts = "" if state.restarts is None else f", {plural(state.restarts, 'restart')}"
    return f"{state.status or 'unknown'}{health}{restarts}"


def _up(state: AgentState) -> bool:
    return state.up and not state.restarting


def compare(facts: AgentFacts, judged: Judgement, state: AgentState, now: float) -> CrossCheck:
    """One agent: do the bus (with the operator's intent) and the runtime tell the same story?"""
    said, who = runtime_text(state), state.runtime.capitalize()

    def result(verdict: str, reason: str) -> CrossCheck:
        return CrossCheck(facts.name, verdict, str(judged.verdict), said, reason)

    if state.running is None:
        return result(CONSISTENT, f"{who} could not be asked ({state.problem or said})")
    if judged.intent in (Intent.STOPPED, Intent.RETIRED):
        if _up(state):
            return result(INCONSISTENT, f"{judged.intent} by the operator, but {who} says {said}")
        return result(CONSISTENT, f"{judged.intent}, {who} says {said}")
    if judged.intent is Intent.IN_ROLLOUT:
        return result(CONSISTENT, f"in a rollout: the bus says {judged.verdict}, {who} says {said}")
    if judged.verdict in UP:
        if not _up(state):
            return result(INCONSISTENT, f"the bus says {judged.verdict}, {who} says {said}")
        lie = _uptime_mismatch(facts, state)
        return result(INCONSISTENT, lie) if lie else result(CONSISTENT, "both say up")
    if judged.verdict in DOWN and _up(state) and not _just_started(state, now, judged.threshold_s):
        return result(INCONSISTENT, f"{who} says {said}, the bus says {judged.verdict}")
    return result(CONSISTENT, f"the bus says {judged.verdict}, {who} says {said}")


def _uptime_mismatch(facts: AgentFacts, state: AgentState) -> str:
    """A heartbeat sent in this start's life cannot claim to predate it."""
    beat, started = facts.beat, state.started_at
    if started is None or beat is None:
        return ""
    alive = beat.ts - started
    if alive < CLOCK_SLACK_S:
        return ""       # sent before (or around) the last start: from an earlier life
    if beat.uptime > alive + CLOCK_SLACK_S:
        return (f"the heartbeat claims {beat.uptime:.0f}s of uptime, but the agent started "
                f"{alive:.0f}s before it ({runtime_text(state)})")
    return ""


def _just_started(state: AgentState, now: float, grace_s: float) -> bool:
    """An agent that started within the staleness window has not had time to report."""
    if state.health == "starting":
        return True
    return state.started_at is not None and now - state.started_at < grace_s


def cross_check(inv: Inventory, snap: Snapshot, states: dict,
                now: Optional[float] = None) -> CrossCheckReport:
    """Pure: every checked agent of the inventory, the bus's story against the runtime's."""
    now = snap.taken_at if now is None else now
    checks = []
    for name in checked_agents(inv):
        state = states.get(name) or AgentState(name, inv.agents[name].runtime, False, status="missing")
        checks.append(compare(snap.agents[name], snap.judgements[name], state, now))
    return CrossCheckReport(checks)


def checked_agents(inv: Inventory) -> list:
    """The agents whose runtime's word we check the bus against (``inspectable``)."""
    return [a.name for a in inv.agents.values() if for_runtime(a.runtime).inspectable]


docker_agents = checked_agents      # the name observe.verify imports


# --- reads --------------------------------------------------------------------------------

def runtime_states(inv: Inventory) -> dict:
    """{agent: AgentState} for the checked agents, from their runtimes."""
    states = {}
    for name in checked_agents(inv):
        agent = inv.agents[name]
        states[name] = for_runtime(agent.runtime).agent_state(inv, agent)
    return states


def bus_and_docker(inv: Inventory, bus: BusClient, *, threshold: Optional[float] = None,
                   timeout: float = 5.0) -> tuple:
    """(HealthReport, CrossCheckReport): the bus read first, then the runtimes."""
    snap = snapshot(inv, bus, timeout=timeout, threshold=threshold)
    report: HealthReport = classify(inv, snap)
    report.seconds = snap.seconds
    return report, cross_check(inv, snap, runtime_states(inv), now=time.time())
