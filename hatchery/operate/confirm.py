"""The runtime's word on an agent the bus shows down: fleet.heal acts on nothing else.

The bus is advisory (the fleet ADR's third risk: a compromised agent, or anyone
holding its password, can publish a false ``offline`` on its own status topic).
Before heal restarts anything, the agent's runtime is asked, and heal acts only
on one of these findings:

- ``gone``: the runtime says it does not run (the process is gone, the
  container is not running);
- ``unhealthy``: the runtime runs it but its own health check fails (a
  container's HEALTHCHECK);
- ``hung``: the runtime runs it, but it did not answer a signed health-check
  within ``hung_after`` seconds.

``alive`` (runs and answers) contradicts the bus: heal publishes
``telemetry-mismatch`` and restarts nothing. ``unasked`` (the runtime could
not be reached, or the bus could not carry the health-check: no SUBACK in
time, the link down, or our own ping through the broker does not come back) is
not a reason to act either: an agent never asked is not hung.

The health-check is bound to the instance the runtime reports for the start
it made (``AgentState.instance``): only a reply naming that instance counts,
so a client logged in with the agent's password cannot answer for a hung
handler. A runtime that reports no instance gets any reply (documented in
docs/THREAT-MODEL.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hatchery.bus.client import BusClient
from hatchery.bus.messages import ANSWERED, FAILED, Reply
from hatchery.errors import HatcheryError
from hatchery.inventory.model import Inventory
from hatchery.runtime import for_runtime
from hatchery.runtime.base import AgentState

GONE, UNHEALTHY, HUNG, ALIVE, UNASKED = "gone", "unhealthy", "hung", "alive", "unasked"
RUNNING = "running"         # the runtime runs it; not probed (only its state was wanted)
CONFIRMED_DOWN = frozenset({GONE, UNHEALTHY, HUNG})


@dataclass(frozen=True)
class Confirmation:
    """What the runtime (and, for a running agent, a bound health-check) says of one agent."""

    agent: str
    finding: str                            # gone | unhealthy | hung | alive | unasked
    detail: str = ""
    restarting: bool = False                # the runtime is restarting it by itself right now
    started_at: Optional[float] = None      # epoch seconds of the start the runtime made
    instance: Optional[str] = None
    conflict: bool = False                  # contradictory replies to the health-check's id
    node: Optional[str] = None              # a cluster's word: the node that runs it
    problem: str = ""                       # what the runtime says is off (e.g. it cannot place it)

    @property
    def down(self) -> bool:
        return self.finding in CONFIRMED_DOWN


# --- the pure part: an AgentState and a reply in, a finding out ---------------------

def needs_probe(state: AgentState) -> bool:
    """Only a running agent that its runtime does not already call unhealthy or restarting is asked."""
    return bool(state.running) and not state.restarting and state.health != "unhealthy"


def finding(state: AgentState, reply: Optional[Reply], hung_after: float, probed: bool = True,
            bus_problem: str = "") -> Confirmation:
    """The confirmation for one agent from its runtime state and the health-check's reply;
    ``bus_problem``: why the health-check could not be sent (then it was never asked)."""
    base = dict(agent=state.agent, restarting=state.restarting, started_at=state.started_at,
                instance=state.instance, conflict=bool(reply and reply.conflict), node=state.node,
                problem=state.problem)
    if state.running is None:
        why = state.problem or "no answer"
        return Confirmation(finding=UNASKED, detail=f"the runtime could not be asked ({why})", **base)
    if not state.running or state.restarting:
        # Docker reports a container waiting out its restart delay as Running and Restarting:
        # its handler is gone all the same
        return Confirmation(finding=GONE, detail=f"the runtime says {state.status or 'not running'}", **base)
    if state.health == "unhealthy":
        return Confirmation(finding=UNHEALTHY, detail="the runtime's health check fails", **base)
    if not probed:
        return Confirmation(finding=RUNNING, detail="the runtime runs it (not probed)", **base)
    if bus_problem and (reply is None or reply.state not in (ANSWERED, FAILED)):
        return Confirmation(finding=UNASKED, detail=f"the runtime runs it, but the bus could not ask "
                                                    f"it ({bus_problem})", **base)
    if reply is not None and reply.state in (ANSWERED, FAILED):
        who = f"instance {reply.instance}" if reply.instance else "an unbound reply"
        return Confirmation(finding=ALIVE, detail=f"runs and answered a signed health-check ({who})", **base)
    foreign = f"; {len(reply.others)} reply(ies) from another instance ignored" if reply and reply.others else ""
    return Confirmation(finding=HUNG, detail=f"runs but did not answer a signed health-check within "
                                             f"{hung_after:g}s{foreign}", **base)


# --- asking the runtimes and the bus --------------------------------------------------

def agent_state(inv: Inventory, name: str) -> AgentState:
    """The runtime's AgentState for ``name``; running=None when it cannot be asked."""
    agent = inv.agents[name]
    try:
        return for_runtime(agent.runtime).agent_state(inv, agent)
    except HatcheryError as exc:
        return AgentState(name, agent.runtime, running=None, problem=str(exc)[:200])


def restarts_itself(inv: Inventory, name: str) -> bool:
    """The runtime's capability: it restarts a crashed agent by itself (a restart policy)."""
    return bool(for_runtime(inv.agents[name].runtime).restarts_crashed)


def reschedules(inv: Inventory, name: str) -> bool:
    """The runtime's capability: it also moves an agent off a lost node (a cluster)."""
    return bool(for_runtime(inv.agents[name].runtime).reschedules)


def confirm(inv: Inventory, bus: BusClient, names: list, *, hung_after: float, state_only=()) -> dict:
    """{name: Confirmation}: every runtime asked, then ONE bound health-check to the running ones
    (except those in ``state_only``, for which only the runtime's state is wanted)."""
    states = {name: agent_state(inv, name) for name in names}
    ask = [name for name, state in states.items() if needs_probe(state) and name not in state_only]
    replies, bus_problem = {}, ""
    if ask:
        instances = {n: states[n].instance for n in ask if states[n].instance}
        try:
            found = bus.request(ask, "health-check", timeout=hung_after, instances=instances,
                                answers_only=True)
        except HatcheryError as exc:
            # the request never went out (or its answers could not come back): nobody was
            # asked, so nobody is hung; a slow or paused broker must not restart the fleet
            found, bus_problem = [], str(exc).splitlines()[0][:200]
        replies = {reply.agent: reply for reply in found}
        if not bus_problem and any(replies.get(name) is None or replies[name].state not in
                                   (ANSWERED, FAILED) for name in ask):
            bus_problem = _bus_silent(bus, hung_after)
    return {name: finding(state, replies.get(name), hung_after, probed=name not in state_only,
                          bus_problem=bus_problem if name in ask else "")
            for name, state in states.items()}


def _bus_silent(bus: BusClient, hung_after: float) -> str:
    """Why the bus itself carries nothing right now, or "" when it does.

    Inside a subscription the client already holds (fleet.heal --watch's ``fleet/+/+``)
    a request waits for no SUBACK, so a paused or stalled broker is only silence, which
    would read as "hung" for every agent asked. One round trip of our own through the
    broker tells a silent agent from a silent bus."""
    try:
        bus.ping(timeout=max(1.0, min(hung_after, 3.0)))
    except HatcheryError as exc:
        return f"the broker did not carry our own ping either: {str(exc).splitlines()[0][:160]}"
    return ""


def runtime_unhealthy(inv: Inventory) -> set:
    """The agents their runtime reports unhealthy (a failing health check), every runtime asked."""
    found = set()
    for runtime_name in sorted({a.runtime for a in inv.agents.values()}):
        try:
            states = for_runtime(runtime_name).agent_list(inv)
        except HatcheryError:
            continue
        found |= {s.agent for s in states if s.health == "unhealthy" and s.agent in inv.agents}
    return found
