"""What the Docker runtime says about its agents: ``AgentState`` and ``Provenance``.

Read from ``docker inspect``: the engine's word on each agent's container
(running, health, restart count, start time) and the labels set when it was
created (the config hash, and the instance token of that creation).
``state_of`` is pure and tested on captured ``docker inspect`` data.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Optional

from hatchery.errors import DockerError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.inventory.placement import host_of
from hatchery.runtime.base import AgentState, Provenance
from hatchery.runtime.docker.engine import (
    AGENT_LABEL,
    CONFIG_HASH,
    FLEET,
    INSTANCE_LABEL,
    ROLE,
    docker_errors,
    engine,
    find_container,
)

RUNTIME = "docker"
ORPHAN = "orphan: not in the inventory"


def agent_container(inv: Inventory, agent: AgentSpec) -> str:
    """The name of ``agent``'s container (the fleet's container prefix + agent-<name>)."""
    return f"{inv.broker.container_prefix}agent-{agent.name}"


def agent_host(inv: Inventory, agent: AgentSpec) -> Optional[str]:
    """The engine address the agent runs on (its own docker_host, else the broker's)."""
    return agent.docker_host or inv.broker.docker_host


def agent_client(inv: Inventory, agent: AgentSpec):
    return engine(agent_host(inv, agent))


# --- pure: docker inspect -> AgentState ---------------------------------------------------

def docker_epoch(text: Optional[str]) -> Optional[float]:
    """Docker's RFC 3339 time with nanoseconds as epoch seconds; its zero time ('0001-...') is None."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(trimmed).timestamp()
    except ValueError:
        return None


def state_of(name: str, attrs: dict, *, host: str, in_inventory: bool = True) -> AgentState:
    """An agent's AgentState from its container's ``docker inspect`` attributes."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    status = state.get("Status") or "unknown"
    running = bool(state.get("Running", False))
    # a stopped container keeps its last health status; it says nothing about now
    health = (state.get("Health") or {}).get("Status") if status == "running" else None
    return AgentState(
        agent=name, runtime=RUNTIME, running=running, health=health,
        restarting=bool(state.get("Restarting")), restarts=int(attrs.get("RestartCount") or 0),
        started_at=docker_epoch(state.get("StartedAt")) if running else None,
        instance=labels.get(INSTANCE_LABEL), host=host, pid=state.get("Pid") or None, status=status,
        problem="" if in_inventory else ORPHAN, in_inventory=in_inventory,
        # docker stop leaves it exited; a crash under restart=unless-stopped does not
        detail={"container": str(attrs.get("Name") or "").lstrip("/"), "image": config.get("Image"),
                "stopped": status in ("exited", "created")})


def missing_state(inv: Inventory, agent: AgentSpec) -> AgentState:
    return AgentState(agent=agent.name, runtime=RUNTIME, running=False, status="missing",
                      host=host_of(inv, agent),
                      detail={"container": agent_container(inv, agent), "stopped": True})


# --- reads ------------------------------------------------------------------------------

def agent_list(inv: Inventory) -> list:
    """The inventory's docker agents and any managed agent container of this fleet."""
    states, seen, unreachable = [], set(), {}
    for address in agent_hosts(inv):
        try:
            containers = fleet_agents(engine(address), inv)
        except DockerError as exc:      # one host down: its agents say so, the others are listed
            unreachable[address] = str(exc).splitlines()[0]
            continue
        for container in containers:
            name = container.labels.get(AGENT_LABEL, "")
            seen.add(name)
            agent = inv.agents.get(name)
            host = host_of(inv, agent) if agent else host_name(inv, address)
            states.append(state_of(name, container.attrs, host=host, in_inventory=agent is not None))
    for agent in inv.agents.values():
        if agent.runtime == RUNTIME and agent.name not in seen:
            states.append(_unlisted(inv, agent, unreachable.get(agent_host(inv, agent))))
    return states


def _unlisted(inv: Inventory, agent: AgentSpec, unreachable: Optional[str]) -> AgentState:
    missing = missing_state(inv, agent)
    if unreachable is None:
        return missing
    return AgentState(agent=agent.name, runtime=RUNTIME, running=None, status="host unreachable",
                      host=missing.host, detail={**missing.detail, "error": unreachable})


def host_name(inv: Inventory, address: Optional[str]) -> str:
    """The name an engine address goes by: its hosts: entry, else the address, else local."""
    declared = inv.host_by_engine(address)
    return declared.name if declared else (address or "local")


def agent_hosts(inv: Inventory) -> set:
    return {agent_host(inv, a) for a in inv.agents.values() if a.runtime == RUNTIME} or {inv.broker.docker_host}


def fleet_agents(client, inv: Inventory) -> list:
    with docker_errors("list agent containers"):
        return client.containers.list(all=True, filters={"label": [f"{ROLE}=agent", f"{FLEET}={inv.broker.container}"]})


def agent_state(inv: Inventory, agent: AgentSpec) -> AgentState:
    """One agent's AgentState, as ``agent_list`` gives it."""
    container = find_container(agent_client(inv, agent), agent_container(inv, agent))
    if container is None:
        return missing_state(inv, agent)
    return state_of(agent.name, container.attrs, host=host_of(inv, agent))


def agent_inspect(inv: Inventory, agent: AgentSpec) -> Optional[dict]:
    """The agent container's ``docker inspect`` attributes, or None when it has no container."""
    container = find_container(agent_client(inv, agent), agent_container(inv, agent))
    return None if container is None else container.attrs


def agent_provenance(inv: Inventory, agent: AgentSpec) -> Optional[Provenance]:
    """The image, config hash, start time and instance of the agent's container; None without one."""
    container = find_container(agent_client(inv, agent), agent_container(inv, agent))
    if container is None:
        return None
    attrs = container.attrs
    labels = attrs["Config"].get("Labels") or {}
    return Provenance(image=attrs["Config"]["Image"], image_id=attrs.get("Image"),
                      config=labels.get(CONFIG_HASH), instance=labels.get(INSTANCE_LABEL),
                      started=docker_epoch(attrs["State"].get("StartedAt")))
