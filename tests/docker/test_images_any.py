"""Any agent image, against the REAL engine: a Debian base without Python and a
Node.js image whose own CMD is the agent, both hatched with no main_command.

The bases are made offline (mmdebstrap + docker import, kept across runs by
recipe hash): ``hatchery/base:bookworm`` (minbase, no python3, CMD bash) and
``hatchery/node-demo:bookworm`` (nodejs, CMD ``node /app/agent.js``, USER
nobody). Hermetic: one random prefix per run; the finalizer removes the fleet.
What the tests see on the bus they read with a raw paho subscriber.
"""

from __future__ import annotations

import io
import json
import queue
import secrets
import tarfile
import time
from dataclasses import replace

import pytest
from dockerhelpers import (  # noqa: F401
    TIMINGS,
    client,
    deploy_broker,
    docker_inventory,
    hatch_changes,
    manager_session,
    remove_fleet,
)

from hatchery.bus.connection import bus_for
from hatchery.core.plan import apply_plan
from hatchery.errors import UsageError
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory
from hatchery.runtime.docker import (
    agent_container,
    bootstrap_images,
    forget_base_images,
    inspect_base_image,
)

pytestmark = pytest.mark.docker
MEASURED: dict = {}
NO_PYTHON = "hatchery/base:bookworm"
NODE = "hatchery/node-demo:bookworm"


@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):
    started = time.monotonic()
    assert apply_plan("images", bootstrap_images(client, which=("node-demo",))).ok
    TIMINGS["bootstrap node-demo (s)"] = round(time.monotonic() - started, 1)
    prefix = f"hty-{secrets.token_hex(3)}-"
    root = tmp_path_factory.mktemp("anyimage")
    inv = docker_inventory(root, prefix)
    inv = replace(inv, agents={a.name: a for a in _agents(inv)})
    deploy_broker(inv)
    yield inv
    remove_fleet(inv)
    for line in (f"{k}: {v}" for k, v in {**TIMINGS, **MEASURED}.items()):
        print(line)


def _agents(inv: Inventory) -> list:
    prefix = inv.broker.container_prefix
    return [AgentSpec(f"{prefix}deb", runtime=DOCKER, image=NO_PYTHON,
                      version_command="cat /etc/debian_version"),
            AgentSpec(f"{prefix}node", runtime=DOCKER, image=NODE, version_command="node --version")]


def _hatch_and_time(inv: Inventory, agent: AgentSpec, label: str) -> None:
    changes = hatch_changes(inv, agent)
    assert [c.action for c in changes] == ["create"], changes[0].reason
    started = time.perf_counter()
    report = apply_plan("agent.hatch", changes)
    assert report.ok, report.failed[0].error if report.failed else ""
    MEASURED[f"hatch {label} (s)"] = round(time.perf_counter() - started, 1)


def _answers(inv: Inventory, agent: AgentSpec, verb: str, timeout: float = 20.0):
    """The agent's reply to ``verb``, retried while its handler is still connecting."""
    deadline = time.monotonic() + timeout
    with bus_for(inv) as manager:
        while True:
            reply = manager.request([agent.name], verb, timeout=2)[0]
            if reply.state == "answered" or time.monotonic() > deadline:
                return reply


def _sizes(client, agent_name: str, base: str) -> tuple:
    container = client.containers.get(agent_name)
    return client.images.get(base).attrs["Size"], client.images.get(container.attrs["Image"]).attrs["Size"]


def _node_up(client, name: str, starts: int, timeout: float = 120.0) -> float:
    """Seconds until agent.js has logged its start ``starts`` times (it registers its SIGTERM
    handler right after): under heavy CPU pressure here a fresh container's first processes
    once sat for over a minute, so starting is waited for and reported, not asserted fast."""
    started = time.monotonic()
    container = client.containers.get(name)
    while container.logs().count(b"agent.js: pid") < starts:
        if time.monotonic() - started > timeout:
            top = container.top(ps_args="-o pid,stat,wchan:24,args")["Processes"]
            container.reload()
            raise AssertionError(f"agent.js did not start {starts} time(s) within {timeout:g}s: "
                                 f"restarts {container.attrs['RestartCount']}, processes {top}, "
                                 f"logs {container.logs()[-1500:]!r}")
        time.sleep(0.2)
    return round(time.monotonic() - started, 2)


def _processes(client, name: str) -> list:
    top = client.containers.get(name).top()
    user, cmd = top["Titles"].index("UID"), top["Titles"].index("CMD")
    return [(row[user], row[cmd]) for row in top["Processes"]]


def test_the_probe_reads_a_node_image_and_is_kept_by_image_id(client, fleet, tmp_path):
    forget_base_images()
    base = inspect_base_image(client, NODE, tmp_path)
    assert (base.python, base.package_manager, base.mosquitto_clients, base.setpriv) == \
        (None, "apt-get", False, True)
    assert (base.image_command, base.workdir, base.user) == (("node", "/app/agent.js"), "/app", "nobody")
    assert (tmp_path / f"{base.image_id.split(':')[1]}.json").exists()
    forget_base_images()                  # a new process: read from the cache file, no container
    probes = len(client.containers.list(all=True, filters={"label": "io.hatchery.role=probe"}))
    assert inspect_base_image(client, NODE, tmp_path) == base and probes == 0


def test_a_base_without_python_or_a_package_manager_is_refused_before_any_build(client, fleet):
    tag = f"{fleet.broker.container_prefix}nopm:test"
    client.images.build(fileobj=io.BytesIO(f"FROM {NO_PYTHON}\nRUN rm /usr/bin/apt-get\n".encode()),
                        tag=tag, rm=True)
    try:
        agent = replace(_agents(fleet)[0], image=tag)     # runs before that agent's own hatch
        with pytest.raises(UsageError) as caught:
            hatch_changes(fleet, agent)
        assert tag in caught.value.message and "python3 missing" in caught.value.message
        assert not client.images.list(name=f"hatchery/agent-{agent.name}")
    finally:
        client.images.remove(tag, force=True)


def test_a_base_without_a_shell_is_refused_naming_the_fix(client, fleet, tmp_path):
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        data = b"no shell here\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    repo = f"{fleet.broker.container_prefix}noshell"
    client.api.import_image(src=str(tarball), repository=repo, tag="test",
                            changes=['CMD ["/hello"]'])
    try:
        with pytest.raises(UsageError, match="has no /bin/sh") as caught:
            inspect_base_image(client, f"{repo}:test")
        assert "busybox" in caught.value.fix
    finally:
        client.images.remove(f"{repo}:test", force=True)


def test_a_debian_base_without_python_hatches_and_answers(client, fleet):
    deb = _agents(fleet)[0]
    found = client.containers.run(NO_PYTHON, ["sh", "-c", "command -v python3 || echo none"],
                                  remove=True, network_disabled=True)
    assert found.strip() == b"none"                 # the base really has no python3
    _hatch_and_time(fleet, deb, "debian without python, cold")
    health = _answers(fleet, deb, "health-check")
    assert health.state == "answered" and health.ok
    version = _answers(fleet, deb, "version-report")
    assert version.result["version"].startswith("12.")
    name = agent_container(fleet, deb)
    # bash, the base's CMD, is a prompt and not a service: the handler runs alone
    assert [cmd for _, cmd in _processes(client, name) if "bash" in cmd] == []
    base, agent = _sizes(client, name, NO_PYTHON)
    MEASURED["bytes added on debian without python"] = agent - base


def test_a_node_image_hatches_with_its_own_cmd_beside_the_handler(client, fleet):
    node = _agents(fleet)[1]
    _hatch_and_time(fleet, node, "node image, cold")
    name = agent_container(fleet, node)
    MEASURED["node agent: container start to agent.js up (s)"] = _node_up(client, name, starts=1)
    processes = _processes(client, name)
    assert ("nobody", "node /app/agent.js") in processes, processes    # the image's CMD and USER
    assert any(user == "root" and "agent_kit.handler" in cmd for user, cmd in processes), processes
    assert _answers(fleet, node, "version-report").result["version"].startswith("v18.")
    base, agent = _sizes(client, name, NODE)
    MEASURED["bytes added on node-demo (no python)"] = agent - base


# No procps in the image: find node in /proc; exit 1 when there was none to kill.
KILL_NODE = ("k=0; for p in /proc/[0-9]*; do if [ \"$(cat $p/comm 2>/dev/null)\" = node ]; "
             "then kill -KILL ${p#/proc/} && k=1; fi; done; [ $k = 1 ]")


def test_killing_the_node_program_shows_on_the_bus_as_status_and_alert(client, fleet):
    node = _agents(fleet)[1]
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    container = client.containers.get(agent_container(fleet, node))
    restarts = container.attrs["RestartCount"]
    with manager_session(fleet) as raw:     # a plain paho client, as the manager
        raw.on_message = lambda _c, _u, msg: inbox.put((msg.topic, json.loads(msg.payload), msg.retain))
        raw.subscribe([(f"fleet/{node.name}/status", 1), (f"fleet/{node.name}/alert", 1)])
        time.sleep(0.5)                     # past the retained state delivered on subscribe
        while not inbox.empty():
            inbox.get()
        killed = time.monotonic()
        assert container.exec_run(["sh", "-c", KILL_NODE]).exit_code == 0
        seen = {}
        while len(seen) < 2 and time.monotonic() - killed < 10:
            try:
                topic, payload, _ = inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if payload.get("event") == "main-exited" or payload.get("code") == "main-exited":
                seen[topic.rsplit("/", 1)[1]] = (payload, round(time.monotonic() - killed, 2))
    assert set(seen) == {"status", "alert"}, seen
    assert seen["status"][0]["exit"] == 137
    assert (seen["alert"][0]["reason"], seen["alert"][0]["level"]) == ("signal-9", "critical")
    MEASURED["kill -9 of the main process to its alert on the bus (s)"] = seen["alert"][1]
    # the container exited with the main process's code and Docker restarted the pair
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (container.reload() or container.attrs["RestartCount"] > restarts):
        time.sleep(0.3)
    assert container.attrs["RestartCount"] > restarts
    assert "main process exited with 137" in container.logs().decode()
    assert _answers(fleet, node, "health-check").ok


def test_docker_stop_reaches_the_main_process_and_its_exit_code_is_the_containers(client, fleet):
    node = _agents(fleet)[1]
    container = client.containers.get(agent_container(fleet, node))
    _node_up(client, container.name, starts=2)     # restarted after the kill, SIGTERM handler set
    started = time.monotonic()
    container.stop(timeout=10)
    MEASURED["docker stop of the node agent (s)"] = round(time.monotonic() - started, 2)
    container.reload()
    # agent.js ends with 0 on SIGTERM; a supervisor that did not pass the signal and the code on
    # would exit 143 (or 137 after docker's 10 s grace)
    assert container.attrs["State"]["ExitCode"] == 0
    logs = container.logs().decode()
    assert "agent.js: SIGTERM, exiting 0" in logs and "stopped by a signal; exiting with 0" in logs
