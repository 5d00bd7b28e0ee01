"""Per-host planning and results (pure logic), and what placement makes of configs."""

from __future__ import annotations

import time

import pytest

from hatchery.configs.broker import settings
from hatchery.core.hosts import apply_per_host
from hatchery.core.plan import Change
from hatchery.errors import DockerError, UsageError
from hatchery.inventory.placement import by_host
from hatchery.provision.operations import agent_conf, broker_conf
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import broker_ports
from tests.hosts.fleettext import load_text

INVENTORY = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2"}
  h2: {docker_host: "ssh://root@10.250.1.3"}
broker: {on_host: h1, bind: 0.0.0.0, tls: true, tls_port: 8884, auth: false}
agents:
  near: {host: h1}
  far: {host: h2}
  here: {}
"""


@pytest.fixture
def inv(tmp_path):
    return load_text(tmp_path, INVENTORY)


def _sleeper(name: str, seconds: float):
    return lambda: [Change(f"agent {name}", "create", "no container",
                           apply=lambda: time.sleep(seconds) or "started")]


def test_hosts_run_in_parallel_and_a_host_down_fails_alone():
    def down():
        raise DockerError("connect to the Docker engine ssh://root@h3: cannot talk to it")
    common = [Change("broker credentials", "none", "current")]
    started = time.monotonic()
    report = apply_per_host("agent.hatch", common, {"h1": _sleeper("a", 0.4), "h2": _sleeper("b", 0.4),
                                                    "h3": down})
    assert time.monotonic() - started < 0.75          # 2 x 0.4 s, at once
    assert [r.item for r in report.results] == ["broker credentials", "agent a", "agent b", "host h3"]
    assert [r.item for r in report.failed] == ["host h3"]
    assert report.hosts["h1"]["changed"] == 1 and report.hosts["h2"]["failed"] == 0
    assert report.hosts["h3"]["failed"] == 1 and "ssh://root@h3" in report.hosts["h3"]["error"]
    assert report.as_dict()["hosts"]["h3"]["failed"] == 1


def test_check_mode_changes_nothing_on_any_host():
    applied = []
    plan = lambda: [Change("agent a", "create", "x", apply=lambda: applied.append(1))]  # noqa: E731
    report = apply_per_host("agent.hatch", [], {"h1": plan, "h2": plan}, check=True)
    assert not applied and report.hosts["h1"]["changed"] == 1


def test_host_selection(inv):
    assert {h: [a.name for a in agents] for h, agents in by_host(inv, list(inv.agents.values())).items()} == {
        "h1": ["near"], "h2": ["far"], "local": ["here"]}
    assert [a.name for a in inv.select(host="h2")] == ["far"]
    assert [a.name for a in inv.select(host="h1,local")] == ["near", "here"]
    assert [a.name for a in inv.select(pattern="n*", host="h1")] == ["near"]
    with pytest.raises(UsageError, match="h9"):
        inv.select(host="h9")
    with pytest.raises(UsageError, match="no agent matches --name far --host h1"):
        inv.select(name="far", host="h1")


def test_agents_reach_the_broker_by_name_over_tls(inv):
    far, near = inv.agents["far"], inv.agents["near"]
    runtime = for_runtime(far.runtime)
    assert agent_conf(inv, far)["broker"] == {"host": "mqtt-broker", "port": 8884,
                                               "ca_file": "/etc/hatchery/ca.crt"}
    assert runtime.agent_layout(inv, far).extra_hosts == {"mqtt-broker": "10.250.1.2"}
    # on the broker's own engine: the fleet network and the container's TLS port
    assert agent_conf(inv, near)["broker"] == {"host": "mqtt-broker", "port": 8883,
                                                "ca_file": "/etc/hatchery/ca.crt"}
    assert runtime.agent_layout(inv, near).extra_hosts == {}


def test_plain_stays_on_loopback_unless_allowed(inv):
    assert broker_ports(inv) == {"1883/tcp": ("127.0.0.1", 1883), "8883/tcp": ("0.0.0.0", 8884)}
    from dataclasses import replace
    allowed = replace(inv, broker=replace(inv.broker, allow_plain=True))
    assert broker_ports(allowed)["1883/tcp"] == ("0.0.0.0", 1883)
    local = replace(inv, broker=replace(inv.broker, runtime="local", docker_host=None))
    listeners = [v for v in settings(broker_conf(local))["listener"] if not v.startswith("0 ")]
    assert listeners == ["1883 127.0.0.1", "8884 0.0.0.0"]     # (and the control socket)
