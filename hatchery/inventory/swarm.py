"""The ``swarm:`` section and what runs on it: an existing Docker Swarm places, restarts
and fails over the broker and the agents whose ``runtime`` is ``swarm``.

::

    hosts:                       # every host is a node of the swarm
      h1: {docker_host: "ssh://root@10.0.0.2", labels: {zone: a}}
      ...
    swarm:
      managers: [h1, h2, h3]     # an odd number; hosts not listed join as workers
      heartbeat: 2               # seconds between node heartbeats (a lost node is noticed in ~5x)
    agents:
      a1:
        runtime: swarm
        placement:               # optional, per agent, group or role; Docker's own syntax
          constraints: ["node.labels.zone==a"]
          preferences: ["spread=node.labels.zone"]

A host's labels become its node's labels, plus ``hatchery.host: <name>``, so a
constraint can name a host (``node.labels.hatchery.host==h2``); ``host:`` itself
pins to one engine and is refused on swarm. Everything here is pure: the
inventory's objects in, problems or eligible hosts out.
"""

from __future__ import annotations

from hatchery.inventory import parse
from hatchery.inventory.document import Doc, checked_fields
from hatchery.inventory.fields import CONSTRAINT_RE, SWARM_FIELDS
from hatchery.inventory.hosts import unknown_host
from hatchery.inventory.model import SWARM, AgentSpec, BrokerSpec, HostSpec, Placement, SwarmSpec

HOST_LABEL = "hatchery.host"        # the node label naming its hosts: entry
PIN_FIX = "remove {key}; to choose nodes, use placement: {{constraints: ['node.labels.hatchery.host=={host}']}}"


def read_swarm(doc: Doc, data: dict, hosts: dict):
    """The ``swarm:`` section as a SwarmSpec (None when absent; no managers when wrong,
    so what runs on it is not told a second time that it has no swarm)."""
    node = data.get("swarm")
    if node is None:
        return None
    broken = SwarmSpec(managers=())
    if not isinstance(node, dict):
        doc.add(data, "swarm", "swarm", "expected a mapping", "write e.g. swarm: {managers: [h1, h2, h3]}")
        return broken
    fields = checked_fields(doc, node, SWARM_FIELDS, "swarm")
    if "managers" not in node:
        doc.add(data, "swarm", "swarm.managers", "a swarm needs its managers",
                "write e.g. managers: [h1, h2, h3] (hosts: entries; the others join as workers)")
        return broken
    managers = fields.get("managers")
    if managers is None:
        return broken
    for index, name in enumerate(managers):
        if name not in hosts:
            unknown_host(doc, node["managers"], index, f"swarm.managers[{index}]", name, hosts)
    if len(managers) % 2 == 0:
        doc.add(node, "managers", "swarm.managers", quorum_problem(len(managers)),
                "list an odd number of managers (1, 3 or 5); the other hosts join as workers")
    return SwarmSpec(managers=managers, heartbeat=fields.get("heartbeat", 2.0),
                     source=parse.line(data, "swarm"))


def quorum_problem(count: int) -> str:
    """Why an even number of managers is refused: the Raft quorum rule."""
    majority = count // 2 + 1
    return (f"{count} managers: Swarm acts only while a majority ({majority} of {count}) is reachable, "
            f"so {count} managers tolerate losing {(count - 1) // 2}, as {count - 1} would, "
            f"and a network split {count // 2}-{count // 2} stops the whole swarm")


def node_labels(host: HostSpec) -> dict:
    """The labels ``host``'s node carries: its own, and its name."""
    return {**host.labels, HOST_LABEL: host.name}


def eligible_hosts(hosts: dict, swarm: SwarmSpec, placement) -> list:
    """The hosts whose node may run a service with ``placement``, by what the inventory
    knows (labels, role); constraints on ids, hostnames and platforms are left to Swarm."""
    return [h for h in hosts.values() if all(_holds(rule, h, swarm) for rule in _constraints(placement))]


def _constraints(placement) -> tuple:
    return placement.constraints if placement else ()


def _holds(rule: str, host: HostSpec, swarm: SwarmSpec) -> bool:
    match = CONSTRAINT_RE.fullmatch(rule)
    attr, wanted = match["attr"], match["value"]
    if attr == "node.role":
        have = "manager" if host.name in swarm.managers else "worker"
    elif attr.startswith("node.labels."):
        have = node_labels(host).get(attr.removeprefix("node.labels."))
    else:
        return True
    return (have == wanted) == (match["op"] == "==")


# --- what runs on the swarm -----------------------------------------------------------

def check_swarm_broker(doc: Doc, node, fields: dict, swarm, hosts: dict):
    """The broker's fields checked for swarm; a BrokerSpec when it runs there (else None).

    The broker's port is published on the node that runs its task, so the control
    side tries broker.host (default: the first manager's address), then the other
    nodes it may run on (``alternates``).
    """
    if fields.get("runtime") != SWARM:
        _placement_needs_swarm(doc, node, "placement" in fields, "placement", "broker.placement")
        return None
    if swarm is None:
        _needs_section(doc, node, "runtime", "broker.runtime")
        return BrokerSpec(**fields)
    if fields.get("on_host") or fields.get("docker_host"):
        key = "on_host" if fields.get("on_host") else "docker_host"
        doc.add(node, key, f"broker.{key}", "Swarm places the broker: it cannot be pinned to one engine",
                PIN_FIX.format(key=f"broker.{key}", host=_host_named(fields[key], hosts)))
    if not fields.get("tls") and not fields.get("allow_plain"):
        doc.add(node, "runtime", "broker.runtime",
                "on swarm the broker's port is published on every interface of its node: plain MQTT "
                "would cross the network unencrypted",
                "set broker.tls: true, or say broker.allow_plain: true if the network is trusted")
    _unplaceable(doc, node, "placement", "broker.placement", fields.get("placement"), swarm, hosts)
    eligible = [h.address for h in eligible_hosts(hosts, swarm, fields.get("placement"))]
    first = hosts.get(swarm.managers[0]) if swarm.managers else None
    host = fields.get("host") or (first.address if first else "127.0.0.1")
    return BrokerSpec(**{"host": host, **fields, "alternates": tuple(a for a in eligible if a != host)})


def check_swarm_agent(doc: Doc, agents_node, agent: AgentSpec, swarm, hosts: dict) -> None:
    """A swarm agent has a swarm to run on and is not pinned; placement is for swarm only."""
    where = f"agents.{agent.name}"
    if agent.runtime != SWARM:
        _placement_needs_swarm(doc, agents_node, agent.placement is not None, agent.name, f"{where}.placement")
        return
    if swarm is None:
        _needs_section(doc, agents_node, agent.name, f"{where}.runtime")
        return
    for key, value in (("host", agent.host), ("docker_host", agent.docker_host)):
        if value:
            doc.add(agents_node, agent.name, f"{where}.{key}",
                    "Swarm places the agent: it cannot be pinned to one engine",
                    PIN_FIX.format(key=key, host=_host_named(value, hosts)))
    _unplaceable(doc, agents_node, agent.name, f"{where}.placement", agent.placement, swarm, hosts)


def _host_named(value: str, hosts: dict) -> str:
    """The hosts: name a host: or docker_host: value stands for (else 'h1', as an example)."""
    if value in hosts:
        return value
    return next((h.name for h in hosts.values() if h.docker_host == value), "h1")


def _placement_needs_swarm(doc: Doc, node, given: bool, key, where: str) -> None:
    if given:
        doc.add(node, key, where, "placement is read by runtime: swarm only",
                "remove placement, or set runtime: swarm")


def _needs_section(doc: Doc, node, key, where: str) -> None:
    doc.add(node, key, where, "runtime swarm needs a swarm: section naming its managers",
            "add e.g. swarm: {managers: [h1]} (hosts: entries), and the hosts under hosts:")


def _unplaceable(doc: Doc, node, key, where: str, placement: Placement, swarm: SwarmSpec,
                 hosts: dict) -> None:
    if hosts and placement and not eligible_hosts(hosts, swarm, placement):
        doc.add(node, key, where,
                f"no host satisfies {' and '.join(placement.constraints)}: Swarm could never place it",
                f"add the labels to a host under hosts: ({_label_example(placement)}), "
                "or correct the constraints")


def _label_example(placement: Placement) -> str:
    for rule in placement.constraints:
        match = CONSTRAINT_RE.fullmatch(rule)
        if match["attr"].startswith("node.labels.") and match["op"] == "==":
            return f"labels: {{{match['attr'].removeprefix('node.labels.')}: {match['value']}}}"
    return "labels: {zone: a}"
