"""What the swarm says about its agents: ``AgentState`` and ``Provenance`` from services and tasks.

``state_of`` is pure (a service's attributes, its tasks and the node names in;
an AgentState out) and tested on captured data. The instance of an agent is
the id of the task Swarm runs it as (given to the handler as
``HATCHERY_AGENT_INSTANCE={{.Task.ID}}``), so the runtime confirms exactly one
instance per agent: the running task whose desired state is running. A task
Swarm has given up on (its node lost) that last said "running" may still run
behind a partition: it is named in ``problem`` (two handlers may duel).
"""

from __future__ import annotations

from typing import Optional

from hatchery.errors import DockerError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.base import AgentState, Provenance
from hatchery.runtime.docker.engine import (
    AGENT_LABEL,
    CONFIG_HASH,
    FLEET,
    ROLE,
    docker_errors,
)
from hatchery.runtime.docker.states import docker_epoch
from hatchery.runtime.swarm.facts import manager_client, node_facts
from hatchery.runtime.swarm.services import find, replicas_of

RUNTIME = "swarm"
ORPHAN = "orphan: not in the inventory"
UNPLACEABLE = "Swarm cannot place its task"
LIVE = ("assigned", "accepted", "preparing", "starting", "running")


def service_name(inv: Inventory, agent_name: str) -> str:
    """An agent's service: the fleet's container prefix + agent-<name> (a DNS label: <= 63)."""
    return f"{inv.broker.container_prefix}agent-{agent_name}"


# --- pure: service + tasks -> AgentState --------------------------------------------------

def current_task(tasks: list) -> Optional[dict]:
    """The task Swarm means to run now: desired running, the newest first."""
    wanted = [t for t in tasks if t.get("DesiredState") == "running"]
    return max(wanted, key=lambda t: (t["Status"]["State"] == "running", t.get("UpdatedAt", "")), default=None)


def lingering(tasks: list) -> list:
    """Tasks Swarm replaced that last said 'running': behind a partition (until it heals and
    Swarm stops them), or being stopped by an update."""
    return [t for t in tasks if t.get("DesiredState") != "running" and t["Status"]["State"] == "running"]


def state_of(name: str, service: dict, tasks: list, nodes: dict, *, in_inventory: bool = True) -> AgentState:
    """``nodes``: {node id: {'host', 'state'}} (host: the hosts: name, else the node's address)."""
    replicas = ((service.get("Spec", {}).get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1)
    task = current_task(tasks)
    failed = [t for t in tasks if t["Status"]["State"] in ("failed", "rejected", "orphaned")]
    state = task["Status"]["State"] if task else ("stopped" if replicas == 0 else "pending")
    node = (nodes.get(task.get("NodeID")) or {}) if task else {}
    # Swarm holds a task in 'starting' until its first healthy check: its container runs
    running = state in ("starting", "running")
    health = {"running": "healthy", "starting": "starting"}.get(state) if task else None
    problems = [f"task {t['ID'][:12]} on {_where(t, nodes)} still runs though Swarm replaced it "
                "(a partition, or an update stopping it): two handlers may take turns on one login"
                for t in lingering(tasks)]
    error = (task or {}).get("Status", {}).get("Err", "")
    if state == "pending" and error:
        problems.insert(0, f"{UNPLACEABLE}: {error}")
    if not in_inventory:
        problems.insert(0, ORPHAN)
    return AgentState(
        agent=name, runtime=RUNTIME, running=running, health=health,
        restarting=replicas > 0 and state != "running" and bool(failed), restarts=len(failed),
        started_at=docker_epoch(task["Status"].get("Timestamp")) if running else None,
        instance=task["ID"] if task else None, host=node.get("host") or "swarm", node=node.get("host"),
        status=state, problem="; ".join(problems), in_inventory=in_inventory,
        detail={"service": service.get("Spec", {}).get("Name", ""), "replicas": replicas,
                "image": _image(service), "error": (task or {}).get("Status", {}).get("Err", ""),
                "stopped": replicas == 0})


def _where(task: dict, nodes: dict) -> str:
    node = nodes.get(task.get("NodeID")) or {}
    return f"{node.get('host', '?')} ({node.get('state', 'unknown')})"


def _image(service: dict) -> str:
    return ((service.get("Spec", {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")


# --- reads ----------------------------------------------------------------------------------

def node_names(inv: Inventory, client) -> dict:
    with docker_errors("list the swarm's nodes"):
        facts = [node_facts(n.attrs) for n in client.nodes.list()]
    return {n.node_id: {"host": n.host_name(inv) or n.address, "state": n.state} for n in facts}


def fleet_services(inv: Inventory, client) -> list:
    with docker_errors("list the fleet's agent services"):
        return client.services.list(filters={"label": [f"{ROLE}=agent", f"{FLEET}={inv.broker.container}"]})


def agent_list(inv: Inventory) -> list:
    """An AgentState per swarm agent of the inventory, then one per orphan service."""
    wanted = [a for a in inv.agents.values() if a.runtime == RUNTIME]
    try:
        _, client = manager_client(inv)
        services = fleet_services(inv, client)
        nodes = node_names(inv, client)
        with docker_errors("list the swarm's tasks"):
            tasks = client.api.tasks()
    except DockerError as exc:
        return [_unreachable(inv, a, str(exc).splitlines()[0]) for a in wanted]
    by_service: dict = {}
    for task in tasks:
        by_service.setdefault(task.get("ServiceID"), []).append(task)
    states, seen = [], set()
    for service in services:
        name = service.attrs["Spec"].get("Labels", {}).get(AGENT_LABEL, "")
        seen.add(name)
        states.append(state_of(name, service.attrs, by_service.get(service.id, []), nodes,
                               in_inventory=name in inv.agents))
    return states + [missing_state(inv, a) for a in wanted if a.name not in seen]


def agent_state(inv: Inventory, agent: AgentSpec) -> AgentState:
    try:
        _, client = manager_client(inv)
    except DockerError as exc:
        return _unreachable(inv, agent, str(exc).splitlines()[0])
    service = find(client, service_name(inv, agent.name))
    if service is None:
        return missing_state(inv, agent)
    with docker_errors(f"list the tasks of {service.name}"):
        tasks = client.api.tasks(filters={"service": service.id})
    return state_of(agent.name, service.attrs, tasks, node_names(inv, client))


def missing_state(inv: Inventory, agent: AgentSpec) -> AgentState:
    return AgentState(agent=agent.name, runtime=RUNTIME, running=False, status="missing", host="swarm",
                      detail={"service": service_name(inv, agent.name), "stopped": True})


def _unreachable(inv: Inventory, agent: AgentSpec, error: str) -> AgentState:
    return AgentState(agent=agent.name, runtime=RUNTIME, running=None, status="swarm unreachable",
                      host="swarm", detail={"service": service_name(inv, agent.name), "error": error})


def agent_provenance(inv: Inventory, agent: AgentSpec) -> Optional[Provenance]:
    """The image and config hash of the agent's service, and its running task (instance, start)."""
    state = agent_state(inv, agent)
    if state.status in ("missing", "swarm unreachable"):
        return None
    _, client = manager_client(inv)
    service = find(client, service_name(inv, agent.name))
    labels = service.attrs["Spec"].get("Labels") or {}
    return Provenance(image=_image(service.attrs), config=labels.get(CONFIG_HASH),
                      instance=state.instance, started=state.started_at)


def agent_inspect(inv: Inventory, agent: AgentSpec) -> Optional[dict]:
    """The service's attributes and its tasks, or None when it has no service."""
    _, client = manager_client(inv)
    service = find(client, service_name(inv, agent.name))
    if service is None:
        return None
    with docker_errors(f"list the tasks of {service.name}"):
        return {**service.attrs, "Tasks": client.api.tasks(filters={"service": service.id})}


def stopped(service) -> bool:
    return replicas_of(service) == 0

