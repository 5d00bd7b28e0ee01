"""The JSON configuration an agent's command handler reads (agent_kit.config)."""

from __future__ import annotations

import json

from hatchery.configs.broker import CONTAINER_PORT
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory

# Docker agents: the secrets directory is mounted read-only here at run time.
CONTAINER_SECRETS_DIR = "/run/secrets/hatchery"


def agent_config(inv: Inventory, agent: AgentSpec, auth=None) -> dict:
    """What the agent's handler needs: who it is, where the broker is, what its verbs do.

    With ``broker.auth`` the config names the agent's credential files, never
    their content; ``auth`` (a ``credentials.FleetAuth``) defaults to the plan
    for the current state directory.
    """
    in_fleet_network = agent.runtime == DOCKER
    host = inv.broker.dns_name if in_fleet_network else inv.broker.host
    port = CONTAINER_PORT if in_fleet_network else inv.broker.port
    version = agent.version_command
    config = {
        "name": agent.name,
        "manager": inv.manager,
        "broker": {"host": host, "port": port},
        "heartbeat_interval": agent.heartbeat_interval,
        "version_command": list(version) if isinstance(version, tuple) else version,
        "reload": agent.reload.as_dict() if agent.reload else None,
    }
    if inv.broker.auth:
        config.update(credential_keys(inv, agent, auth))
    return config


def credential_keys(inv: Inventory, agent: AgentSpec, auth=None) -> dict:
    from hatchery.provision import credentials
    auth = auth or credentials.plan_auth(inv, restore=[agent.name])
    files = secret_file_paths(inv, agent)
    return {"username": agent.name, "password_file": files[credentials.PASSWORD],
            "signing_key_file": files[credentials.SIGNING_KEY],
            "broadcast_key_file": files[credentials.BROADCAST],
            # changes when the secrets rotate, so the handler is restarted with them
            "credentials": auth.fingerprint(agent.name)}


def secret_file_paths(inv: Inventory, agent: AgentSpec) -> dict:
    """Where the handler finds each credential file: mounted (docker) or in the state dir."""
    from hatchery.provision import credentials
    if agent.runtime == DOCKER:
        return {name: f"{CONTAINER_SECRETS_DIR}/{name}"
                for name in (credentials.PASSWORD, credentials.SIGNING_KEY, credentials.BROADCAST)}
    return {credentials.PASSWORD: str(credentials.secret_path(inv, agent.name)),
            credentials.SIGNING_KEY: str(credentials.key_path(inv, agent.name)),
            credentials.BROADCAST: str(credentials.key_path(inv, credentials.BROADCAST_KEY))}


def to_json(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
