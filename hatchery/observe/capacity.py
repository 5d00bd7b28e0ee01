"""fleet.capacity: how much of each host the fleet uses, and how many more agents fit.

Pure planning over two kinds of facts:

- ``HostResources``: a host's total and available memory and its CPUs, as its
  runtime reports them (``/proc`` for this machine, ``docker info`` for an
  engine, the node's description on a cluster);
- ``AgentUsage``: one agent's memory and CPU, from its runtime when it can say
  (container stats, process RSS), else from its own heartbeat.

A host fits ``min(by memory, by CPU)`` more agents of the fleet's median size
while staying under the operator's headroom (``capacity: {headroom: 20%}`` in
the inventory: that share of each host is kept free). A host already inside
its headroom gets a warning. A host whose free memory is unknown fits an
unknown number (None: ``?`` in the table, ``null`` in --json, no metric).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional

# The facts are the runtime's answers (runtime.base: every runtime gives them).
from hatchery.runtime.base import AgentUsage, HostResources  # noqa: F401 (re-exported)

DEFAULT_HEADROOM = 0.2
HEARTBEAT_SOURCE = "heartbeat"      # observe.resources.HEARTBEAT: the agent's own word


@dataclass(frozen=True)
class HostCapacity:
    host: str
    agents: int
    agents_mem_kb: int
    agents_cpu: float
    mem_total_kb: Optional[int]
    mem_available_kb: Optional[int]
    cpus: Optional[float]
    cpu_free: Optional[float]
    fits: Optional[int]                 # more agents of the median size (None: unknown)
    limited_by: str                     # memory | cpu | unknown
    warning: str = ""
    source: str = ""
    kind: str = "host"                  # host | node
    usages: tuple = ()                  # its agents' AgentUsage, by name
    problem: str = ""                   # why the host's figures are missing
    cpu_busy: Optional[float] = None    # cores busy on the whole host, as the host says

    @property
    def past_headroom(self) -> bool:
        return bool(self.warning)

    def as_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "usages"}
        out["agent_usage"] = [dict(u.__dict__) for u in self.usages]
        return out


@dataclass(frozen=True)
class MedianAgent:
    mem_kb: Optional[float]
    cpu: Optional[float]
    sample: int


@dataclass
class CapacityPlan:
    hosts: list = field(default_factory=list)        # HostCapacity, in host order
    median: MedianAgent = MedianAgent(None, None, 0)
    headroom: float = DEFAULT_HEADROOM

    @property
    def warnings(self) -> list:
        return [f"{h.host}: {h.warning}" for h in self.hosts if h.warning]


def median_agent(usages: Iterable[AgentUsage]) -> MedianAgent:
    """The fleet's median agent: what one more agent is expected to cost."""
    usages = list(usages)
    mems = [u.mem_kb for u in usages if u.mem_kb is not None]
    cpus = [u.cpu for u in usages if u.cpu is not None]
    return MedianAgent(statistics.median(mems) if mems else None,
                       statistics.median(cpus) if cpus else None, len(usages))


def plan(hosts: Iterable[HostResources], usages: Iterable[AgentUsage],
         headroom: float = DEFAULT_HEADROOM) -> CapacityPlan:
    """One HostCapacity per host: what its agents use, what is free, how many more fit."""
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be from 0% to 99%, got {headroom!r}")
    hosts = list(hosts)
    size = {h.host: h for h in hosts}
    usages = [_within(size.get(u.host), u) for u in usages]
    median = median_agent(usages)
    by_host: dict = {}
    for usage in usages:
        by_host.setdefault(usage.host, []).append(usage)
    known = {h.host for h in hosts}
    # a host only the agents' heartbeats name: listed, with nothing known of its size
    hosts += [HostResources(h, None, None, None, problem="no runtime figures for this host")
              for h in by_host if h not in known]
    rows = [host_capacity(h, by_host.get(h.host, []), median, headroom) for h in hosts]
    return CapacityPlan(rows, median, headroom)


def told(usage: AgentUsage) -> bool:
    """Figures (some or all) from the agent's own heartbeat: anyone with its password can write them."""
    return HEARTBEAT_SOURCE in usage.source


def _within(host: Optional[HostResources], usage: AgentUsage) -> AgentUsage:
    """An agent's told figures cut to what its host has: no agent uses more than that."""
    if host is None or not told(usage):
        return usage
    mem, cpu = usage.mem_kb, usage.cpu
    if mem is not None and host.mem_total_kb is not None:
        mem = min(mem, host.mem_total_kb)
    if cpu is not None and host.cpus is not None:
        cpu = min(cpu, host.cpus)
    return replace(usage, mem_kb=mem, cpu=cpu)


def host_capacity(host: HostResources, usages: list, median: MedianAgent,
                  headroom: float) -> HostCapacity:
    mem_used = sum(u.mem_kb or 0 for u in usages)
    cpu_used = round(sum(u.cpu or 0.0 for u in usages), 3)
    # What keeps the host's CPUs busy: our agents, or everything on it when the host says
    # more. A host that gives its own load already counts its agents in it: then what they
    # merely told us in a heartbeat cannot put it past its headroom.
    if host.cpu_busy is None:
        busy = cpu_used
    else:
        busy = max(sum(u.cpu or 0.0 for u in usages if not told(u)), host.cpu_busy)
    cpu_free = None if host.cpus is None else max(0.0, round(host.cpus - busy, 3))
    by_mem = _fit(host.mem_available_kb, _reserve(host.mem_total_kb, headroom), median.mem_kb)
    by_cpu = _fit(cpu_free, _reserve(host.cpus, headroom), median.cpu)
    fits, limited = _verdict(host, by_mem, by_cpu)
    return HostCapacity(host.host, len(usages), mem_used, cpu_used, host.mem_total_kb,
                        host.mem_available_kb, host.cpus, cpu_free, fits, limited,
                        _warning(host, cpu_free, headroom), host.source, host.kind,
                        tuple(sorted(usages, key=lambda u: u.agent)), host.problem, host.cpu_busy)


def _reserve(total, headroom: float) -> Optional[float]:
    return None if total is None else total * headroom


def _fit(free, reserve, each) -> Optional[int]:
    """How many ``each`` fit into ``free`` while ``reserve`` stays free (0 when none). A host
    with nothing to spare fits none, even of agents that use next to nothing of it."""
    if free is None or reserve is None:
        return None
    if free - reserve <= 0:
        return 0
    if not each:
        return None                     # nothing to divide by: this resource sets no limit
    return max(0, math.floor((free - reserve) / each + 1e-9))   # 6.9999 is 7: float noise


def _verdict(host: HostResources, by_mem: Optional[int], by_cpu: Optional[int]) -> tuple:
    """(fits, limited_by). A host whose free memory is unknown (an engine or node that did not
    say) takes no agents on its CPUs' word: it may be out of memory. Only a certain "none"
    (its CPUs past the headroom) is said; anything else is unknown."""
    if host.mem_total_kb is None or host.mem_available_kb is None:
        return (0, "cpu") if by_cpu == 0 else (None, "unknown")
    return _tighter(by_mem, by_cpu)


def _tighter(by_mem: Optional[int], by_cpu: Optional[int]) -> tuple:
    known = [(n, what) for n, what in ((by_mem, "memory"), (by_cpu, "cpu")) if n is not None]
    if not known:
        return None, "unknown"
    return min(known)


def _warning(host: HostResources, cpu_free: Optional[float], headroom: float) -> str:
    """Past its headroom: less free than the operator wants kept free."""
    past = []
    if host.mem_total_kb and host.mem_available_kb is not None \
            and host.mem_available_kb < host.mem_total_kb * headroom:
        past.append(f"memory {_percent(host.mem_available_kb, host.mem_total_kb)} free")
    if host.cpus and cpu_free is not None and cpu_free < host.cpus * headroom:
        past.append(f"cpu {_percent(cpu_free, host.cpus)} free")
    if not past:
        return ""
    return f"past its {headroom:.0%} headroom: " + ", ".join(past)


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


def parse_headroom(value) -> float:
    """``20%`` or ``0.2`` as a fraction; ValueError outside 0-99%."""
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"headroom {value!r} is not a percentage such as 20%") from None
    if not 0 <= number < 1 or number != number:
        raise ValueError(f"headroom {value!r} must be from 0% to 99%")
    return number
