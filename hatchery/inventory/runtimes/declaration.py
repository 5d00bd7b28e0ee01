"""``RuntimeKeys``: what one runtime reads from the inventory, and how it is placed.

Like a pyinfra connector's ``data_meta``: each runtime declares the keys it
takes (with their checks) and its placement traits, and the loader validates
an agent's keys with its own runtime's declaration. The inventory never asks
which runtime it holds; it reads these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional


@dataclass(frozen=True)
class Placing:
    """What a runtime's own checks may consult: the hosts: section and the runtimes' sections."""

    hosts: dict
    sections: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeKeys:
    name: str
    # "module:Class" of its Runtime; hatchery.runtime.for_runtime imports it on first use
    implementation: str
    # the keys only some runtimes take, under an agent (or its group's vars, or a role) and under broker:
    agent_keys: Mapping[str, Callable] = field(default_factory=dict)
    broker_keys: Mapping[str, Callable] = field(default_factory=dict)
    # the key naming the engine it runs things on (an agent's own, else the broker's); None: this machine
    engine_key: Optional[str] = None
    # an agent's host: (broker.on_host) runs it on that host's engine
    on_hosts: bool = False
    # the runtime an agent placed with host: runs in when it names none (one runtime at most)
    host_default: bool = False
    # a runtime that places its agents itself on a cluster (swarm): the one "host" its agents
    # are planned from and listed under until it says which node runs each; None: not a cluster
    cluster: Optional[str] = None
    # the fix when host: (or on_host) is given to an agent of this runtime, which is not on_hosts
    pin_fix: str = ""
    # a top-level section of its own (e.g. swarm:): key -> reader(doc, data, hosts) -> value
    sections: Mapping[str, Callable] = field(default_factory=dict)
    # further rules of its own: (doc, node, key, agent, placing) -> None, and
    # (doc, node, broker, placing) -> the BrokerSpec to use
    check_agent: Optional[Callable] = None
    check_broker: Optional[Callable] = None

    def describe_pin(self) -> str:
        return self.pin_fix or "remove host: (this runtime does not run on a hosts: entry)"
