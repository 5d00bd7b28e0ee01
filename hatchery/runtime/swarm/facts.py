"""What the swarm is now, read once and typed: each host's engine, and the cluster as a
manager sees it. The plans (``cluster.py``) are pure functions of these facts.

Reading talks to every host's engine (over SSH for ``ssh://`` addresses), one
thread per host: a host that cannot be reached is a fact (``reachable=False``),
not an error.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from hatchery.errors import DockerError, HatcheryError
from hatchery.inventory.model import HostSpec, Inventory
from hatchery.inventory.swarm import HOST_LABEL, swarm_of
from hatchery.runtime.docker.engine import docker_errors, engine, explained

SWARM_PORT = 2377
PORTS_FIX = ("open 2377/tcp, 7946/tcp+udp and 4789/udp between the hosts, and check that "
             "each host's address (hosts: address) is the one the others reach it at")
NANOSECONDS = 1_000_000_000


@dataclass(frozen=True)
class HostFacts:
    """One host's engine, by its own word (``docker info``'s Swarm part)."""

    host: str
    reachable: bool
    error: str = ""
    state: str = ""                 # inactive | pending | active | error | locked
    node_id: str = ""
    cluster_id: str = ""
    manager: bool = False           # it is a manager (ControlAvailable)

    @property
    def in_swarm(self) -> bool:
        return self.state == "active"


@dataclass(frozen=True)
class NodeFacts:
    """One node as the managers see it."""

    node_id: str
    role: str                       # manager | worker
    labels: dict
    availability: str               # active | pause | drain
    state: str                      # ready | down | unknown | disconnected
    address: str
    reachability: str = ""          # managers: reachable | unreachable | unknown
    leader: bool = False
    hostname: str = ""
    version: int = 0                # the spec's version, needed to update it

    def host_name(self, inv: Inventory) -> Optional[str]:
        """The hosts: entry this node is: by its label, else by its address."""
        named = self.labels.get(HOST_LABEL)
        if named in inv.hosts:
            return named
        return next((h.name for h in inv.hosts.values() if h.address == self.address), None)


@dataclass(frozen=True)
class ClusterFacts:
    """The swarm as one manager sees it (None fields: no manager could be asked)."""

    manager: str                    # the host that answered
    cluster_id: str
    heartbeat_s: float
    nodes: dict = field(default_factory=dict)     # node id -> NodeFacts
    spec_version: int = 0


def read_host(host: HostSpec) -> HostFacts:
    try:
        client = engine(host.docker_host)
        with docker_errors(f"ask {host.name}'s engine for its swarm state"):
            info = client.info().get("Swarm") or {}
    except HatcheryError as exc:
        return HostFacts(host.name, False, error=str(exc).splitlines()[0])
    return HostFacts(host.name, True, state=info.get("LocalNodeState", ""), node_id=info.get("NodeID", ""),
                     cluster_id=(info.get("Cluster") or {}).get("ID", ""),
                     manager=bool(info.get("ControlAvailable")))


def read_hosts(inv: Inventory) -> dict:
    """{host: HostFacts} for every hosts: entry, asked in parallel."""
    hosts = list(inv.hosts.values())
    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        return {facts.host: facts for facts in pool.map(read_host, hosts)}


def manager_client(inv: Inventory, hosts: Optional[dict] = None):
    """(host name, client) of the first listed manager that is a manager of a swarm now.

    DockerError naming the managers tried when none is (the swarm is not formed, or
    has lost its quorum)."""
    tried = []
    for name in swarm_of(inv).managers:
        facts = (hosts or {}).get(name) or read_host(inv.hosts[name])
        if facts.reachable and facts.manager:
            client = engine(inv.hosts[name].docker_host)
            problem = leader_problem(name, client)
            if not problem:
                return name, client
            tried.append(f"{name}: {problem}")
            continue
        tried.append(f"{name}: {facts.error or 'not a manager of a swarm'}")
    raise DockerError("no manager of the swarm answers (" + "; ".join(tried) + ")",
                      "form it with: invoke swarm.up; if it was formed, bring a majority of its "
                      "managers back (swarm.managers in the inventory)")


LEADER_SEEN_FOR = 5.0       # seconds a manager's answer with a leader is taken as still true
_led: dict = {}             # manager -> when it last answered with a leader


def leader_problem(name: str, client) -> str:
    """Why the swarm manager ``name`` (through ``client``) cannot act now; "" when it has
    a leader. Every call waits out an election (``through_elections``) before it says
    so. A manager that had a leader a moment ago is not asked again: a task asks once
    per agent."""
    import docker.errors
    if time.monotonic() - _led.get(name, float("-inf")) < LEADER_SEEN_FOR:
        return ""
    try:
        client.api.nodes()              # refused while there is no leader
        _led[name] = time.monotonic()
        return ""
    except docker.errors.APIError as exc:
        return explained(exc)
    except docker.errors.DockerException as exc:
        return str(exc)


def read_cluster(inv: Inventory, hosts: Optional[dict] = None) -> ClusterFacts:
    """The swarm as the first answering manager sees it; DockerError when none answers."""
    name, client = manager_client(inv, hosts)
    with docker_errors(f"read the swarm from {name}", "bring a majority of the managers back"):
        attrs = client.swarm.attrs          # the property reads the swarm afresh
        nodes = [node_facts(n.attrs) for n in client.nodes.list()]
    spec = attrs.get("Spec") or {}
    heartbeat = ((spec.get("Dispatcher") or {}).get("HeartbeatPeriod") or 0) / NANOSECONDS
    return ClusterFacts(manager=name, cluster_id=attrs.get("ID", ""), heartbeat_s=heartbeat,
                        nodes={n.node_id: n for n in nodes},
                        spec_version=(attrs.get("Version") or {}).get("Index", 0))


def node_facts(attrs: dict) -> NodeFacts:
    spec, status = attrs.get("Spec") or {}, attrs.get("Status") or {}
    manager = attrs.get("ManagerStatus") or {}
    return NodeFacts(node_id=attrs["ID"], role=spec.get("Role", ""), labels=dict(spec.get("Labels") or {}),
                     availability=spec.get("Availability", ""), state=status.get("State", ""),
                     address=status.get("Addr", ""), reachability=manager.get("Reachability", ""),
                     leader=bool(manager.get("Leader")),
                     hostname=(attrs.get("Description") or {}).get("Hostname", ""),
                     version=(attrs.get("Version") or {}).get("Index", 0))
