"""The Docker runtime against the REAL engine: broker and agents as containers.

Hermetic: one random prefix per run names every container, network and volume
(and labels them with the run's fleet); the module finalizer removes them all,
plus the agent images, even when a test fails. The offline base images are
built once (mmdebstrap + docker import) and kept: a second run skips them.
The tests run in file order and share one fleet, like an operator would.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port
from dockerhelpers import (
    TIMINGS,
    client,  # noqa: F401 (fixture)
    docker_inventory,
    hatch_changes,
    publish,
    remove_fleet,
    sub_one,
    try_publish,
    wait_mqtt,
)

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.core.plan import apply_plan
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory
from hatchery.provision.credentials import plan_auth
from hatchery.provision.operations import auth_files, broker_conf
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import (
    BuildContext,
    agent_container,
    agent_context,
    base_image,
)

pytestmark = pytest.mark.docker
rt = for_runtime(DOCKER)
MEASURED: dict = {}     # figures printed at the end (pytest -s) for the report


@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):
    prefix = f"hty-{secrets.token_hex(3)}-"
    root = tmp_path_factory.mktemp("fleet")
    inv = docker_inventory(root, prefix)
    inv = replace(inv, agents={a.name: a for a in _agents(inv) + [_third(inv)]})
    assert apply_plan("credentials", [plan_auth(inv).change()]).ok   # what broker.deploy does first
    yield inv
    remove_fleet(inv)
    for line in (f"{k}: {v}" for k, v in {**TIMINGS, **MEASURED}.items()):
        print(line)


def _agents(inv: Inventory) -> list:
    prefix = inv.broker.container_prefix
    return [AgentSpec(f"{prefix}a", runtime=DOCKER, version_command="echo 1.0.0"),
            AgentSpec(f"{prefix}b", runtime=DOCKER, version_command="echo 2.0.0",
                      main_command="sleep infinity", env={"AGENT_ROLE": "client"})]


def _third(inv: Inventory) -> AgentSpec:
    return AgentSpec(f"{inv.broker.container_prefix}c", runtime=DOCKER, main_command="sleep 1; exit 3")


def _broker_plan(inv: Inventory, conf_text: str = "") -> list:
    auth = plan_auth(inv)
    return rt.broker_plan(inv, conf_text=conf_text or _conf(inv), auth_files=auth_files(auth))


def _conf(inv: Inventory) -> str:
    # Mosquitto 2.0.11 block-buffers log_dest stdout into a pipe (docker logs stays empty);
    # stderr is unbuffered. Reported to the template's owner.
    return broker_conf(inv).replace("log_dest stdout", "log_dest stderr")


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} after {timeout}s")


# --- broker ---------------------------------------------------------------------------------

def test_broker_deploy_creates_the_container_with_its_network_volume_and_alias(client, fleet):
    changes = _broker_plan(fleet)
    assert [c.action for c in changes] == ["create"]
    assert "+image: \"hatchery/mosquitto:2.0.11\"" in changes[0].diff
    report = apply_plan("broker.deploy", changes)
    assert report.ok, report.failed[0].error if report.failed else ""
    wait_mqtt(fleet)
    container = client.containers.get(fleet.broker.container)
    endpoint = container.attrs["NetworkSettings"]["Networks"][fleet.broker.network]
    assert fleet.broker.dns_name in endpoint["Aliases"]
    assert container.labels["io.hatchery.role"] == "broker"
    assert client.volumes.get(f"{fleet.broker.container}-data").name
    conf = fleet.state_dir / "broker" / "config" / "mosquitto.conf"
    assert conf.read_text() == _conf(fleet) and oct(conf.stat().st_mode)[-3:] == "644"


def test_second_deploy_is_unchanged_and_fast(fleet):
    started = time.perf_counter()
    changes = _broker_plan(fleet)
    MEASURED["unchanged broker deploy plan (ms)"] = round((time.perf_counter() - started) * 1000, 1)
    assert [c.action for c in changes] == ["none"], changes[0].reason
    assert MEASURED["unchanged broker deploy plan (ms)"] < 2000


def test_a_reloadable_config_change_sends_sighup_instead_of_recreating(client, fleet):
    before = client.containers.get(fleet.broker.container).attrs
    conf_text = _conf(fleet) + "log_type debug\n"
    changes = _broker_plan(fleet, conf_text)
    assert [c.action for c in changes] == ["reload"] and "+log_type debug" in changes[0].diff
    assert apply_plan("broker.deploy", changes).ok
    after = client.containers.get(fleet.broker.container)
    assert after.id == before["Id"] and after.attrs["State"]["StartedAt"] == before["State"]["StartedAt"]
    # the reloaded config is in force: debug logging shows each PUBLISH
    topic = f"hatchery/verify/{fleet.broker.container_prefix}hup"
    _wait(lambda: try_publish(fleet, topic, "x") and f"'{topic}'" in after.logs().decode(),
          5, "no debug line after SIGHUP")
    assert _broker_plan(fleet, conf_text)[0].action == "none"
    # back to the rendered config for the rest of the module
    assert apply_plan("broker.deploy", _broker_plan(fleet)).ok
    wait_mqtt(fleet)


def test_a_port_change_recreates_the_container(client, fleet):
    moved = replace(fleet, broker=replace(fleet.broker, port=free_port()))
    changes = _broker_plan(moved)
    assert [c.action for c in changes] == ["recreate"] and "ports" in changes[0].reason
    assert f"-ports: [\"127.0.0.1:{fleet.broker.port}->1883/tcp\"]" in changes[0].diff
    assert _broker_plan(fleet)[0].action == "none"


# --- agents ---------------------------------------------------------------------------------

def test_hatch_two_agents_cold(client, fleet):
    for agent in _agents(fleet):
        changes = hatch_changes(fleet, agent)
        assert [c.action for c in changes] == ["create"], changes[0].reason
        started = time.perf_counter()
        report = apply_plan("agent.hatch", changes)
        assert report.ok, report.failed[0].error if report.failed else ""
        MEASURED[f"hatch {agent.name[-1]} cold (s)"] = round(time.perf_counter() - started, 2)
        # the command handler in the container connected: its retained birth/heartbeat is there
        assert sub_one(fleet, f"fleet/{agent.name}/#").startswith(f"fleet/{agent.name}/")


def test_agent_container_runs_handler_and_main_process_with_config_mounted(client, fleet):
    a, b = _agents(fleet)
    container = client.containers.get(agent_container(fleet, b))
    processes = " ".join(" ".join(p) for p in container.top()["Processes"])
    assert "agent_kit.handler" in processes and "sleep infinity" in processes
    code, text = rt.exec_in_agent(fleet, b, ["cat", "/etc/hatchery/agent.json"], timeout=5)
    assert code == 0 and json.loads(text)["broker"] == {"host": "mqtt-broker", "port": 1883}
    assert container.attrs["Config"]["Env"].count("AGENT_ROLE=client") == 1
    code, text = rt.exec_in_agent(fleet, a, ["sh", "-c", "command -v bus-publish mosquitto_pub"], timeout=5)
    assert code == 0 and "/usr/local/bin/bus-publish" in text


def test_agent_image_holds_no_config_or_secret(client, fleet):
    agent = _agents(fleet)[0]
    context: BuildContext = agent_context(fleet, agent, base_image(fleet, client, agent))
    assert not any(path.endswith(".json") for path in context.files)
    assert b"/etc/hatchery" not in context.files["Dockerfile"][0]   # mounted at run time only


def test_exec_verify_inside_each_agent(fleet):
    for agent in _agents(fleet):
        checks = rt.verify_in_agent(fleet, agent, timeout=5)
        assert len(checks) == 2 and all(c.ok for c in checks), [(c.name, c.detail) for c in checks]


# --- security: credentials mounted, ACL enforced inside the fleet network ------------------

# Runs inside agent A's container with A's mounted credentials: subscribes to
# everything, publishes on B's heartbeat and command topics, prints what it saw.
IN_CONTAINER_PROBE = r"""
import json, queue, sys, time
from agent_kit import bus
from agent_kit.config import load_config
cfg = load_config("/etc/hatchery/agent.json")
other, seen = sys.argv[1], queue.SimpleQueue()
with bus.session(cfg.broker_host, cfg.broker_port, 5, username=cfg.username,
                 password=cfg.password()) as c:
    c.on_message = lambda cl, u, m: seen.put(m.topic)
    c.subscribe([("fleet/#", 1), ("#", 1)])
    for kind in ("heartbeat", "command"):
        bus.publish_and_wait(c, f"fleet/{other}/{kind}", b'{"forged":1}', timeout=5)
    time.sleep(1.5)
topics = set()
while not seen.empty():
    topics.add(seen.get())
print(json.dumps(sorted(topics)))
"""


def test_agent_secrets_are_a_read_only_mount_never_env_or_image(client, fleet):
    a = _agents(fleet)[0]
    attrs = client.containers.get(agent_container(fleet, a)).attrs
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/run/secrets/hatchery"]["RW"] is False
    secret = plan_auth(fleet).secrets[a.name]
    assert secret not in json.dumps(attrs)                  # not in docker inspect at all
    context = agent_context(fleet, a, base_image(fleet, client, a))
    assert not any(secret.encode() in data for data, _ in context.files.values())
    code, text = rt.exec_in_agent(fleet, a, ["sh", "-c", "stat -c %a /run/secrets/hatchery/password"], 5)
    assert code == 0 and text.strip() == "600"


def test_in_a_container_an_agent_sees_and_forges_nothing_of_another(fleet):
    a, b = _agents(fleet)
    forged: list = []
    with bus_for(fleet) as manager:
        with manager.listen([f"fleet/{b.name}/#"], lambda m: forged.append(m.payload)
                            if b"forged" in m.payload else None):
            code, text = rt.exec_in_agent(fleet, a, ["python3", "-c", IN_CONTAINER_PROBE, b.name], 15)
            time.sleep(0.3)
    assert code == 0, text
    topics = json.loads(text.strip().splitlines()[-1])
    assert not [t for t in topics if b.name in t], topics   # none of B's telemetry
    assert forged == []                                      # nothing arrived on B's topics


def test_anonymous_is_refused_inside_the_fleet_network(fleet):
    code, text = rt.exec_in_agent(fleet, _agents(fleet)[0], [
        "mosquitto_pub", "-h", fleet.broker.dns_name, "-t", "fleet/x/heartbeat", "-m", "x"], 5)
    assert code != 0 and "not authori" in text.lower()


def test_signed_commands_are_answered_and_unsigned_ones_dropped_and_alerted(fleet):
    a, b = _agents(fleet)
    alerts: list = []
    with bus_for(fleet) as manager:
        replies = manager.request([a.name, b.name], "health-check", timeout=5)
        assert [r.state for r in replies] == ["answered", "answered"]
        with manager.listen([f"fleet/{a.name}/alert"], lambda m: alerts.append(json.loads(m.payload))):
            unsigned = {"v": 1, "id": secrets.token_hex(8), "verb": "health-check",
                        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            manager.publish(f"fleet/{a.name}/command", json.dumps(unsigned).encode())
            _wait(lambda: alerts, 5, "no alert for the unsigned command")
    assert alerts[0]["reason"] == "bad-signature"


def test_rotating_one_agents_credentials_keeps_the_other_answering(fleet):
    a, b = _agents(fleet)
    auth = plan_auth(fleet, rotate=[a.name])
    assert [c.user for c in auth.changes] == [a.name]
    changes = [auth.change(), *rt.auth_sync_plan(fleet, auth_files(auth)), *hatch_changes(fleet, a, auth)]
    assert [c.action for c in changes] == ["update", "reload", "recreate"]
    started = time.perf_counter()
    assert apply_plan("agent.rotate-credentials", changes).ok
    with bus_for(fleet) as manager:
        assert manager.request([b.name], "health-check", timeout=5)[0].state == "answered"
        reply = _wait(lambda: (r := manager.request([a.name], "health-check", timeout=2)[0]).state
                      == "answered" and r, 20, "rotated agent never answered")
    MEASURED["rotate credentials, agent answering again (s)"] = round(time.perf_counter() - started, 2)
    assert reply.ok


def test_a_command_that_outlives_its_timeout_is_stopped(fleet):
    started = time.monotonic()
    code, _ = rt.exec_in_agent(fleet, _agents(fleet)[0], ["sleep", "30"], timeout=1)
    assert code == 124 and time.monotonic() - started < 5


def test_second_hatch_is_unchanged_and_a_cached_image_hatches_warm(client, fleet):
    agent = _agents(fleet)[0]
    started = time.perf_counter()
    assert [c.action for c in hatch_changes(fleet, agent)] == ["none"]
    MEASURED["unchanged hatch plan (ms)"] = round((time.perf_counter() - started) * 1000, 1)
    client.containers.get(agent_container(fleet, agent)).remove(force=True)
    changes = hatch_changes(fleet, agent)
    assert changes[0].action == "create" and "image cached" in changes[0].reason
    started = time.perf_counter()
    assert apply_plan("agent.hatch", changes).ok
    MEASURED["hatch a warm (cached image) (s)"] = round(time.perf_counter() - started, 2)


def test_a_changed_agent_config_recreates_only_that_agent(fleet):
    a, b = _agents(fleet)
    slower = replace(a, heartbeat_interval=1200.0)
    changes = hatch_changes(fleet, slower)
    reason = changes[0].reason       # outdated: config <old hash> → <new hash>
    assert changes[0].action == "recreate" and reason.startswith("outdated: config ") and " → " in reason
    assert hatch_changes(fleet, b)[0].action == "none"


def test_agent_list_shows_both_running(fleet):
    states = {s.agent: s for s in rt.agent_list(replace(fleet, agents={a.name: a for a in _agents(fleet)}))}
    assert all(states[a.name].running and states[a.name].in_inventory for a in _agents(fleet))
    for agent in _agents(fleet):
        state = states[agent.name]
        assert state == rt.agent_state(fleet, agent) and state.host == "local" and state.started_at
        assert contract.INSTANCE_RE.fullmatch(state.instance) and rt.agent_provenance(fleet, agent).instance == state.instance
        assert state.as_row()["container"] == agent_container(fleet, agent)


def test_each_container_has_its_instance_in_env_and_label_never_in_argv_and_birth(client, fleet):
    for agent in _agents(fleet):
        attrs = client.containers.get(agent_container(fleet, agent)).attrs
        instance = attrs["Config"]["Labels"]["io.hatchery.instance"]
        assert f"HATCHERY_AGENT_INSTANCE={instance}" in attrs["Config"]["Env"]
        assert instance not in json.dumps([attrs["Config"].get("Cmd"), attrs["Config"].get("Entrypoint"),
                                           attrs.get("Args"), attrs.get("Path")])
        # the retained state may still be the previous container's Will for a moment
        _wait(lambda: _retained_status(fleet, agent).get("instance") == instance, 20,
              f"no retained birth of instance {instance}")


def _retained_status(inv: Inventory, agent: AgentSpec) -> dict:
    message = sub_one(inv, f"fleet/{agent.name}/status", wait=2)
    return json.loads(message.split(" ", 1)[1]) if message else {}


def test_agent_logs_tail_and_follow_the_containers_output(client, fleet):
    agent = _agents(fleet)[0]
    container = client.containers.get(agent_container(fleet, agent))
    whole = _wait(lambda: container.logs().decode(errors="replace").splitlines(), 20,
                  "the container wrote nothing")
    assert list(rt.agent_logs(fleet, agent, lines=3)) == whole[-3:]
    following = rt.agent_logs(fleet, agent, lines=1, follow=True)
    assert next(following) == whole[-1]          # then it would wait for more: stop it
    following.close()
    other = replace(agent, name="no-such-agent")
    with pytest.raises(RuntimeFailure, match="has no container"):
        list(rt.agent_logs(fleet, other))


# --- persistence and status -------------------------------------------------------------------

def test_retained_messages_survive_broker_removal_and_redeploy(client, fleet):
    topic = f"hatchery/verify/{fleet.broker.container_prefix}retained"
    wait_mqtt(fleet)
    publish(fleet, topic, "kept", retain=True)
    stop = rt.broker_stop_plan(fleet)
    assert [c.action for c in stop] == ["remove"] and apply_plan("broker.stop", stop).ok
    assert rt.broker_status(fleet)["running"] is False
    assert apply_plan("broker.deploy", _broker_plan(fleet)).ok
    # the published port takes TCP before Mosquitto inside listens: wait for a real CONNACK
    MEASURED["broker redeploy to first CONNACK (s)"] = round(wait_mqtt(fleet), 2)
    assert sub_one(fleet, topic, wait=5) == f"{topic} kept"


def test_broker_restart_keeps_retained_and_becomes_healthy(client, fleet):
    client.containers.get(fleet.broker.container).restart(timeout=10)
    wait_mqtt(fleet)
    topic = f"hatchery/verify/{fleet.broker.container_prefix}retained"
    assert sub_one(fleet, topic, wait=5) == f"{topic} kept"
    status = _wait(lambda: (s := rt.broker_status(fleet))["health"] == "healthy" and s, 30, "broker not healthy")
    assert status["running"] and status["container"] == fleet.broker.container
    stats = client.containers.get(fleet.broker.container).stats(stream=False)
    MEASURED["broker container memory (MiB)"] = round(stats["memory_stats"]["usage"] / 2**20, 1)


def test_agents_reconnect_after_the_broker_came_back(fleet):
    for agent in _agents(fleet):
        checks = rt.verify_in_agent(fleet, agent, timeout=5)
        assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks]


# --- stop and retire ------------------------------------------------------------------------

def test_stop_then_hatch_starts_the_same_container(client, fleet):
    agent = _agents(fleet)[1]
    before = rt.agent_state(fleet, agent)
    assert apply_plan("agent.stop", rt.agent_stop_plan(fleet, agent)).ok
    stopped = rt.agent_state(fleet, agent)
    assert (stopped.running, stopped.status, stopped.detail["stopped"]) == (False, "exited", True)
    assert rt.agent_stop_plan(fleet, agent)[0].action == "none"
    changes = hatch_changes(fleet, agent)
    assert changes[0].action == "start" and apply_plan("agent.hatch", changes).ok
    assert client.containers.get(agent_container(fleet, agent)).status == "running"
    # the same container started again keeps its environment, so its instance
    assert rt.agent_state(fleet, agent).instance == before.instance


def test_retire_removes_container_images_and_config(client, fleet):
    agent = _agents(fleet)[1]
    assert apply_plan("agent.retire", rt.agent_stop_plan(fleet, agent, remove=True)).ok
    assert not client.containers.list(all=True, filters={"name": agent_container(fleet, agent)})
    assert not client.images.list(name=f"hatchery/agent-{agent.name}")
    assert not Path(fleet.state_dir / "agents" / agent.name).exists()


def test_when_the_main_process_ends_the_container_exits_and_docker_restarts_it(client, fleet):
    agent = _third(fleet)
    assert apply_plan("agent.hatch", hatch_changes(fleet, agent)).ok
    container = client.containers.get(agent_container(fleet, agent))
    _wait(lambda: container.reload() or container.attrs["RestartCount"] >= 1, 15, "no restart")
    assert "main process exited with 3" in container.logs().decode()
    assert apply_plan("agent.retire", rt.agent_stop_plan(fleet, agent, remove=True)).ok
