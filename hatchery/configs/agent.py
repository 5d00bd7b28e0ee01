"""The JSON configuration an agent's command handler reads (agent_kit.config)."""

from __future__ import annotations

import ipaddress
import json
from typing import Optional

from hatchery.configs.broker import CONTAINER_PORT, CONTAINER_TLS_PORT
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory

# Docker agents: the secrets directory is mounted read-only here at run time.
CONTAINER_SECRETS_DIR = "/run/secrets/hatchery"
# ... and the fleet CA beside the agent's config (the config directory's mount).
CONTAINER_CA_FILE = "/etc/hatchery/ca.crt"


def same_engine(inv: Inventory, agent: AgentSpec) -> bool:
    """True when a docker agent runs on the broker's engine (they share the fleet network)."""
    return (agent.docker_host or inv.broker.docker_host or None) == (inv.broker.docker_host or None)


def broker_address(inv: Inventory) -> str:
    """The address agents on other hosts connect to: the broker host's, else broker.host."""
    placed = inv.hosts.get(inv.broker.on_host) if inv.broker.on_host else None
    return placed.address if placed else inv.broker.host


def extra_hosts(inv: Inventory, agent: AgentSpec) -> dict:
    """Docker agents on another host resolve the broker's DNS name to its host's address."""
    if agent.runtime != DOCKER or same_engine(inv, agent):
        return {}
    address = broker_address(inv)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {}       # a name: the agent connects to it directly
    return {inv.broker.dns_name: address}


def broker_endpoint(inv: Inventory, agent: AgentSpec) -> tuple:
    """(host, port, ca_file or None) an agent's handler connects to.

    Local agents: ``broker.host`` and its plain port. Docker agents on the broker's
    engine: the network alias and the container's port. Docker agents elsewhere: the
    DNS name (mapped to the broker host's address) and the published port. With
    ``broker.tls`` docker agents always use TLS and verify against the fleet CA.
    """
    tls = inv.broker.tls
    if agent.runtime != DOCKER:
        return inv.broker.host, inv.broker.port, None
    ca: Optional[str] = CONTAINER_CA_FILE if tls else None
    if same_engine(inv, agent):
        return inv.broker.dns_name, CONTAINER_TLS_PORT if tls else CONTAINER_PORT, ca
    host = inv.broker.dns_name if extra_hosts(inv, agent) else broker_address(inv)
    return host, inv.broker.tls_port if tls else inv.broker.port, ca


def agent_config(inv: Inventory, agent: AgentSpec, auth=None) -> dict:
    """What the agent's handler needs: who it is, where the broker is, what its verbs do.

    With ``broker.auth`` the config names the agent's credential files, never
    their content; ``auth`` (a ``credentials.FleetAuth``) defaults to the plan
    for the current state directory.
    """
    host, port, ca_file = broker_endpoint(inv, agent)
    version = agent.version_command
    broker = {"host": host, "port": port, **({"ca_file": ca_file} if ca_file else {})}
    config = {
        "name": agent.name,
        "manager": inv.manager,
        "broker": broker,
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
