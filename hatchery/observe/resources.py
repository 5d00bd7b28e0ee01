"""fleet.capacity's facts: every runtime in use answers for its hosts and agents, the
heartbeats fill in what no runtime measured, and ``observe.capacity`` plans on the result.

The runtimes are asked at the same time (each samples CPU over half a second,
and each asks its hosts in parallel), so gathering takes about as long as the
slowest host. A host may be named by two runtimes (the local handlers and the
local Docker engine both run on this machine): it is listed once, from the
runtime that could read it.

Swarm (or any runtime that places agents on nodes) plugs in through the same
two methods: its ``host_resources`` lists nodes (``kind="node"``) and its
``agent_usage`` names each agent's node as its host.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from hatchery.inventory.placement import host_of
from hatchery.core.results import Result
from hatchery.errors import HatcheryError
from hatchery.inventory.model import Inventory
from hatchery.observe import capacity
from hatchery.observe.capacity import AgentUsage, CapacityPlan, HostResources
from hatchery.runtime import for_runtime

HEARTBEAT = "heartbeat"


@dataclass
class Facts:
    hosts: list = field(default_factory=list)         # HostResources
    usages: list = field(default_factory=list)        # AgentUsage, one per agent at most
    notes: list = field(default_factory=list)         # what could not be read
    seconds: float = 0.0


def runtimes_in_use(inv: Inventory) -> list:
    return list(dict.fromkeys(a.runtime for a in inv.agents.values()))


def gather(inv: Inventory, read_state=None) -> Facts:
    """The runtimes' figures, then the heartbeats for the agents they did not measure.
    ``read_state``: returns a FleetState of the retained heartbeats (read meanwhile), or
    raises HatcheryError (then the runtimes' figures are all there is)."""
    started = time.monotonic()
    facts = Facts()
    names = runtimes_in_use(inv)
    jobs = [(name, "host_resources") for name in names] + [(name, "agent_usage") for name in names]
    with ThreadPoolExecutor(max_workers=len(jobs) + 1) as pool:
        heard = pool.submit(_read, read_state)
        answers = list(pool.map(lambda job: _ask(inv, *job), jobs))
        state, problem = heard.result()
    if problem:
        facts.notes.append(f"heartbeats not read: {problem}")
    measured: dict = {}
    for (runtime, method), (answer, problem) in zip(jobs, answers):
        if problem:
            facts.notes.append(f"{runtime} runtime: {problem}")
        if method == "host_resources":
            _add_hosts(facts.hosts, answer)
        else:
            measured.update({u.agent: u for u in answer})
    facts.usages = with_heartbeats(inv, measured, state)
    facts.seconds = time.monotonic() - started
    return facts


def _read(read_state) -> tuple:
    if read_state is None:
        return None, ""
    try:
        return read_state(), ""
    except HatcheryError as exc:
        return None, str(exc).splitlines()[0]


def heartbeats(inv: Inventory, bus, timeout: float):
    """The retained heartbeats and states, folded (what the monitor's snapshot reads)."""
    from hatchery.observe.fleetstate import FleetState, retained_filters
    return FleetState.for_inventory(inv).observe_all(bus.retained_messages(retained_filters(),
                                                                           timeout=timeout))


def _ask(inv: Inventory, runtime: str, method: str) -> tuple:
    try:
        return getattr(for_runtime(runtime), method)(inv), ""
    except HatcheryError as exc:
        return [], str(exc).splitlines()[0]


def _add_hosts(hosts: list, found: list) -> None:
    """Each host once; a later answer replaces an earlier one only when it knows more."""
    at = {h.host: i for i, h in enumerate(hosts)}
    for host in found:
        if host.host not in at:
            at[host.host] = len(hosts)
            hosts.append(host)
        elif hosts[at[host.host]].mem_available_kb is None and host.mem_available_kb is not None:
            hosts[at[host.host]] = host


def with_heartbeats(inv: Inventory, measured: dict, state) -> list:
    """One AgentUsage per agent: the runtime's, its gaps filled from the agent's last
    heartbeat; an agent no runtime measured, from its heartbeat alone (when it is up)."""
    usages = []
    for name, spec in inv.agents.items():
        beat = _beat(state, name)
        found: Optional[AgentUsage] = measured.get(name)
        if found is None:
            if beat is not None and (beat.mem_kb is not None or beat.cpu is not None):
                usages.append(AgentUsage(name, host_of(inv, spec), beat.mem_kb, beat.cpu, HEARTBEAT))
            continue
        if beat is not None and (found.mem_kb is None or found.cpu is None):
            found = AgentUsage(found.agent, found.host,
                               found.mem_kb if found.mem_kb is not None else beat.mem_kb,
                               found.cpu if found.cpu is not None else beat.cpu,
                               f"{found.source} + {HEARTBEAT}")
        usages.append(found)
    return usages


def _beat(state, name: str):
    if state is None:
        return None
    facts = state.facts(name)
    return facts.beat if facts.online is not False else None     # an offline agent uses nothing


@dataclass
class CapacityReport(Result):
    """fleet.capacity's answer: ``ok`` unless a host is past its headroom (cron's exit 1)."""

    plan: CapacityPlan
    facts: Facts
    columns: tuple = ("host", "agents", "agents_memory", "agents_cpu", "memory_free", "cpus_free",
                      "fits", "limited_by", "warning")

    @property
    def items(self) -> list:
        return self.plan.hosts

    @property
    def problems(self) -> list:
        return self.plan.warnings

    def rows(self) -> list:
        return [_row(h) for h in self.plan.hosts]

    def agent_rows(self) -> list:
        return [{"agent": u.agent, "host": u.host, "memory": _mem(u.mem_kb), "cpu": _cpu(u.cpu),
                 "source": u.source} for h in self.plan.hosts for u in h.usages]

    def extras(self) -> dict:
        median = self.plan.median
        return {"headroom": self.plan.headroom,
                "median_agent": {"mem_kb": median.mem_kb, "cpu": median.cpu, "sample": median.sample},
                "notes": self.facts.notes, "gather_s": round(self.facts.seconds, 3)}


def report(inv: Inventory, facts: Facts, headroom: Optional[float] = None) -> CapacityReport:
    share = inv.capacity.headroom if headroom is None else headroom
    return CapacityReport(capacity.plan(facts.hosts, facts.usages, share), facts)


def _row(host) -> dict:
    free = "-" if host.mem_available_kb is None else _mem(host.mem_available_kb)
    total = "-" if host.mem_total_kb is None else _mem(host.mem_total_kb)
    cpus = "-" if host.cpus is None else f"{host.cpu_free:g} of {host.cpus:g}"
    return {"host": host.host + (" (node)" if host.kind == "node" else ""), "agents": host.agents,
            "agents_memory": _mem(host.agents_mem_kb), "agents_cpu": _cpu(host.agents_cpu),
            "memory_free": "-" if host.mem_total_kb is None else f"{free} of {total}",
            "cpus_free": cpus,
            "fits": "?" if host.fits is None else host.fits, "limited_by": host.limited_by,
            "warning": host.warning or host.problem}


def _mem(kb) -> str:
    if kb is None:
        return "-"
    if kb >= 1024 * 1024:
        return f"{kb / 1024 / 1024:.1f} GiB"
    return f"{kb / 1024:.1f} MiB"


def _cpu(share) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


__all__ = ["Facts", "HostResources", "AgentUsage", "gather", "report", "CapacityReport"]
