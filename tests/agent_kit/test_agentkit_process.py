"""The handler and the bus tools as real processes: Last Will, signals, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from akhelpers import ROOT, probe_factory, unique_name  # noqa: F401 (fixtures)

from agent_kit import contract


def agent_env(broker, name: str, tmp_path, **config) -> dict:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "manager": "zephyr",
                                "broker": {"host": broker.host, "port": broker.port},
                                **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCHERY_")}
    env.update(HATCHERY_AGENT_CONFIG=str(path), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


def spawn_handler(env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent_kit.handler", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")


def tool(env: dict, name: str, *args: str, timeout: float = 15) -> subprocess.CompletedProcess:
    code = f"import sys; from agent_kit import cli; sys.exit(cli.{name}(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd="/")


def lines(result: subprocess.CompletedProcess) -> list:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def probe(module_broker, probe_factory):
    return probe_factory(module_broker)


@pytest.fixture
def running(module_broker, probe, tmp_path):
    """A handler subprocess with a 2 s keepalive; killed at the end whatever happens."""
    procs = []

    def start(name: str | None = None, **config):
        name = name or unique_name()
        env = agent_env(module_broker, name, tmp_path, **config)
        probe.subscribe(f"fleet/{name}/#")
        proc = spawn_handler(env, "--keepalive", "2")
        procs.append(proc)
        probe.wait_for(contract.topic(name, "status"), lambda p: p.get("state") == "online",
                       timeout=10)
        return name, env, proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stderr.close()


def test_sigkill_leaves_the_retained_offline_will(module_broker, probe, running):
    name, _, proc = running()
    status = contract.topic(name, "status")
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    will = probe.wait_for(status, lambda p: p.get("state") == "offline", timeout=6)
    took = time.monotonic() - killed
    assert will["agent"] == name and took < 4.0  # 1.5 x keepalive 2 s
    assert proc.wait(5) == -signal.SIGKILL


def test_sigterm_stops_cleanly_with_offline(module_broker, probe, running):
    name, _, proc = running()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    state = probe.wait_for(contract.topic(name, "status"), lambda p: p.get("state") == "offline",
                           timeout=3)
    assert state["kind"] == "state"
    log = proc.stderr.read().decode()
    assert "connected" in log and "stopped" in log


def test_bad_config_exits_2_with_the_key(module_broker, tmp_path):
    env = agent_env(module_broker, "client-a", tmp_path, heartbeat_intervall=5)
    proc = spawn_handler(env)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 2 and b"heartbeat_intervall" in err


def test_bus_command_against_a_handler_process(module_broker, running):
    name, env, _ = running(version_command="echo fleet-agent 2.0.1")
    result = tool(env, "command_main", "version-report", "--agent", name)
    assert result.returncode == 0, result.stderr
    (reply,) = lines(result)
    assert reply["result"] == {"version": "fleet-agent 2.0.1"} and reply["agent"] == name
    result = tool(env, "command_main", "config-reload", "--agent", name, "--timeout", "3")
    assert result.returncode == 1 and lines(result)[0]["error"] == "no-reload-configured"


def test_bus_command_broadcast_collects_every_agent(module_broker, running):
    manager = unique_name("mgr")
    names = {running(manager=manager)[0] for _ in range(2)}
    _, env, _ = running(manager=manager)
    result = tool(env, "command_main", "health-check", "--broadcast", "--expect", "3",
                  "--timeout", "5")
    assert result.returncode == 0, result.stderr
    assert names < {reply["agent"] for reply in lines(result)}


def test_bus_command_with_nobody_listening_fails_in_time(module_broker, tmp_path):
    env = agent_env(module_broker, unique_name(), tmp_path)
    started = time.monotonic()
    result = tool(env, "command_main", "health-check", "--agent", unique_name(),
                  "--timeout", "0.5")
    assert result.returncode == 1 and "no reply" in result.stderr
    assert time.monotonic() - started < 5


def test_bus_publish_kinds_reach_their_topics(module_broker, probe, tmp_path):
    name = unique_name()
    env = agent_env(module_broker, name, tmp_path)
    probe.subscribe(f"fleet/{name}/#")
    cases = [("alert", ["code=disk-pressure", "level=warning"], {"code": "disk-pressure"}),
             ("heartbeat", ["ok=true"], {"ok": True}),
             ("status", ["event=cron-failed", "job=backup", "exit=2"], {"exit": 2}),
             ("alert", ["--json", '{"code": "auth-failure", "count": 3}'], {"count": 3})]
    for kind, args, expected in cases:
        result = tool(env, "publish_main", kind, *args)
        assert result.returncode == 0, result.stderr
        topic = contract.topic(name, kind)
        got = probe.wait_for(topic, lambda p: expected.items() <= p.items())
        assert got["agent"] == name and lines(result)[0]["topic"] == topic


@pytest.mark.parametrize("args, words", [
    (["alert", "code=disk-pressure", "note=Mrs Smith called about the invoice"], "free text"),
    (["alert", "level=warning"], "needs code="),
    (["status", "event=x", "Job=1"], "lowercase key"),
    (["alert", "code=x", "--json", "{}"], "not both"),
    (["alert", "--json", '{"code": "x", "agent": "someone-else"}'], "only as itself"),
    (["alert", "--json", '{"code": "x", "message": "hi"}'], "extra-keys"),
    (["heartbeat", "uptime=yes"], "bad-type"),
])
def test_bus_publish_refuses_before_sending(module_broker, tmp_path, args, words):
    env = agent_env(module_broker, unique_name(), tmp_path)
    result = tool(env, "publish_main", *args)
    assert result.returncode == 2 and words in result.stderr
    assert result.stdout == ""


def test_bus_heartbeat_and_bus_subscribe(module_broker, tmp_path):
    name = unique_name()
    env = agent_env(module_broker, name, tmp_path, heartbeat_interval=300)
    assert tool(env, "heartbeat_main").returncode == 0
    # the heartbeat is retained: a later subscriber gets it at once
    result = tool(env, "subscribe_main", "heartbeat", "--agent", name, "--count", "1",
                  "--timeout", "5")
    assert result.returncode == 0, result.stderr
    (line,) = lines(result)
    assert line["retained"] is True and line["payload"]["interval"] == 300
    contract.validate_heartbeat(line["payload"])


def test_bus_subscribe_describes_garbage_without_echoing_it(module_broker, probe, tmp_path):
    name = unique_name()
    env = agent_env(module_broker, name, tmp_path)
    probe.publish(contract.topic(name, "alert"), b"\xffsecret garbage", retain=True)
    try:
        result = tool(env, "subscribe_main", "alert", "--agent", name, "--count", "1",
                      "--timeout", "5")
        (line,) = lines(result)
        assert line == {"topic": contract.topic(name, "alert"), "retained": True,
                        "invalid": "not-json", "size": 15}
    finally:
        probe.publish(contract.topic(name, "alert"), b"", retain=True)


def test_bus_subscribe_times_out_short_of_count(module_broker, tmp_path):
    env = agent_env(module_broker, unique_name(), tmp_path)
    result = tool(env, "subscribe_main", "alert", "--agent", unique_name(), "--count", "1",
                  "--timeout", "0.3")
    assert result.returncode == 1 and "0 of 1" in result.stderr


def test_tools_report_an_unreachable_broker(module_broker, tmp_path):
    env = agent_env(module_broker, unique_name(), tmp_path)
    env["HATCHERY_BROKER_PORT"] = "1"
    result = tool(env, "heartbeat_main", "--connect-timeout", "1")
    assert result.returncode == 1 and "cannot connect" in result.stderr


@pytest.mark.parametrize("script", ["bus-publish", "bus-subscribe", "bus-command",
                                    "bus-heartbeat", "bus-command-handler"])
def test_console_scripts_have_help(script):
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.exists(path):
        pytest.skip(f"{script} not installed (pip install -e .)")
    result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0 and "usage:" in result.stdout
