"""The ``hosts:`` section and placement: which engine runs the broker and each agent.

Ansible style: a host is a name with an engine address (``docker_host``), the
address agents on other hosts use, and labels. ``broker.on_host`` and an
agent's (or its group's) ``host:`` place them there.
"""

from __future__ import annotations

from hatchery.inventory import parse
from hatchery.inventory.document import Doc, checked_fields, section
from hatchery.inventory.fields import HOST_FIELDS, suggest
from hatchery.inventory.model import AgentSpec, BrokerSpec, HostSpec

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_hosts(doc: Doc, node: dict) -> dict:
    """The ``hosts:`` section, Ansible style: name -> engine address, address for others, labels."""
    hosts = {}
    for name, body in node.items():
        where = f"hosts.{name}"
        if not doc.valid_name(node, name, where):
            continue
        fields = checked_fields(doc, section(doc, node, name, where), HOST_FIELDS, where)
        if "docker_host" not in fields:
            doc.add(node, name, where, "a host needs a docker_host",
                    "write e.g. docker_host: ssh://root@10.0.0.2")
            continue
        address = fields.pop("address", None) or engine_address(fields["docker_host"])
        hosts[str(name)] = HostSpec(name=str(name), address=address, source=parse.line(node, name), **fields)
    return hosts


def engine_address(docker_host: str) -> str:
    from urllib.parse import urlparse
    return urlparse(docker_host).hostname or "127.0.0.1"


def unknown_host(doc: Doc, node, key, where: str, name: str, hosts: dict) -> None:
    doc.add(node, key, where, f"{name!r} is not in hosts:; {suggest(name, hosts)}".rstrip("; "),
            f"add it under 'hosts:' or use one of: {', '.join(hosts) or 'none'}")


def place_broker(doc: Doc, node, fields: dict, hosts: dict) -> BrokerSpec:
    """``broker.on_host: h1``: the broker runs on h1's engine; the manager connects to its address."""
    name = fields.get("on_host")
    if name is None:
        return BrokerSpec(**fields)
    if name not in hosts:
        unknown_host(doc, node, "on_host", "broker.on_host", name, hosts)
        return BrokerSpec(**fields)
    host = hosts[name]
    if fields.get("docker_host") not in (None, host.docker_host):
        doc.add(node, "docker_host", "broker.docker_host", f"contradicts broker.on_host: {name}",
                "remove broker.docker_host: the host's docker_host is used")
    if fields.get("runtime", "docker") != "docker":
        doc.add(node, "runtime", "broker.runtime", "a broker placed on a host runs in its Docker engine",
                "remove broker.runtime, or remove broker.on_host to run it here")
    return BrokerSpec(**{"host": host.address, **fields, "runtime": "docker",
                         "docker_host": host.docker_host})


def place_agent(doc: Doc, agents_node, agent: AgentSpec, hosts: dict) -> AgentSpec:
    """``host: h2`` (the agent's own, or its group's): the agent runs on h2's engine."""
    from dataclasses import replace
    if agent.host is None:
        return agent
    if agent.host not in hosts:
        unknown_host(doc, agents_node, agent.name, f"agents.{agent.name}.host", agent.host, hosts)
        return agent
    engine = hosts[agent.host].docker_host
    if agent.docker_host not in (None, engine):
        doc.add(agents_node, agent.name, f"agents.{agent.name}.docker_host",
                f"contradicts host: {agent.host}", "remove docker_host: the host's docker_host is used")
    return replace(agent, docker_host=engine, runtime="docker")


def check_exposure(doc: Doc, node, broker: BrokerSpec, agents: dict) -> None:
    """Plain MQTT crosses a network only when the inventory says so; remote agents need a reachable bind."""
    remote = sorted(a.name for a in agents.values()
                    if a.runtime == "docker" and (a.docker_host or None) != (broker.docker_host or None))
    if broker.runtime == "docker" and remote and broker.bind in LOOPBACK:
        doc.add(node, "bind", "broker.bind",
                f"agents on other hosts ({', '.join(remote[:3])}) cannot reach a broker bound to {broker.bind}",
                "set broker.bind: 0.0.0.0 (or the host's address) and broker.tls: true")
    if broker.bind not in LOOPBACK and not broker.tls and not broker.allow_plain:
        doc.add(node, "bind", "broker.bind",
                f"plain MQTT on {broker.bind} would cross the network unencrypted",
                "set broker.tls: true (agents and the manager then use TLS), or say "
                "broker.allow_plain: true if the network is trusted")
