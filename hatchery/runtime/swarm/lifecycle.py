"""An agent's service after it is made: stop (0 replicas), retire, restart, restore, logs, orphans."""

from __future__ import annotations

import time

from hatchery.core.plan import Change
from hatchery.core.words import plural
from hatchery.errors import DockerError, RuntimeFailure
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.inventory.swarm import swarm_of
from hatchery.runtime.docker import build
from hatchery.runtime.docker.containers import fleet_labels
from hatchery.runtime.docker.engine import AGENT_LABEL, FLEET, docker_errors, engine
from hatchery.runtime.swarm import nodes, objects
from hatchery.runtime.swarm.agents import (
    nothing_to_restore,
    read_previous,
    remove_service,
)
from hatchery.runtime.swarm.facts import manager_client
from hatchery.runtime.swarm.services import (
    find,
    put_spec,
    replicas_of,
    set_replicas,
    tasks_of,
    update_forced,
    wait_scheduled,
)
from hatchery.runtime.swarm.states import fleet_services, node_names, service_name

STOP_WAIT = 30.0        # seconds a stopping task has to end (its grace period is 10)
SWARM_HOST = "swarm"    # the one "host" the swarm's agents are planned from (through a manager)


def agent_stop_plan(inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
    """Stop: scale to 0 (the service and its spec kept). Retire: remove the service, its
    secrets and configs, and its images on every node."""
    _, client = manager_client(inv)
    name, item = service_name(inv, agent.name), f"agent {agent.name}"
    service = find(client, name)
    if remove:
        return [Change(item, "remove", "retiring: service, secrets, configs and images",
                       apply=lambda: _retire(inv, agent, client))]
    if service is None or replicas_of(service) == 0:
        return [Change(item, "none", "not running" if service is None else "stopped (0 replicas)")]
    return [Change(item, "stop", f"service {name}: 1 replica → 0", apply=lambda: _stop(client, service))]


def _stop(client, service) -> str:
    set_replicas(client, service, 0)
    gone = wait_no_task(client, service.name)
    return f"scaled to 0; its task ended in {gone:.1f}s"


def wait_no_task(client, name: str, timeout: float = STOP_WAIT) -> float:
    started = time.monotonic()
    while any(t["Status"]["State"] in ("assigned", "accepted", "preparing", "starting", "running")
              for t in tasks_of(client, name)):
        if time.monotonic() - started > timeout:
            raise DockerError(f"service {name}: its task still runs after {timeout:g}s",
                              "see: docker service ps " + name)
        time.sleep(0.2)
    return time.monotonic() - started


def _retire(inv: Inventory, agent: AgentSpec, client) -> str:
    name = service_name(inv, agent.name)
    removed = remove_service(client, name)
    if removed:
        wait_no_task(client, name)
    labels = fleet_labels(inv, "agent")
    count = objects.remove_all(client, name, labels)
    images = nodes.remove_images(list(inv.hosts.values()), build.agent_image_repo(agent.name))
    removed_objects = plural(count, "secret/config", "secrets/configs")
    return f"{'service removed' if removed else 'no service'}; {removed_objects} removed; {images}"


def agent_restart_plan(inv: Inventory, agent: AgentSpec) -> list:
    """A new task on the same spec (docker service update --force): a new instance."""
    _, client = manager_client(inv)
    name, item = service_name(inv, agent.name), f"agent {agent.name}"
    service = find(client, name)
    if service is None:
        return [Change(item, "none", f"no service; hatch it: invoke agent.hatch --name {agent.name}")]

    def restart() -> str:
        update_forced(client, find(client, name))
        task = wait_scheduled(client, name)
        return f"new task {task['ID'][:12]} {task['Status']['State']}"
    return [Change(item, "restart", "restart requested (a new task on the same spec)", apply=restart)]


def agent_restore_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Put the service back on the spec hatchery recorded before its last update."""
    _, client = manager_client(inv)
    name, item = service_name(inv, agent.name), f"agent {agent.name}"
    previous = read_previous(inv, agent.name)
    service = find(client, name)
    if previous is None or service is None:
        return [Change(item, "failed", "nothing to roll back to: no previous version recorded",
                       apply=nothing_to_restore)]
    image = previous["TaskTemplate"]["ContainerSpec"]["Image"]

    def restore() -> str:
        put_spec(client, find(client, name), previous)
        task = wait_scheduled(client, name)
        return f"service back on {image}; task {task['ID'][:12]} {task['Status']['State']}"
    return [Change(item, "rollback", f"back to image {image}", apply=restore)]


def orphan_stop_plans(inv: Inventory) -> dict:
    """{'swarm': () -> Changes}: scale to 0 the fleet's agent services not in the inventory,
    and stop tasks Swarm gave up on that still run (left behind a partition, taking turns
    with their replacement on the same login) on a node that can be reached again."""
    if swarm_of(inv) is None:
        return {}

    def plan() -> list:
        _, client = manager_client(inv)
        services = fleet_services(inv, client)
        changes = []
        for service in services:
            name = (service.attrs["Spec"].get("Labels") or {}).get(AGENT_LABEL, "")
            if name not in inv.agents and replicas_of(service) > 0:
                changes.append(Change(f"agent {name}", "stop", f"orphan: not in the inventory ({service.name})",
                                      apply=lambda s=service: _stop(client, s)))
        return changes + _left_over_tasks(inv, client, services)
    return {SWARM_HOST: plan}


def _left_over_tasks(inv: Inventory, client, services: list) -> list:
    nodes_by_id = node_names(inv, client)
    changes = []
    for service in services:
        agent = (service.attrs["Spec"].get("Labels") or {}).get(AGENT_LABEL, "")
        for task in tasks_of(client, service.id):
            node = nodes_by_id.get(task.get("NodeID"), {})
            if task.get("DesiredState") == "running" or task["Status"]["State"] != "running" \
                    or node.get("host") not in inv.hosts:
                continue
            changes.append(Change(f"agent {agent} task {task['ID'][:12]}", "stop",
                                  f"left running on {node['host']} after Swarm replaced it (a partition): "
                                  "it takes turns with its replacement on one login",
                                  apply=lambda t=task, h=node["host"]: _stop_left_over(inv, t, h)))
    return changes


def _stop_left_over(inv: Inventory, task: dict, host: str) -> str:
    node = engine(inv.hosts[host].docker_host)
    with docker_errors(f"stop the left-over task {task['ID'][:12]} on {host}"):
        found = node.containers.list(filters={"label": f"com.docker.swarm.task.id={task['ID']}"})
        for container in found:
            container.stop(timeout=5)
    return f"stopped its container on {host}" if found else f"already gone from {host}"


def agent_logs(inv: Inventory, agent: AgentSpec, *, lines: int = 50, follow: bool = False):
    """The service's output (every task's handler and agent process), last ``lines``, then new ones."""
    _, client = manager_client(inv)
    name = service_name(inv, agent.name)
    if find(client, name) is None:
        raise RuntimeFailure(f"agent {agent.name} has no service ({name})",
                             f"start it: invoke agent.hatch --name {agent.name}")
    pending = b""
    with docker_errors(f"read the logs of {name}"):
        for chunk in client.api.service_logs(name, stdout=True, stderr=True, follow=follow, tail=lines):
            pending += chunk
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def remove_fleet(inv: Inventory) -> None:
    """Every service, secret, config and the overlay network of this fleet, and its agents'
    images on every node (tests and benchmarks clean up with it)."""
    if swarm_of(inv) is None:
        return
    _, client = manager_client(inv)
    selector = {"label": [f"{FLEET}={inv.broker.container}"]}
    with docker_errors(f"remove fleet {inv.broker.container}"):
        for service in client.services.list(filters=selector):
            service.remove()
    deadline = time.monotonic() + STOP_WAIT
    while objects.remove_every(client, {FLEET: inv.broker.container}) and time.monotonic() < deadline:
        time.sleep(0.5)     # ending tasks still hold their secrets
    with docker_errors("remove the fleet's overlay network"):
        for network in client.networks.list(filters=selector):
            network.remove()
        while client.networks.list(filters=selector) and time.monotonic() < deadline:
            time.sleep(0.5)     # the managers remove an overlay network after the call returns
    repos = [build.agent_image_repo(a.name) for a in inv.agents.values()]
    nodes.remove_images(list(inv.hosts.values()), *repos)
