"""The JSON configuration an agent's command handler reads (agent_kit.config).

Where the handler finds the broker and its credential files comes from the
agent's runtime as a ``configs.layout.AgentLayout`` (``Runtime.agent_layout``);
the credentials' fingerprint from the caller's plan (a ``FleetAuth``). This
module asks neither which runtime runs the handler nor where secrets live.
"""

from __future__ import annotations

import json

from hatchery.configs.layout import AgentLayout
from hatchery.core.paths import BROADCAST, PASSWORD, SIGNING_KEY
from hatchery.errors import UsageError
from hatchery.inventory.model import AgentSpec, Inventory


def broker_address(inv: Inventory) -> str:
    """The address agents on other hosts connect to: the broker host's, else broker.host."""
    placed = inv.hosts.get(inv.broker.on_host) if inv.broker.on_host else None
    return placed.address if placed else inv.broker.host


def agent_config(inv: Inventory, agent: AgentSpec, layout: AgentLayout, auth=None) -> dict:
    """What the agent's handler needs: who it is, where the broker is, what its verbs do.

    With ``broker.auth`` the config names the agent's credential files, never
    their content, and ``auth`` (the plan's ``credentials.FleetAuth``) must be given:
    its fingerprint changes when the secrets rotate, so the handler restarts with them.
    """
    version = agent.version_command
    broker = {"host": layout.broker_host, "port": layout.broker_port,
              **({"ca_file": layout.ca_file} if layout.ca_file else {})}
    config = {
        "name": agent.name,
        "manager": inv.manager,
        "broker": broker,
        "heartbeat_interval": agent.heartbeat_interval,
        "version_command": list(version) if isinstance(version, tuple) else version,
        "reload": agent.reload.as_dict() if agent.reload else None,
    }
    config.update({key: value for key, value in (("keepalive", layout.keepalive),
                                                 ("reconnect_max", layout.reconnect_max)) if value})
    if inv.broker.auth:
        config.update(credential_keys(agent, layout, auth))
    return config


def credential_keys(agent: AgentSpec, layout: AgentLayout, auth) -> dict:
    if auth is None:
        raise UsageError(f"agent {agent.name}'s config needs the fleet's credentials plan",
                         "pass the plan's FleetAuth (provision.operations does)")
    files = layout.credential_files
    return {"username": agent.name, "password_file": files[PASSWORD],
            "signing_key_file": files[SIGNING_KEY], "broadcast_key_file": files[BROADCAST],
            # changes when the secrets rotate, so the handler is restarted with them
            "credentials": auth.fingerprint(agent.name)}


def to_json(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
