"""What each engine's host has and what the agent containers use of it (fleet.capacity).

One engine per host, asked in parallel (one thread per engine):

- the host: ``docker info`` (MemTotal, NCPU) and, for what is free, the host's
  ``/proc/meminfo`` and ``/proc/loadavg`` read through one running agent
  container of ours (a container sees the host's figures there, unless the
  host runs LXCFS). With no agent container running, a local engine's host
  is this machine and is read directly; a remote one's free memory is unknown.
- the agents: the engine's stats of each running agent container, taken twice
  ``SAMPLE_S`` apart with ``one_shot`` (a few ms each; a plain stats call
  waits two seconds for its own second sample): memory in use (less the page
  cache, as ``docker stats`` counts it), CPU as a share of one core.

The parsers take the engine's JSON, so they are tested on captured answers.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from hatchery.inventory.placement import host_of
from hatchery.errors import DockerError
from hatchery.inventory.model import Inventory
from hatchery.runtime.base import AgentUsage, HostResources
from hatchery.runtime.docker.engine import AGENT_LABEL, docker_errors, engine
from hatchery.runtime.docker.states import RUNTIME, agent_host, docker_epoch, fleet_agents
from hatchery.core.procfs import parse_loadavg, parse_meminfo

SAMPLE_S = 0.5
STATS_THREADS = 8       # stats calls in flight per engine
MAX_ENGINES = 8         # engines asked at once
READ_HOST = ["cat", "/proc/meminfo", "/proc/loadavg"]


def _engines(inv: Inventory) -> dict:
    """{engine address: [its docker agents]} for the inventory's docker agents."""
    found: dict = {}
    for agent in inv.agents.values():
        if agent.runtime == RUNTIME:
            found.setdefault(agent_host(inv, agent), []).append(agent)
    return found


def _each_engine(inv: Inventory, job) -> list:
    engines = _engines(inv)
    if not engines:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_ENGINES, len(engines))) as pool:
        answers = list(pool.map(lambda item: job(inv, *item), engines.items()))
    return [one for answer in answers for one in answer]


# --- the hosts ------------------------------------------------------------------------------

def host_resources(inv: Inventory) -> list:
    return _each_engine(inv, _host)


def _host(inv: Inventory, address: Optional[str], agents: list) -> list:
    name = host_of(inv, agents[0])
    try:
        client = engine(address)
        with docker_errors(f"read docker info of {name}"):
            info = client.info()
            running = [c for c in fleet_agents(client, inv) if c.status == "running"]
        proc_text, source = _proc_text(running, address)
    except DockerError as exc:
        return [HostResources(name, None, None, None, source="docker info",
                              problem=str(exc).splitlines()[0])]
    total, available = parse_meminfo(proc_text)
    memory = info.get("MemTotal")
    return [HostResources(name, int(memory) // 1024 if memory else total, available,
                          float(info["NCPU"]) if info.get("NCPU") else None,
                          source=f"docker info, {source}" if source else "docker info",
                          cpu_busy=parse_loadavg(proc_text.splitlines()[-1]) if proc_text else None,
                          problem="" if available is not None else
                          "free memory unknown: no running agent container to read /proc through")]


def _proc_text(running: list, address: Optional[str]) -> tuple:
    """The host's /proc/meminfo and /proc/loadavg, and how they were read ('', '' if not)."""
    for container in running[:3]:
        with docker_errors("read /proc/meminfo through an agent container"):
            code, out = container.exec_run(READ_HOST, stdout=True, stderr=False, demux=False)
        if code == 0 and out:
            return out.decode(errors="replace"), "/proc through a container"
    if address is None and not os.environ.get("DOCKER_HOST"):
        try:        # the local engine: its host is this machine
            with open("/proc/meminfo") as meminfo, open("/proc/loadavg") as loadavg:
                return meminfo.read() + loadavg.read(), "/proc of this machine"
        except OSError:
            pass
    return "", ""


# --- the agents -----------------------------------------------------------------------------

def agent_usage(inv: Inventory) -> list:
    return _each_engine(inv, _usages)


def _usages(inv: Inventory, address: Optional[str], agents: list) -> list:
    names = {a.name for a in agents}
    try:
        client = engine(address)
        running = [c for c in fleet_agents(client, inv)
                   if c.status == "running" and c.labels.get(AGENT_LABEL) in names]
        measured = sampled_usage(client, running)
    except DockerError:
        return []           # this engine's agents fall back on their heartbeats
    usages = []
    for container in running:
        if container.id in measured:
            name = container.labels[AGENT_LABEL]
            usages.append(AgentUsage(name, host_of(inv, inv.agents[name]), *measured[container.id],
                                     source="runtime: container stats"))
    return usages


def sampled_usage(client, containers: list) -> dict:
    """{container id: (memory kB, CPU share)} from two stats samples SAMPLE_S apart (a
    container that stopped meanwhile: left out). Raises DockerError."""
    first = sample_stats(client, containers)
    time.sleep(SAMPLE_S)
    second = sample_stats(client, containers)
    return {cid: container_usage(first.get(cid), after) for cid, after in second.items()}


def sample_stats(client, containers: list) -> dict:
    """{container id: one-shot stats} of ``containers``, read in parallel (a stopped one: left out)."""
    def one(container):
        try:
            with docker_errors(f"read the stats of {container.name}"):
                return container.id, client.api.stats(container.id, stream=False, one_shot=True)
        except DockerError:
            return container.id, None       # it stopped meanwhile
    if not containers:
        return {}
    with ThreadPoolExecutor(max_workers=min(STATS_THREADS, len(containers))) as pool:
        return {cid: stats for cid, stats in pool.map(one, containers) if stats}


def container_usage(before: Optional[dict], after: dict) -> tuple:
    """(memory kB, CPU share of one core) from two one-shot stats of a container."""
    return memory_kb(after), cpu_share(before, after)


def memory_kb(stats: dict) -> Optional[int]:
    """Memory in use as ``docker stats`` shows it: usage less the inactive page cache."""
    memory = stats.get("memory_stats") or {}
    usage = memory.get("usage")
    if not isinstance(usage, int):
        return None
    detail = memory.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return max(0, usage - (cache if isinstance(cache, int) else 0)) // 1024


def cpu_share(before: Optional[dict], after: dict) -> Optional[float]:
    """CPU between two one-shot samples as a share of one core (0.25 = a quarter)."""
    if before is None:
        return None
    used = _total(after) - _total(before)
    elapsed = _read_ns(after) - _read_ns(before)
    if used < 0 or elapsed <= 0:
        return None
    return round(used / elapsed, 3)


def _total(stats: dict) -> int:
    usage = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    return usage if isinstance(usage, int) else 0


def _read_ns(stats: dict) -> int:
    """The sample's own time ('2026-12-03T10:26:02.490790605Z') in nanoseconds."""
    text = stats.get("read") or ""
    whole = docker_epoch(text)
    if whole is None:
        return 0
    fraction = text.rpartition(".")[2].rstrip("Z")[:9]
    nanos = int(fraction.ljust(9, "0")) if fraction.isdigit() else 0
    return int(whole) * 1_000_000_000 + nanos
