"""The JSON configuration an agent's command handler reads (agent_kit.config)."""

from __future__ import annotations

import json

from .model import DOCKER, AgentSpec, Inventory
from .brokerconf import CONTAINER_PORT


def agent_config(inv: Inventory, agent: AgentSpec) -> dict:
    """What the agent's handler needs: who it is, where the broker is, what its verbs do."""
    in_fleet_network = agent.runtime == DOCKER
    host = inv.broker.dns_name if in_fleet_network else inv.broker.host
    port = CONTAINER_PORT if in_fleet_network else inv.broker.port
    version = agent.version_command
    return {
        "name": agent.name,
        "manager": inv.manager,
        "broker": {"host": host, "port": port},
        "heartbeat_interval": agent.heartbeat_interval,
        "version_command": list(version) if isinstance(version, tuple) else version,
        "reload": agent.reload.as_dict() if agent.reload else None,
    }


def to_json(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
