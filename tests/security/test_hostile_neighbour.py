"""Attack 3 of the threat model: an anonymous neighbour floods the broker with idle sockets.

Mosquitto 2.0.11 closes a TCP connection that sends no CONNECT only after ~90 s;
~24,000 of them once used up the broker's file descriptors and locked the manager
and every agent out. Controls: ``max_connections`` on every public listener, and
a control listener (a unix socket in the broker's state directory, its own
limit) for the manager and the read-only roles, which a TCP flood cannot reach.
A state directory too long for a socket's path once left that listener out
without a word; its socket now moves to a short private directory.
The flood here is bounded (the public limit is lowered for the test) and on
127.0.0.1 only; the attacker is a plain socket that never sends a byte.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hatchery.bus.connection import bus_for, control_target
from hatchery.configs import broker as broker_conf
from hatchery.core.paths import StatePaths
from hatchery.core.plan import apply_plan
from hatchery.core.process import read_pid
from hatchery.inventory.load import load_inventory
from hatchery.provision.operations import broker_conf as rendered_conf
from hatchery.provision.operations import deploy_plan, stop_broker_plan
from tests.security.hostilefleet import deployed_fleet, local_inventory
from tests.security.secbroker import flood, tcp_login

LIMIT = 40


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    monkeypatch.setattr(broker_conf, "PUBLIC_MAX_CONNECTIONS", LIMIT)
    monkeypatch.setattr(broker_conf, "AGENT_MARGIN", 0)
    yield from deployed_fleet(tmp_path)


def test_every_listener_has_a_connection_limit(tmp_path):
    inv = load_inventory(local_inventory(tmp_path))
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
    inv = load_inventory(local_inventory(tmp_path))
    many = {f"a{i}": spec for i, spec in enumerate([inv.agents["alpha"]] * 1000)}
    inv.agents.clear()
    inv.agents.update(many)
    assert broker_conf.public_max_connections(inv) >= 2000


def _open_fds(inv) -> int:
    pid = read_pid(StatePaths(inv.state_dir).broker_pid)
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_an_idle_socket_flood_cannot_lock_the_manager_out(fleet):
    assert control_target(fleet) == broker_conf.control_socket(fleet)
    assert tcp_login(fleet, "alpha")
    socks = flood(fleet.broker.port, LIMIT + 60)
    try:
        assert not tcp_login(fleet, "alpha"), "the flood did not reach the public limit"
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
    while not tcp_login(fleet, "alpha"):       # the flood gone, agents get back in
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


SOCKET_PATH_BYTES = 117     # past the unix socket limit (~107): the listener used to be left out


@pytest.fixture
def long_fleet(tmp_path, monkeypatch):
    """A fleet whose state directory puts the control socket's path at 117 bytes."""
    monkeypatch.setattr(broker_conf, "PUBLIC_MAX_CONNECTIONS", LIMIT)
    monkeypatch.setattr(broker_conf, "AGENT_MARGIN", 0)
    tail = len(str(tmp_path)) + len("/s/broker/control/control.sock")
    state_dir = "s" + "x" * (SOCKET_PATH_BYTES - tail)
    inv = load_inventory(local_inventory(tmp_path, state_dir=state_dir))
    in_state = Path(StatePaths(inv.state_dir).broker_control_dir) / "control.sock"
    assert len(str(in_state).encode()) == SOCKET_PATH_BYTES
    assert apply_plan("deploy", deploy_plan(inv)).ok
    yield inv
    apply_plan("stop", stop_broker_plan(inv))
    shutil.rmtree(Path(broker_conf.control_socket(inv)).parent, ignore_errors=True)


def test_a_long_state_dir_keeps_its_control_listener_and_the_manager_gets_in(long_fleet):
    path = broker_conf.control_socket(long_fleet)
    assert path.startswith(f"/tmp/hatchery-ctl-{os.geteuid()}/") and len(path.encode()) < 100
    assert f"listener 0 {path}" in rendered_conf(long_fleet)
    directory = Path(path).parent
    for private in (directory, directory.parent):
        assert private.stat().st_uid == os.geteuid() and private.stat().st_mode & 0o077 == 0
    assert control_target(long_fleet) == path
    socks = flood(long_fleet.broker.port, LIMIT + 60)
    try:
        assert not tcp_login(long_fleet, "alpha"), "the flood did not reach the public limit"
        for role in (None, "monitor"):
            with bus_for(long_fleet, role=role, connect_timeout=3) as bus:   # raises if refused
                assert bus.unix_socket == path
                assert bus.retained_messages(["fleet/+/status"], timeout=3) == []
    finally:
        for sock in socks:
            sock.close()
