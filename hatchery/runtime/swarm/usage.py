"""fleet.capacity on swarm: per node, its size and what is free; per agent, what its task uses.

- a node (``kind="node"``, named by its hosts: entry): its size from the node's own
  description as a manager lists it (``docker node inspect``: Description.Resources,
  MemoryBytes and NanoCPUs); what is free and how busy it is from its ``/proc/meminfo``
  and ``/proc/loadavg``, read through one of our task containers on it (through the
  node's own engine). A node that is not ready is listed with its size and the reason;
  one with no task of ours has its free memory unknown.
- an agent: the engine stats of its current task's container (the instance agent.list
  confirms, so a left-over task behind a partition is not counted), on the node that runs
  it, sampled twice as the docker runtime does. Nodes are asked in parallel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hatchery.core.procfs import parse_loadavg, parse_meminfo
from hatchery.errors import DockerError
from hatchery.inventory.model import Inventory
from hatchery.runtime.base import AgentUsage, HostResources
from hatchery.runtime.docker.engine import docker_errors, engine
from hatchery.runtime.docker.states import fleet_agents
from hatchery.runtime.docker.usage import READ_HOST, sampled_usage
from hatchery.runtime.swarm.facts import NANOSECONDS, manager_client, node_facts
from hatchery.runtime.swarm.inside import TASK_LABEL
from hatchery.runtime.swarm.states import RUNTIME, agent_list

MAX_NODES = 8           # nodes asked at once
SOURCE = "node inspect"


def _ours(inv: Inventory) -> bool:
    return any(a.runtime == RUNTIME for a in inv.agents.values())


def _parallel(job, items: list) -> list:
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_NODES, len(items))) as pool:
        return list(pool.map(job, items))


# --- the nodes ------------------------------------------------------------------------------

def host_resources(inv: Inventory) -> list:
    """A HostResources per node of the swarm; DockerError when no manager answers."""
    if not _ours(inv):
        return []
    name, client = manager_client(inv)
    with docker_errors(f"list the swarm's nodes from {name}"):
        nodes = [n.attrs for n in client.nodes.list()]
    return _parallel(lambda attrs: node_resources(inv, attrs), nodes)


def node_size(attrs: dict) -> tuple:
    """(memory kB, CPUs) from a node's description (None for what it does not say)."""
    resources = (attrs.get("Description") or {}).get("Resources") or {}
    memory, nanos = resources.get("MemoryBytes"), resources.get("NanoCPUs")
    return (memory // 1024 if isinstance(memory, int) and memory > 0 else None,
            round(nanos / NANOSECONDS, 3) if isinstance(nanos, int) and nanos > 0 else None)


def node_name(inv: Inventory, attrs: dict) -> str:
    facts = node_facts(attrs)
    return facts.host_name(inv) or facts.hostname or facts.address or facts.node_id[:12]


def node_resources(inv: Inventory, attrs: dict) -> HostResources:
    name, state = node_name(inv, attrs), node_facts(attrs).state
    total, cpus = node_size(attrs)
    if state != "ready":
        return HostResources(name, total, None, cpus, source=SOURCE, kind="node",
                             problem=f"node {state or 'unknown'}: free memory unknown")
    proc_text, problem = _proc_of(inv, name)
    from_proc, available = parse_meminfo(proc_text)
    return HostResources(name, total or from_proc, available, cpus,
                         source=f"{SOURCE}, /proc through a task container" if proc_text else SOURCE,
                         cpu_busy=parse_loadavg(proc_text.splitlines()[-1]) if proc_text else None,
                         kind="node", problem=problem)


def _proc_of(inv: Inventory, name: str) -> tuple:
    """(the node's /proc/meminfo + /proc/loadavg text, '') or ('', why not)."""
    if name not in inv.hosts:
        return "", "free memory unknown: the node is no hosts: entry (its engine is unknown)"
    try:
        client = engine(inv.hosts[name].docker_host)
        running = [c for c in fleet_agents(client, inv) if c.status == "running"]
        for container in running[:3]:
            with docker_errors(f"read /proc on {name} through {container.name}"):
                code, out = container.exec_run(READ_HOST, stdout=True, stderr=False, demux=False)
            if code == 0 and out:
                return out.decode(errors="replace"), ""
    except DockerError as exc:
        return "", str(exc).splitlines()[0]
    return "", "free memory unknown: no running agent task on this node to read /proc through"


# --- the agents -----------------------------------------------------------------------------

def agent_usage(inv: Inventory) -> list:
    """An AgentUsage per swarm agent whose current task runs on a node of hosts:."""
    if not _ours(inv):
        return []
    by_node: dict = {}
    for state in agent_list(inv):
        if state.running and state.in_inventory and state.node in inv.hosts and state.instance:
            by_node.setdefault(state.node, {})[state.instance] = state.agent
    return [u for found in _parallel(lambda item: _node_usages(inv, *item), list(by_node.items()))
            for u in found]


def _node_usages(inv: Inventory, node: str, tasks: dict) -> list:
    """``tasks``: {task id: agent} running on ``node``."""
    try:
        client = engine(inv.hosts[node].docker_host)
        running = [c for c in fleet_agents(client, inv)
                   if c.status == "running" and c.labels.get(TASK_LABEL) in tasks]
        measured = sampled_usage(client, running)
    except DockerError:
        return []           # this node's agents fall back on their heartbeats
    return [AgentUsage(tasks[container.labels[TASK_LABEL]], node, *measured[container.id],
                       source="runtime: task container stats")
            for container in running if container.id in measured]
