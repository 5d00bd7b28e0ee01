"""A runtime's inventory keys are its own: declared once (inventory/runtimes/<name>.py),
validated by the loader for the agents of that runtime only.

A third runtime is added here the way a new one would be: one declaration and
one registration, nothing else (its key ``spread`` is one no registered runtime
takes). Its keys load, its traits hold (it refuses
``host:``), and a key of it on another runtime's agent is refused with
file:line and the fix.
"""

from __future__ import annotations

import textwrap

import pytest

from hatchery.errors import InventoryError
from hatchery.inventory import runtimes
from hatchery.inventory.fields import Bad, kind
from hatchery.inventory.load import load_inventory
from hatchery.inventory.placement import host_of
from hatchery.inventory.runtimes import RuntimeKeys, declared


def _spread(value) -> dict:
    if not isinstance(value, dict) or set(value) - {"constraints"}:
        raise Bad(f"expected {{constraints: [...]}}, got {kind(value)}", "write spread: {constraints: [...]}")
    return dict(value)


def _needs_constraints(doc, node, key, agent, placing) -> None:
    if not agent.options.get("spread"):
        doc.add(node, key, f"agents.{agent.name}", "a cluster agent needs a spread",
                "write spread: {constraints: [node.role==worker]}")


CLUSTER = RuntimeKeys(
    name="cluster", implementation="tests.nowhere:Cluster",
    agent_keys={"spread": _spread, "image": lambda v: str(v)},
    engine_key="docker_host", on_hosts=False,
    pin_fix="remove host:; the cluster places it (write spread: {constraints: [...]})",
    check_agent=_needs_constraints)


@pytest.fixture
def cluster(monkeypatch):
    """The one registration line of a new runtime."""
    monkeypatch.setitem(runtimes.DECLARED, "cluster", CLUSTER)
    return CLUSTER


def _load(tmp_path, text: str):
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text(textwrap.dedent(text))
    return load_inventory(path, env={})


def _problems(tmp_path, text: str) -> list:
    with pytest.raises(InventoryError) as caught:
        _load(tmp_path, text)
    return [(p.line, p.keypath, p.message, p.fix) for p in caught.value.problems]


def test_a_new_runtimes_keys_load_into_options_and_its_engine_names_the_host(tmp_path, cluster):
    inv = _load(tmp_path, """\
        hosts:
          h1: {docker_host: "ssh://root@10.0.0.2"}
        broker: {runtime: docker, docker_host: "ssh://root@10.0.0.2", bind: 0.0.0.0, tls: true}
        agents:
          a:
            runtime: cluster
            spread: {constraints: [node.role==worker]}
            image: x/y:1
    """)
    agent = inv.agents["a"]
    assert agent.options == {"spread": {"constraints": ["node.role==worker"]}} and agent.image == "x/y:1"
    assert host_of(inv, agent) == "h1"          # its engine_key, defaulting to the broker's engine


def test_a_new_runtime_refuses_host_and_other_runtimes_refuse_its_keys(tmp_path, cluster):
    found = _problems(tmp_path, """\
        hosts:
          h1: {docker_host: "ssh://root@10.0.0.2"}
        agents:
          pinned:
            runtime: cluster
            host: h1
            spread: {constraints: [node.role==worker]}
          unplaced:
            runtime: cluster
          elsewhere:
            runtime: docker
            host: h1
            spread: {constraints: [node.role==worker]}
        broker: {bind: 0.0.0.0, tls: true}
    """)
    assert found == [
        (6, "agents.pinned.host", "runtime cluster does not run on a hosts: entry", CLUSTER.pin_fix),
        (8, "agents.unplaced", "a cluster agent needs a spread",
         "write spread: {constraints: [node.role==worker]}"),
        (13, "agents.elsewhere.spread", "spread is read by runtime cluster only; this agent runs docker",
         "remove spread, or set runtime: cluster")]


def test_without_the_registration_the_key_is_unknown(tmp_path):
    with pytest.raises(KeyError):
        declared("cluster")
    found = _problems(tmp_path, "agents:\n  a: {spread: {constraints: []}}\n")
    assert found[0][1] == "agents.a.spread" and found[0][2].startswith("unknown key")
