"""Typed objects the inventory is validated into.

Everything downstream (renderers, planners, runtimes, fleet operations) takes
these objects, never raw YAML. They are plain, immutable data: no I/O here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

from hatchery.inventory.runtimes import DEFAULT_RUNTIME, RUNTIMES  # noqa: F401 (RUNTIMES: re-exported)

# Two runtimes' names, for tests and for code inside hatchery/runtime/. Anywhere
# else a comparison with them is a branch on a runtime's name, which the layer
# test refuses: read the runtime's capabilities or its inventory declaration.
LOCAL, DOCKER = "local", "docker"
DEFAULT_MANAGER = "zephyr"
# The broker users the control side logs in as besides the manager: the ACL
# layer's read-only and recorder roles (hatchery.security.acl issues them; a
# test checks the two lists agree). No agent, and no manager, may take one.
CONTROL_USERS = ("monitor", "exporter", "recorder")

# The broker image when broker.image is not set: hatchery's own, which the Docker
# runtime builds offline (mmdebstrap + docker import) on an engine that lacks it.
DEFAULT_BROKER_IMAGE = "hatchery/mosquitto:2.0.11"
# The broker keys whose defaults Inventory fills in; BrokerSpec.defaulted names those the
# inventory left unset, so a runtime may keep what a fleet deployed before ran under.
DEFAULTED_KEYS = ("container_prefix", "container", "network", "image")
# What those defaults were before names were per fleet (fleets still running so keep them).
OLD_DEFAULTS = {"container_prefix": "hatchery-", "container": "hatchery-broker", "network": "hatchery",
                "image": "eclipse-mosquitto:2"}


def fleet_tag(manager: str, state_dir) -> str:
    """The fleet's identity in names: its manager and a short hash of its state
    directory's absolute path (``zephyr-3f9a0c``), so two fleets on one engine
    never share a container, network or volume name."""
    digest = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:6]
    return f"{manager[:24].rstrip('-')}-{digest}"


def derived_names(broker: "BrokerSpec", manager: str, state_dir) -> "BrokerSpec":
    """``broker`` with every name and image the inventory left unset filled in from the
    fleet's identity: ``hatchery-<manager>-<hash>-`` as the prefix, then
    ``<prefix>broker``, ``<prefix>net``, and the default broker image."""
    unset = tuple(k for k in DEFAULTED_KEYS if getattr(broker, k) is None)
    if not unset:
        return broker
    prefix = broker.container_prefix or f"hatchery-{fleet_tag(manager, state_dir)}-"
    return replace(broker, container_prefix=prefix, container=broker.container or f"{prefix}broker",
                   network=broker.network or f"{prefix}net", image=broker.image or DEFAULT_BROKER_IMAGE,
                   defaulted=broker.defaulted + unset)


@dataclass(frozen=True)
class ReloadSpec:
    """What config-reload does: send ``signal`` to the pid in ``pid_file``, or run ``command``."""

    signal: Optional[str] = None        # e.g. "HUP"
    pid_file: Optional[str] = None
    command: Optional[Union[str, tuple]] = None

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class HostSpec:
    """A host of the fleet (the ``hosts:`` section): its engine, and the address others use."""

    name: str
    docker_host: str                    # e.g. ssh://root@10.250.1.2
    address: str                        # what agents on other hosts connect to
    labels: dict = field(default_factory=dict)
    remote_dir: Optional[str] = None    # where mounted files go on it (default ~/.hatchery/<fleet>)
    source: Optional[int] = None        # line in the inventory, for messages


@dataclass(frozen=True)
class BrokerSpec:
    runtime: str = DEFAULT_RUNTIME
    host: str = "127.0.0.1"             # where clients (manager, local agents) connect
    port: int = 1883
    bind: str = "127.0.0.1"             # listener address (local runtime)
    dns_name: str = "mqtt-broker"       # network alias / DNS name
    image: Optional[str] = None         # image runtimes; None: DEFAULT_BROKER_IMAGE (filled in by Inventory)
    docker_host: Optional[str] = None   # None = local engine; "ssh://user@host" = remote
    remote_dir: Optional[str] = None    # ssh:// engine: where mounted files go (default ~/.hatchery/<container>)
    # The fleet's names on an engine; None: derived from the fleet's identity (Inventory fills them in)
    network: Optional[str] = None       # user-defined Docker network of the fleet: {prefix}net
    container: Optional[str] = None     # the broker's container: {prefix}broker (its volume: {container}-data)
    container_prefix: Optional[str] = None  # agent containers are {prefix}agent-{name}
    max_packet_size: int = 65536        # broker guard; the contract limit is enforced by agents
    dns_provider: Optional[str] = None  # None | "hosts" | "dnsmasq"
    dns_options: dict = field(default_factory=dict)
    auth: bool = True                   # per-user credentials + topic ACL; False = Phase 1 anonymous
    tls: bool = False                   # add a TLS listener on tls_port
    tls_port: int = 8883
    tls_ca: Optional[str] = None        # user-supplied CA / server cert / key (else generated)
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    on_host: Optional[str] = None       # the hosts: entry the broker runs on
    allow_plain: bool = False           # plain MQTT on a non-loopback bind, said explicitly
    alternates: tuple = ()              # other addresses its port may be published on (a runtime
                                        # that moves it between nodes sets them)
    options: dict = field(default_factory=dict)   # keys a runtime declares that have no field here
    defaulted: tuple = ()               # which of DEFAULTED_KEYS the inventory left to their defaults


@dataclass(frozen=True)
class AgentSpec:
    name: str
    runtime: str = DEFAULT_RUNTIME
    version_command: Union[str, tuple] = "echo unknown"
    reload: Optional[ReloadSpec] = None
    heartbeat_interval: float = 600.0
    role: str = "agent"
    groups: tuple = ()
    image: str = "hatchery/agent-base:bookworm"   # docker runtime: the agent's base image
    main_command: Optional[Union[str, tuple]] = None  # the agent's own main process (docker)
    docker_host: Optional[str] = None
    host: Optional[str] = None                     # the hosts: entry it runs on
    env: dict = field(default_factory=dict)        # extra, non-secret environment
    source: Optional[int] = None                   # line in the inventory, for messages
    options: dict = field(default_factory=dict)    # keys its runtime declares that have no field here


@dataclass(frozen=True)
class CapacitySpec:
    """fleet.capacity's settings (the ``capacity:`` section)."""

    headroom: float = 0.2               # the share of each host's memory and CPU kept free


@dataclass(frozen=True)
class Inventory:
    path: Path                          # the inventory file
    manager: str = DEFAULT_MANAGER
    broker: BrokerSpec = field(default_factory=BrokerSpec)
    agents: dict = field(default_factory=dict)      # name -> AgentSpec, in file order
    groups: dict = field(default_factory=dict)      # group -> tuple of agent names
    state_dir: Path = Path(".hatchery")             # absolute after loading
    hosts: dict = field(default_factory=dict)       # name -> HostSpec, in file order
    sections: dict = field(default_factory=dict)    # a runtime's own top-level section -> its value
    capacity: CapacitySpec = field(default_factory=CapacitySpec)

    def __post_init__(self):
        # the fleet's names follow from its identity unless the inventory gives them
        object.__setattr__(self, "broker", derived_names(self.broker, self.manager, self.state_dir))

    def host_by_engine(self, docker_host: Optional[str]) -> Optional[HostSpec]:
        """The hosts: entry whose engine is ``docker_host`` (None when it is not declared)."""
        return next((h for h in self.hosts.values() if h.docker_host == docker_host), None)

    def agent(self, name: str) -> AgentSpec:
        if name not in self.agents:
            from hatchery.inventory.select import unknown
            raise unknown("agent", name, self.agents, self.path)
        return self.agents[name]

    def select(self, name=None, group=None, pattern=None, host=None) -> list:
        """Agents picked by name(s), group(s), glob(s) and host(s), or all; in inventory order."""
        from hatchery.inventory.select import select_agents
        return select_agents(self, names=name, group=group, pattern=pattern, host=host)
