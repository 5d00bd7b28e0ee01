"""Attack 3 of the threat model: an anonymous neighbour floods the broker with idle sockets.

Mosquitto 2.0.11 never closes a TCP connection that sends no CONNECT; ~24,000
of them once used up the broker's file descriptors and locked the manager and
every agent out. Controls: ``max_connections`` on every public listener, and
a control listener (a unix socket in the broker's state directory, its own
limit) for the manager and the read-only roles, which a TCP flood cannot reach.
The flood here is bounded (the public limit is lowered for the test) and on
127.0.0.1 only; the attacker is a plain socket that never sends a byte.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hatchery.bus.connection import bus_for, control_target
from hatchery.configs import broker as broker_conf
from hatchery.core.paths import StatePaths
from hatchery.core.plan import apply_plan
from hatchery.core.ports import free_port
from hatchery.core.process import read_pid
from hatchery.inventory.load import load_inventory
from hatchery.provision import credentials as cr
from hatchery.provision.operations import broker_conf as rendered_conf
from hatchery.provision.operations import deploy_plan, stop_broker_plan
from tests.security.secbroker import Probe

LIMIT = 40


def _inventory(directory: Path, port: int, tls: bool = False) -> Path:
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
                               "  host: 127.0.0.1", "  bind: 127.0.0.1", f"  port: {port}",
                               "agents:", "  alpha: {}", "  beta: {}"]) + "\n")
    return path


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    monkeypatch.setattr(broker_conf, "PUBLIC_MAX_CONNECTIONS", LIMIT)
    monkeypatch.setattr(broker_conf, "AGENT_MARGIN", 0)
    inv = load_inventory(_inventory(tmp_path, free_port()))
    assert apply_plan("deploy", deploy_plan(inv)).ok
    yield inv
    apply_plan("stop", stop_broker_plan(inv))


def test_every_listener_has_a_connection_limit(tmp_path):
    inv = load_inventory(_inventory(tmp_path, free_port()))
    conf = rendered_conf(inv)
    lines = conf.splitlines()
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    assert len(listeners) == 2        # TCP + the control socket
    for index in listeners:
        following = lines[index + 1:index + 4]
        assert any(line.startswith("max_connections ") and int(line.split()[1]) > 0
                   for line in following), lines[index]
    assert f"listener 0 {broker_conf.control_socket(inv)}" in conf
    assert f"max_connections {broker_conf.CONTROL_MAX_CONNECTIONS}" in conf


def test_a_big_fleet_gets_room_for_every_agent_twice(tmp_path):
    inv = load_inventory(_inventory(tmp_path, free_port()))
    many = {f"a{i}": spec for i, spec in enumerate([inv.agents["alpha"]] * 1000)}
    inv.agents.clear()
    inv.agents.update(many)
    assert broker_conf.public_max_connections(inv) >= 2000


def _flood(port: int, count: int) -> list:
    """Idle TCP connections that never send CONNECT (the hostile neighbour)."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        socks.append(sock)
    time.sleep(0.3)     # the broker accepts (and refuses) them in its own time
    return socks


def _tcp_login(inv, user: str) -> bool:
    """Can ``user`` (raw paho, TCP) log in right now?"""
    class Addr:
        host, port = "127.0.0.1", inv.broker.port
    probe = Probe(Addr, user, cr.stored_secret(inv, user))
    try:
        return not probe.connect(timeout=2).is_failure
    except (TimeoutError, OSError):
        return False
    finally:
        probe.client.loop_stop()
        probe.client.disconnect()


def _open_fds(inv) -> int:
    pid = read_pid(StatePaths(inv.state_dir).broker_pid)
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_an_idle_socket_flood_cannot_lock_the_manager_out(fleet):
    assert control_target(fleet) == broker_conf.control_socket(fleet)
    assert _tcp_login(fleet, "alpha")
    socks = _flood(fleet.broker.port, LIMIT + 60)
    try:
        assert not _tcp_login(fleet, "alpha"), "the flood did not reach the public limit"
        assert _open_fds(fleet) < LIMIT + broker_conf.CONTROL_MAX_CONNECTIONS + 32
        for role in (None, "monitor", "exporter", "recorder"):
            with bus_for(fleet, role=role, connect_timeout=3) as bus:    # raises if refused
                assert bus.unix_socket
                if role != "recorder":      # the recorder has no probe topic to ping with
                    assert bus.retained_messages(["fleet/+/status"], timeout=3) == []
    finally:
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 5
    while not _tcp_login(fleet, "alpha"):       # the flood gone, agents get back in
        assert time.monotonic() < deadline, "the public listener did not recover"
        time.sleep(0.1)


def test_the_control_socket_still_wants_credentials(fleet):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="unix", protocol=mqtt.MQTTv5)
    results = []
    client.on_connect = lambda c, u, f, reason, p: results.append(reason)
    client.connect(broker_conf.control_socket(fleet), 1883)
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not results and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    assert results and results[0].is_failure        # anonymous: not authorised


def test_a_flood_of_the_control_socket_is_bounded_too(fleet):
    path = broker_conf.control_socket(fleet)
    socks = []
    try:
        for _ in range(broker_conf.CONTROL_MAX_CONNECTIONS + 20):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            socks.append(sock)
        time.sleep(0.3)
        assert _open_fds(fleet) < LIMIT + broker_conf.CONTROL_MAX_CONNECTIONS + 32
    finally:
        for sock in socks:
            sock.close()
