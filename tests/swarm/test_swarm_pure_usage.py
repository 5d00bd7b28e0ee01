"""Swarm's pure parts for fleet.capacity and the last-known-good spec (no engine): a node's
size and name from `docker node inspect`, and whether a task runs a given spec."""

from __future__ import annotations

import pytest

from hatchery.runtime.swarm import names_in, node_name, node_resources, node_size, runs_spec
from tests.hosts.fleettext import load_text

INVENTORY = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2"}
  h2: {docker_host: "ssh://root@10.250.1.3"}
swarm: {managers: [h1]}
broker: {runtime: swarm, tls: true, container_prefix: "t-"}
agents:
  a1: {runtime: swarm}
"""


@pytest.fixture
def inv(tmp_path):
    return load_text(tmp_path, INVENTORY)


def node(state="ready", label="h2", addr="10.250.1.3", memory=8_342_429_696, nanos=2_000_000_000) -> dict:
    """A node as `docker node inspect` gives it (the fields read)."""
    return {"ID": "x5kq2c0tq8l1v1xk0y4rj7m0n", "Spec": {"Role": "manager", "Labels": {"hatchery.host": label},
                                                    "Availability": "active"},
            "Status": {"State": state, "Addr": addr},
            "Description": {"Hostname": "engine-2", "Resources": {"MemoryBytes": memory, "NanoCPUs": nanos}}}


def test_a_node_s_size_comes_from_its_description():
    assert node_size(node()) == (8_342_429_696 // 1024, 2.0)
    assert node_size(node(memory=0, nanos=None)) == (None, None)
    assert node_size({"ID": "n"}) == (None, None)


def test_a_node_is_named_by_its_hosts_entry_then_its_address_then_its_hostname(inv):
    assert node_name(inv, node()) == "h2"
    assert node_name(inv, node(label="")) == "h2"                       # by address
    assert node_name(inv, node(label="", addr="10.9.9.9")) == "engine-2"


def test_a_node_that_is_down_keeps_its_size_and_says_why_nothing_is_free(inv):
    down = node_resources(inv, node(state="down"))
    assert (down.host, down.kind, down.mem_total_kb, down.cpus, down.mem_available_kb) == (
        "h2", "node", 8_342_429_696 // 1024, 2.0, None)
    assert down.problem.startswith("node down")


def spec(image="hatchery/agent-a1:abc", config="t-agent-a1-agent.json-0123456789ab") -> dict:
    return {"TaskTemplate": {"ContainerSpec": {
        "Image": image, "Configs": [{"ConfigName": config}],
        "Secrets": [{"SecretName": "t-agent-a1-password-ba9876543210"}]}}}


def test_a_task_runs_a_spec_when_its_image_secrets_and_configs_match():
    task = {"Spec": spec()["TaskTemplate"]}
    assert runs_spec(task, spec())
    assert not runs_spec(task, spec(image="hatchery/agent-a1:def"))
    assert not runs_spec(task, spec(config="t-agent-a1-agent.json-ffffffffffff"))
    assert names_in(spec()) == {"t-agent-a1-agent.json-0123456789ab", "t-agent-a1-password-ba9876543210"}
    assert names_in(None) == frozenset()
