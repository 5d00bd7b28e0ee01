"""The ``hosts:`` section and placement: which engine runs the broker and each agent.

Ansible style: a host is a name with an engine address (``docker_host``), the
address agents on other hosts use, and labels. ``broker.on_host`` and an
agent's (or its group's) ``host:`` place them there, in a runtime that runs on
hosts (its declaration's ``on_hosts``; the one with ``host_default`` when they
name none) and on that host's engine (the runtime's ``engine_key``).
"""

from __future__ import annotations

from dataclasses import replace

from hatchery.inventory import parse
from hatchery.inventory.document import Doc, checked_fields, section
from hatchery.inventory.fields import HOST_FIELDS, suggest
from hatchery.inventory.keys import broker_check, broker_spec
from hatchery.inventory.model import AgentSpec, BrokerSpec, HostSpec
from hatchery.inventory.placement import agent_engine, broker_engine, setting
from hatchery.inventory.runtimes import DEFAULT_RUNTIME, Placing, declared, host_default

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


def place_broker(doc: Doc, node, fields: dict, placing: Placing) -> BrokerSpec:
    """``broker.on_host: h1``: the broker runs on h1's engine; the manager connects to its address.

    Then the broker's runtime applies its own further rules (its declaration's check_broker)."""
    spec = _placed_broker(doc, node, fields, placing.hosts)
    return broker_check(spec.runtime)(doc, node, spec, placing)


def _placed_broker(doc: Doc, node, fields: dict, hosts: dict) -> BrokerSpec:
    name = fields.get("on_host")
    if name is None:
        return broker_spec(fields)
    if name not in hosts:
        unknown_host(doc, node, "on_host", "broker.on_host", name, hosts)
        return broker_spec(fields)
    runtime = declared(fields.get("runtime", DEFAULT_RUNTIME))
    if not runtime.on_hosts:
        if "runtime" in fields or host_default() is None:
            doc.add(node, "runtime", "broker.runtime", f"runtime {runtime.name} does not run on a hosts: entry",
                    "remove broker.runtime, or remove broker.on_host to run it here")
            return broker_spec(fields)
        runtime = host_default()
    host, key = hosts[name], runtime.engine_key
    if fields.get(key) not in (None, host.docker_host):
        doc.add(node, key, f"broker.{key}", f"contradicts broker.on_host: {name}",
                f"remove broker.{key}: the host's docker_host is used")
    return broker_spec({"host": host.address, **fields, "runtime": runtime.name, key: host.docker_host})


def place_agent(doc: Doc, agents_node, agent: AgentSpec, hosts: dict) -> AgentSpec:
    """``host: h2`` (the agent's own, or its group's): the agent runs on h2's engine.

    The loader has already chosen a runtime that runs on hosts (or said why not)."""
    runtime = declared(agent.runtime)
    if agent.host is None or not runtime.on_hosts:
        return agent
    if agent.host not in hosts:
        unknown_host(doc, agents_node, agent.name, f"agents.{agent.name}.host", agent.host, hosts)
        return agent
    engine, key = hosts[agent.host].docker_host, runtime.engine_key
    if setting(agent, key) not in (None, engine):
        doc.add(agents_node, agent.name, f"agents.{agent.name}.{key}",
                f"contradicts host: {agent.host}", f"remove {key}: the host's docker_host is used")
    if hasattr(agent, key):
        return replace(agent, **{key: engine})
    return replace(agent, options={**agent.options, key: engine})


def check_exposure(doc: Doc, node, broker: BrokerSpec, agents: dict) -> None:
    """Plain MQTT crosses a network only when the inventory says so; remote agents need a reachable bind."""
    here = broker_engine(broker) or None
    remote = sorted(a.name for a in agents.values()
                    if declared(a.runtime).engine_key and (agent_engine(broker, a) or None) != here)
    if remote and broker.bind in LOOPBACK:
        doc.add(node, "bind", "broker.bind",
                f"agents on other hosts ({', '.join(remote[:3])}) cannot reach a broker bound to {broker.bind}",
                "set broker.bind: 0.0.0.0 (or the host's address) and broker.tls: true")
    if broker.bind not in LOOPBACK and not broker.tls and not broker.allow_plain:
        doc.add(node, "bind", "broker.bind",
                f"plain MQTT on {broker.bind} would cross the network unencrypted",
                "set broker.tls: true (agents and the manager then use TLS), or say "
                "broker.allow_plain: true if the network is trusted")

