"""The swarm runtime's pure parts: an agent's state from a service and its tasks, the
handler's config as its task reads it, and the wanted service specs (no engine)."""

from __future__ import annotations

import json

import pytest

from hatchery.provision.operations import agent_conf
from hatchery.runtime import for_runtime
from hatchery.runtime.swarm import agent_service_spec, state_of
from tests.hosts.fleettext import load_text

INVENTORY = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2", labels: {zone: a}}
  h2: {docker_host: "ssh://root@10.250.1.3", labels: {zone: b}}
  h3: {docker_host: "ssh://root@10.250.1.4", labels: {zone: b}}
swarm: {managers: [h1, h2, h3]}
broker: {runtime: swarm, tls: true, container_prefix: "t-"}
agents:
  a1: {runtime: swarm, placement: {constraints: ["node.labels.zone==b"], preferences: ["spread=node.labels.zone"]}}
"""
NODES = {"n1": {"host": "h1", "state": "ready"}, "n2": {"host": "h2", "state": "ready"},
         "n3": {"host": "h3", "state": "down"}}


@pytest.fixture
def inv(tmp_path):
    return load_text(tmp_path, INVENTORY)


def service(replicas=1) -> dict:
    return {"Spec": {"Name": "t-agent-a1", "Mode": {"Replicated": {"Replicas": replicas}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "hatchery/agent-a1:abc"}}}}


def task(tid, node, state, desired="running", at="2026-12-03T10:00:00.123456789Z", err="") -> dict:
    return {"ID": tid, "NodeID": node, "DesiredState": desired, "UpdatedAt": at,
            "Status": {"State": state, "Timestamp": at, "Err": err}}


def test_the_running_task_is_the_instance_and_its_node_the_host():
    tasks = [task("old1", "n1", "failed", desired="shutdown", at="2026-12-03T09:00:00Z"),
             task("new1", "n2", "running")]
    state = state_of("a1", service(), tasks, NODES)
    assert (state.running, state.instance, state.host, state.node, state.health) == (True, "new1", "h2", "h2",
                                                                                      "healthy")
    assert state.restarts == 1 and state.started_at and not state.problem and state.status == "running"


def test_a_task_left_on_a_lost_node_is_a_problem_while_its_replacement_runs():
    tasks = [task("gone", "n3", "running", desired="shutdown"), task("new1", "n2", "running")]
    state = state_of("a1", service(), tasks, NODES)
    assert state.instance == "new1" and "task gone on h3 (down) still runs though Swarm replaced it" in state.problem


def test_stopped_pending_and_restarting():
    assert state_of("a1", service(replicas=0), [], NODES).status == "stopped"
    pending = state_of("a1", service(), [task("p1", "", "pending", err="no suitable node")], NODES)
    assert (pending.running, pending.status, pending.detail["error"]) == (False, "pending", "no suitable node")
    crashing = state_of("a1", service(), [task("f1", "n1", "failed", desired="shutdown"),
                                          task("s1", "n1", "starting")], NODES)
    assert crashing.running and crashing.restarting and crashing.health == "starting" and crashing.instance == "s1"


def test_an_orphan_service_says_so():
    state = state_of("zz", service(), [task("t", "n1", "running")], NODES, in_inventory=False)
    assert state.problem.startswith("orphan") and not state.in_inventory


def test_the_handler_reads_the_broker_by_name_over_tls_and_mounted_secrets(inv):
    layout = for_runtime("swarm").agent_layout(inv, inv.agents["a1"])
    assert (layout.broker_host, layout.broker_port, layout.ca_file) == ("mqtt-broker", 8883, "/etc/hatchery/ca.crt")
    assert layout.credential_files["password"] == "/run/secrets/hatchery/password"
    assert layout.extra_hosts == {}
    config = agent_conf(inv, inv.agents["a1"], auth=_Auth())
    assert config["broker"] == {"host": "mqtt-broker", "port": 8883, "ca_file": "/etc/hatchery/ca.crt"}
    assert config["broadcast_key_file"] == "/run/secrets/hatchery/broadcast.key"
    assert config["keepalive"] == 5 and config["reconnect_max"] == 2      # a lost node sends no RST


class _Auth:
    def fingerprint(self, name: str) -> str:
        return "f00"


def test_the_agent_service_spec(inv, monkeypatch):
    agent = inv.agents["a1"]
    text = json.dumps({"broker": {"host": "mqtt-broker", "port": 8883}})
    spec = agent_service_spec(inv, agent, "hatchery/agent-a1:abc", text, {"password": "s3cret"})
    summary = spec.summary()
    assert spec.name == "t-agent-a1" and spec.hostname == "a1" and spec.replicas == 1
    assert spec.templated_env == {"HATCHERY_AGENT_INSTANCE": "{{.Task.ID}}"}
    assert spec.constraints == ("node.labels.zone==b",) and spec.preferences == ("spread=node.labels.zone",)
    assert spec.order == "stop-first"          # one client id: never two handlers at once
    files = summary["files"]
    assert any(f.startswith("secret t-agent-a1-password-") and "-> /run/secrets/hatchery/password (0:0 400)"
               in f for f in files)
    assert any(f.startswith("config t-agent-a1-agent.json-") for f in files)
    assert "s3cret" not in json.dumps(summary)                  # --diff never shows a secret
    changed = agent_service_spec(inv, agent, "hatchery/agent-a1:abc", text, {"password": "other"})
    assert changed.summary()["files"] != files and changed.digest() != spec.digest()


def test_the_broker_s_conf_has_no_control_socket(inv):
    """The Docker runtime's layout has a unix listener in a directory it mounts from this
    machine; a Swarm task runs on any node, without it, and mosquitto ended at start on
    "Error binding unix socket" (seen on a real swarm)."""
    from hatchery.configs.broker import render_conf
    assert for_runtime("docker").broker_layout(inv).control_socket     # what the swarm layout must drop
    layout = for_runtime("swarm").broker_layout(inv)
    assert layout.control_socket == ""
    conf = render_conf(inv, layout)
    assert "unix" not in conf and "/mosquitto/control" not in conf
    assert "listener 8883" in conf
