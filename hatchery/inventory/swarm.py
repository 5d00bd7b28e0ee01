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
pins to one engine and is refused on swarm. The runtime's declaration
(``inventory/runtimes/swarm.py``) hands these checks to the loader; everything
here is pure: the inventory's objects in, problems, specs or eligible hosts out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

from agent_kit.contract import name_problem
from hatchery.inventory import parse
from hatchery.inventory.document import Doc, checked_fields
from hatchery.inventory.fields import Bad, kind, suggest
from hatchery.inventory.runtimes.declaration import Placing

SECTION = "swarm"
HOST_LABEL = "hatchery.host"        # the node label naming its hosts: entry
PIN_FIX = "remove host:; to choose nodes, use placement: {constraints: ['node.labels.hatchery.host==<host>']}"


@dataclass(frozen=True)
class SwarmSpec:
    """The ``swarm:`` section: every host of ``hosts:`` is a node; ``managers`` (an odd
    number) run the cluster's Raft store, the others join as workers."""

    managers: tuple                     # hosts: names, in order: the first one forms the swarm
    heartbeat: float = 2.0              # seconds between a node's heartbeats
    source: Optional[int] = None        # line in the inventory, for messages


@dataclass(frozen=True)
class Placement:
    """Where Swarm may run a service, in Docker's own syntax."""

    constraints: tuple = ()
    preferences: tuple = ()


def swarm_of(inv) -> Optional[SwarmSpec]:
    """The inventory's swarm: section (None without one)."""
    return inv.sections.get(SECTION)


def placement_of(spec) -> Optional[Placement]:
    """An agent's or the broker's placement (None: anywhere)."""
    return spec.options.get("placement")


# --- values ------------------------------------------------------------------------------

# Each expression becomes part of a service spec: a whole-expression match, bounded lengths.
LABEL_KEY = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?"
CONSTRAINT_RE = re.compile(
    r"(?P<attr>node\.(?:id|hostname|role|platform\.os|platform\.arch)|(?:node|engine)\.labels\."
    + LABEL_KEY + r")\s*(?P<op>==|!=)\s*(?P<value>[A-Za-z0-9](?:[A-Za-z0-9._:/-]{0,126}[A-Za-z0-9])?)")
PREFERENCE_RE = re.compile(r"spread=(?P<attr>(?:node|engine)\.labels\." + LABEL_KEY + ")")
MAX_PLACEMENT_RULES = 16
_PLACEMENT_KEYS = ("constraints", "preferences")


def placement(value) -> Placement:
    """The check of ``placement:`` (an agent's, a group's, a role's or the broker's)."""
    if not isinstance(value, dict):
        raise Bad(f"expected a mapping, got {kind(value)}",
                  "write e.g. placement: {constraints: ['node.labels.zone==a'], "
                  "preferences: ['spread=node.labels.zone']}")
    for key in value:
        if key not in _PLACEMENT_KEYS:
            raise Bad(f"unknown key {key!r}; {suggest(key, _PLACEMENT_KEYS)}".rstrip("; "),
                      "use constraints and preferences", subkey=key)
    return Placement(
        constraints=_rules(value, "constraints", CONSTRAINT_RE, "'node.labels.zone==a', 'node.role!=manager'"),
        preferences=_rules(value, "preferences", PREFERENCE_RE, "'spread=node.labels.zone'"))


def _rules(value: dict, key: str, pattern: re.Pattern, example: str) -> tuple:
    listed = value.get(key) or []
    if not isinstance(listed, list) or len(listed) > MAX_PLACEMENT_RULES:
        raise Bad(f"expected a list of at most {MAX_PLACEMENT_RULES} expressions, got {kind(listed)}",
                  f"write e.g. {key}: [{example}]", subkey=key)
    for item in listed:
        match = pattern.fullmatch(item) if isinstance(item, str) else None
        if match is None:
            raise Bad(f"{item!r} is not a Swarm placement {key[:-1]}", f"write e.g. {example}", subkey=key)
        if match.groupdict().get("attr") == "node.role" and match["value"] not in ("manager", "worker"):
            raise Bad(f"{item!r}: a node's role is manager or worker", "write e.g. 'node.role==worker'",
                      subkey=key)
    return tuple(str(item) for item in listed)


def _managers(value) -> tuple:
    if not isinstance(value, list) or not value:
        raise Bad(f"expected a list of host names, got {kind(value)}", "write e.g. managers: [h1, h2, h3]")
    for item in value:
        problem = name_problem(item)
        if problem:
            raise Bad(problem, "list the names of hosts: entries")
    if len(set(value)) != len(value):
        raise Bad("a host is listed twice", "list each manager once")
    return tuple(str(v) for v in value)


def _heartbeat(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bad(f"expected a number of seconds, got {kind(value)}", "write e.g. 2")
    if not 1 <= value <= 60:
        raise Bad(f"{value} is out of range", "use 1 to 60 seconds (2 notices a lost node in ~10 s)")
    return float(value)


SWARM_FIELDS = {"managers": _managers, "heartbeat": _heartbeat}


# --- the section ---------------------------------------------------------------------------

def read_swarm(doc: Doc, data: dict, hosts: dict) -> SwarmSpec:
    """The ``swarm:`` section (no managers when it is wrong, so what runs on it is not told
    a second time that it has no swarm)."""
    node, broken = data.get(SECTION), SwarmSpec(managers=())
    if not isinstance(node, dict):
        doc.add(data, SECTION, SECTION, f"expected a mapping, got {kind(node)}",
                "write e.g. swarm: {managers: [h1, h2, h3]}")
        return broken
    fields = checked_fields(doc, node, SWARM_FIELDS, SECTION)
    if "managers" not in node:
        doc.add(data, SECTION, "swarm.managers", "a swarm needs its managers",
                "write e.g. managers: [h1, h2, h3] (hosts: entries; the others join as workers)")
        return broken
    managers = fields.get("managers")
    if managers is None:
        return broken
    for index, name in enumerate(managers):
        if name not in hosts:
            doc.add(node["managers"], index, f"swarm.managers[{index}]",
                    f"{name!r} is not in hosts:; {suggest(name, hosts)}".rstrip("; "),
                    f"add it under 'hosts:' or use one of: {', '.join(hosts) or 'none'}")
    if len(managers) % 2 == 0:
        doc.add(node, "managers", "swarm.managers", quorum_problem(len(managers)),
                "list an odd number of managers (1, 3 or 5); the other hosts join as workers")
    return SwarmSpec(managers=managers, heartbeat=fields.get("heartbeat", 2.0), source=parse.line(data, SECTION))


def quorum_problem(count: int) -> str:
    """Why an even number of managers is refused: the Raft quorum rule."""
    majority = count // 2 + 1
    return (f"{count} managers: Swarm acts only while a majority ({majority} of {count}) is reachable, "
            f"so {count} managers tolerate losing {(count - 1) // 2}, as {count - 1} would, "
            f"and a network split {count // 2}-{count // 2} stops the whole swarm")


def node_labels(host) -> dict:
    """The labels ``host``'s node carries: its own, and its name."""
    return {**host.labels, HOST_LABEL: host.name}


def eligible_hosts(hosts: dict, swarm: SwarmSpec, where: Optional[Placement]) -> list:
    """The hosts whose node may run a service placed ``where``, by what the inventory knows
    (labels, role); constraints on ids, hostnames and platforms are left to Swarm."""
    rules = where.constraints if where else ()
    return [h for h in hosts.values() if all(_holds(rule, h, swarm) for rule in rules)]


def _holds(rule: str, host, swarm: SwarmSpec) -> bool:
    match = CONSTRAINT_RE.fullmatch(rule)
    attr, wanted = match["attr"], match["value"]
    if attr == "node.role":
        have = "manager" if host.name in swarm.managers else "worker"
    elif attr.startswith("node.labels."):
        have = node_labels(host).get(attr.removeprefix("node.labels."))
    else:
        return True
    return (have == wanted) == (match["op"] == "==")


# --- what runs on it (the declaration's check_agent and check_broker) ------------------------

def check_agent(doc: Doc, agents_node, key, agent, placing: Placing) -> None:
    """A swarm agent needs a swarm, and a placement some host can satisfy."""
    swarm = placing.sections.get(SECTION)
    if swarm is None:
        _needs_section(doc, agents_node, key, f"agents.{agent.name}.runtime")
        return
    _unplaceable(doc, agents_node, key, f"agents.{agent.name}.placement", placement_of(agent), swarm,
                 placing.hosts)


def check_broker(doc: Doc, node, spec, placing: Placing):
    """The broker on swarm: a swarm, TLS (its port is published on every interface of its
    node), a placement some host can satisfy. The control side connects to broker.host
    (default: the first manager's address), then to the other nodes it may run on."""
    swarm = placing.sections.get(SECTION)
    if swarm is None:
        _needs_section(doc, node, "runtime", "broker.runtime")
        return spec
    if not spec.tls and not spec.allow_plain:
        doc.add(node, "runtime", "broker.runtime",
                "on swarm the broker's port is published on every interface of its node: plain MQTT "
                "would cross the network unencrypted",
                "set broker.tls: true, or say broker.allow_plain: true if the network is trusted")
    where = placement_of(spec)
    _unplaceable(doc, node, "placement", "broker.placement", where, swarm, placing.hosts)
    first = placing.hosts.get(swarm.managers[0]) if swarm.managers else None
    given = isinstance(node, dict) and "host" in node
    host = spec.host if given or first is None else first.address
    eligible = [h.address for h in eligible_hosts(placing.hosts, swarm, where)]
    return replace(spec, host=host, alternates=tuple(a for a in eligible if a != host))


def _needs_section(doc: Doc, node, key, where: str) -> None:
    doc.add(node, key, where, "runtime swarm needs a swarm: section naming its managers",
            "add e.g. swarm: {managers: [h1]} (hosts: entries), and the hosts under hosts:")


def _unplaceable(doc: Doc, node, key, where: str, rules: Optional[Placement], swarm: SwarmSpec,
                 hosts: dict) -> None:
    if hosts and rules and not eligible_hosts(hosts, swarm, rules):
        doc.add(node, key, where,
                f"no host satisfies {' and '.join(rules.constraints)}: Swarm could never place it",
                f"add the labels to a host under hosts: ({_label_example(rules)}), or correct the constraints")


def _label_example(rules: Placement) -> str:
    for rule in rules.constraints:
        match = CONSTRAINT_RE.fullmatch(rule)
        if match["attr"].startswith("node.labels.") and match["op"] == "==":
            return f"labels: {{{match['attr'].removeprefix('node.labels.')}: {match['value']}}}"
    return "labels: {zone: a}"
