"""``invoke swarm.up``: form the swarm the inventory describes, or bring it in line.

``decide(inv, hosts, cluster)`` is pure: the facts (``facts.py``) in, one ``Step``
per thing to do out, each with an ``Act`` (an Enum, so a refusal can never read
as a change). ``up_plan`` reads the facts and turns the steps into ``Change``s:

- no host in a swarm: ``init`` on the first manager, its address advertised;
- a host not in the swarm: ``join`` with the manager or worker token;
- a node whose role differs from ``swarm.managers``: ``promote`` or ``demote``;
- a node whose labels differ from its host's (plus ``hatchery.host``): ``label``;
- a dispatcher heartbeat other than ``swarm.heartbeat``: ``heartbeat``;
- a host in another swarm, or unreachable: a failed item with the fix; the rest go on.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from hatchery.core.plan import Action, Change, text_diff
from hatchery.errors import DockerError
from hatchery.inventory.model import Inventory
from hatchery.inventory.swarm import node_labels, swarm_of
from hatchery.runtime.docker.engine import docker_errors, engine
from hatchery.runtime.swarm.facts import (
    NANOSECONDS,
    PORTS_FIX,
    SWARM_PORT,
    ClusterFacts,
    HostFacts,
    manager_client,
    read_cluster,
    read_hosts,
)


class Act(enum.Enum):
    NONE = "none"
    INIT = "init"
    JOIN = "join"
    PROMOTE = "promote"
    DEMOTE = "demote"
    LABEL = "label"
    HEARTBEAT = "heartbeat"
    REFUSE = "refuse"           # cannot be done by swarm.up: the reason says what to do


@dataclass(frozen=True)
class Step:
    item: str                   # "node h2", "swarm"
    act: Act
    reason: str
    host: Optional[str] = None
    role: str = ""              # join / init: manager | worker
    node_id: str = ""
    labels: Optional[dict] = None
    before: Optional[dict] = None


def decide(inv: Inventory, hosts: dict, cluster: Optional[ClusterFacts]) -> list:
    """The steps that bring the swarm in line with ``inv`` (pure)."""
    steps, cluster_id = [], cluster.cluster_id if cluster else ""
    founder = None if cluster else _founder(inv, hosts)
    if founder:
        steps.append(Step(f"node {founder}", Act.INIT, "no swarm yet: form it here", founder, "manager",
                          labels=node_labels(inv.hosts[founder])))
    for name in joining_order(inv):
        if name != founder:
            steps.append(_host_step(inv, hosts[name], cluster, cluster_id, founder))
    steps.append(_heartbeat_step(inv, cluster, founder))
    return steps + _strangers(inv, cluster)


def joining_order(inv: Inventory) -> list:
    """The managers in their listed order, then the workers in the order of hosts:."""
    return [*swarm_of(inv).managers, *(h for h in inv.hosts if h not in swarm_of(inv).managers)]


def _founder(inv: Inventory, hosts: dict) -> Optional[str]:
    """The manager that forms a new swarm: the first listed one that can be reached."""
    if any(f.in_swarm for f in hosts.values()):
        return None         # some host is in a swarm that no listed manager speaks for
    return next((m for m in swarm_of(inv).managers if hosts[m].reachable), None)


def wanted_role(inv: Inventory, host: str) -> str:
    return "manager" if host in swarm_of(inv).managers else "worker"


def _host_step(inv: Inventory, facts: HostFacts, cluster, cluster_id: str, founder) -> Step:
    name, item, role = facts.host, f"node {facts.host}", wanted_role(inv, facts.host)
    labels = node_labels(inv.hosts[name])
    if not facts.reachable:
        return Step(item, Act.REFUSE, f"cannot reach its engine: {facts.error}", name)
    if facts.in_swarm and (cluster is None or facts.cluster_id != cluster_id):
        return Step(item, Act.REFUSE, f"in another swarm (cluster {facts.cluster_id[:12]}); "
                    f"make it leave first, on that host: docker swarm leave --force", name)
    if not facts.in_swarm:
        if cluster is None and founder is None:
            return Step(item, Act.REFUSE, "no manager to join: none of swarm.managers can be reached", name)
        return Step(item, Act.JOIN, f"not in the swarm ({facts.state or 'inactive'}): join as {role}",
                    name, role, labels=labels)
    node = cluster.nodes.get(facts.node_id)
    if node is None:
        return Step(item, Act.REFUSE, "in the swarm by its own word, unknown to the managers; "
                    "wait a few seconds and run again", name)
    if node.role != role:
        act = Act.PROMOTE if role == "manager" else Act.DEMOTE
        return Step(item, act, f"{node.role}, listed as a {role}", name, role, node.node_id, labels, node.labels)
    if node.labels != labels:
        return Step(item, Act.LABEL, "labels differ from its hosts: entry", name, role, node.node_id,
                    labels, node.labels)
    return Step(item, Act.NONE, f"{role}, {node.state}, labels as in hosts:", name)


def _heartbeat_step(inv: Inventory, cluster: Optional[ClusterFacts], founder: Optional[str]) -> Step:
    wanted = swarm_of(inv).heartbeat
    if cluster is None:
        return Step("swarm heartbeat", Act.NONE, f"{wanted:g} s when formed" if founder else "no swarm")
    if abs(cluster.heartbeat_s - wanted) < 0.001:
        return Step("swarm heartbeat", Act.NONE, f"{wanted:g} s")
    return Step("swarm heartbeat", Act.HEARTBEAT,
                f"{cluster.heartbeat_s:g} s → {wanted:g} s (a lost node is noticed in ~{5 * wanted:g} s)")


def _strangers(inv: Inventory, cluster: Optional[ClusterFacts]) -> list:
    """Nodes no hosts: entry stands for (a host that left and joined again leaves its old
    node behind, down): reported, left alone."""
    if cluster is None:
        return []
    return [Step(f"node {n.node_id[:12]}", Act.NONE,
                 f"in the swarm, not in hosts: ({n.state}); remove it by hand if it is gone: "
                 f"docker node rm {n.node_id[:12]}") for n in cluster.nodes.values() if n.host_name(inv) is None]


# --- facts -> changes ----------------------------------------------------------------

def up_plan(inv: Inventory) -> list:
    """Read the facts (every host in parallel, then one manager) and plan swarm.up."""
    hosts = read_hosts(inv)
    try:
        cluster = read_cluster(inv, hosts)
    except DockerError:
        if any(f.in_swarm for f in hosts.values()):
            raise               # formed, but no manager answers: nothing safe to do
        cluster = None
    swarm = _Swarm(inv)
    return [_change(step, swarm) for step in decide(inv, hosts, cluster)]


# What each swarm.up step is among the plan's actions (its own word leads the reason).
ACTIONS = {Act.NONE: Action.NONE, Act.INIT: Action.CREATE, Act.JOIN: Action.CREATE,
           Act.PROMOTE: Action.UPDATE, Act.DEMOTE: Action.UPDATE, Act.LABEL: Action.UPDATE,
           Act.HEARTBEAT: Action.UPDATE, Act.REFUSE: Action.FAILED}


def _change(step: Step, swarm: "_Swarm") -> Change:
    diff = text_diff(_lines(step.before), _lines(step.labels), f"{step.item} labels") \
        if step.act in (Act.LABEL, Act.PROMOTE, Act.DEMOTE) else ""
    apply = {Act.INIT: swarm.init, Act.JOIN: swarm.join, Act.PROMOTE: swarm.update_node,
             Act.DEMOTE: swarm.update_node, Act.LABEL: swarm.update_node,
             Act.HEARTBEAT: swarm.heartbeat, Act.REFUSE: swarm.refuse}.get(step.act)
    reason = step.reason if step.act in (Act.NONE, Act.REFUSE) else f"{step.act.value}: {step.reason}"
    return Change(step.item, ACTIONS[step.act], reason, diff, (lambda: apply(step)) if apply else None)


def _lines(labels: Optional[dict]) -> str:
    return "".join(f"{k}={v}\n" for k, v in sorted((labels or {}).items()))


class _Swarm:
    """The apply steps: each asks a manager (found when needed: init makes the first)."""

    def __init__(self, inv: Inventory):
        self.inv = inv

    def _manager(self):
        return manager_client(self.inv)[1]

    def _remotes(self, joining: str) -> list:
        """Manager addresses to join through, one that answers first (the engine uses the first)."""
        answering = manager_client(self.inv)[0]
        names = [answering, *(m for m in swarm_of(self.inv).managers if m not in (answering, joining))]
        return [f"{self.inv.hosts[m].address}:{SWARM_PORT}" for m in names]

    def init(self, step: Step) -> str:
        host = self.inv.hosts[step.host]
        with docker_errors(f"form the swarm on {host.name}", PORTS_FIX):
            engine(host.docker_host).swarm.init(
                advertise_addr=host.address, listen_addr=f"0.0.0.0:{SWARM_PORT}",
                dispatcher_heartbeat_period=int(swarm_of(self.inv).heartbeat * NANOSECONDS))
        self._label(engine(host.docker_host).info()["Swarm"]["NodeID"], step.labels, "manager")
        return f"swarm formed, advertising {host.address}:{SWARM_PORT}"

    def join(self, step: Step) -> str:
        host, manager = self.inv.hosts[step.host], self._manager()
        with docker_errors("read the join tokens from a manager"):
            token = manager.swarm.attrs["JoinTokens"]["Manager" if step.role == "manager" else "Worker"]
        remotes = self._remotes(host.name)
        client = engine(host.docker_host)
        with docker_errors(f"join {host.name} to the swarm as a {step.role}", PORTS_FIX):
            client.swarm.join(remote_addrs=remotes, join_token=token, advertise_addr=host.address,
                              listen_addr=f"0.0.0.0:{SWARM_PORT}")
            node_id = client.info()["Swarm"]["NodeID"]
        self._label(node_id, step.labels, step.role)
        return f"joined as a {step.role}, labelled"

    def update_node(self, step: Step) -> str:
        self._label(step.node_id, step.labels, step.role)
        return f"{step.role}, labels {', '.join(f'{k}={v}' for k, v in sorted(step.labels.items()))}"

    def _label(self, node_id: str, labels: dict, role: str) -> None:
        client = self._manager()
        with docker_errors(f"update node {node_id[:12]}"):
            node = client.nodes.get(node_id)
            spec = {**node.attrs["Spec"], "Labels": labels, "Role": role}
            node.update(spec)

    def heartbeat(self, step: Step) -> str:
        client = self._manager()
        period = int(swarm_of(self.inv).heartbeat * NANOSECONDS)
        with docker_errors("set the dispatcher heartbeat"):
            attrs = client.swarm.attrs
            spec = attrs["Spec"]
            spec["Dispatcher"] = {**(spec.get("Dispatcher") or {}), "HeartbeatPeriod": period}
            client.api.update_swarm(version=attrs["Version"]["Index"], swarm_spec=spec)
        return f"dispatcher heartbeat {swarm_of(self.inv).heartbeat:g} s"

    def refuse(self, step: Step) -> str:
        raise DockerError(f"{step.item}: {step.reason}", _fix_for(step))


def _fix_for(step: Step) -> str:
    if "cannot reach" in step.reason:
        return f"bring {step.host}'s engine back (or its sshd), then run: invoke swarm.up"
    return "see the reason above, then run: invoke swarm.up"
