"""Where each agent runs, by name: its hosts: entry, its engine's address, or 'local'.

The name an agent's host goes by is what ``--host`` selects, what agent.list
shows and what the per-host plans are grouped by. It follows the agent's
runtime declaration (``inventory/runtimes``): a runtime with an ``engine_key``
runs the agent on that engine (the agent's own, else the broker's), one
without runs it on this machine. Imports no model class, so the selector can
use it without an import cycle.
"""

from __future__ import annotations

from typing import Optional

from hatchery.core.hosts import LOCAL_HOST
from hatchery.inventory.runtimes import declared


def setting(spec, key: str):
    """A spec's value for a key its runtime declares: a field, else from its options."""
    return getattr(spec, key) if hasattr(spec, key) else spec.options.get(key)


def agent_engine(broker, agent) -> Optional[str]:
    """The engine address the agent runs on: its own, else the broker's (None: this machine,
    or the default engine)."""
    key = declared(agent.runtime).engine_key
    return (setting(agent, key) or setting(broker, key)) if key else None


def broker_engine(broker) -> Optional[str]:
    """The engine the broker runs on (None: this machine, or the default engine)."""
    key = declared(broker.runtime).engine_key
    return setting(broker, key) if key else None


def engine_of(inv, agent) -> Optional[str]:
    return agent_engine(inv.broker, agent)


def host_of(inv, agent) -> str:
    """The name the agent's host goes by: its hosts: entry, its engine address, or 'local'."""
    if agent.host:
        return agent.host
    runtime = declared(agent.runtime)
    if runtime.cluster:
        return runtime.cluster
    if runtime.engine_key is None:
        return LOCAL_HOST
    engine = engine_of(inv, agent)
    on = inv.host_by_engine(engine)
    return on.name if on else (engine or LOCAL_HOST)


def by_host(inv, agents: list) -> dict:
    """{host: [agents]} in inventory order."""
    groups: dict = {}
    for agent in agents:
        groups.setdefault(host_of(inv, agent), []).append(agent)
    return groups


def known_hosts(inv) -> list:
    """Every host name an agent can be on: the hosts: entries, then engines and 'local' in use."""
    return list(dict.fromkeys([*inv.hosts, *(host_of(inv, a) for a in inv.agents.values())]))
