"""The docker broker's control socket: the manager gets in during a flood of the published port.

The docker runtime had no control listener: the manager reached a docker broker
over its published TCP port, which a flood of idle sockets fills like any other.
On the local engine the socket's directory is now a bind mount
(``/mosquitto/control`` in the container): the broker makes its socket there
and the manager connects through it. The state directory here is long enough
that the socket moves to /tmp/hatchery-ctl-<uid>/<hash>/, which is what gets mounted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from dockerhelpers import client, docker_inventory, remove_fleet, wait_mqtt  # noqa: F401 (fixture)

from hatchery.bus.connection import bus_for, control_target
from hatchery.configs import broker as broker_conf
from hatchery.core.plan import apply_plan
from hatchery.inventory.model import DOCKER, AgentSpec, BrokerSpec, Inventory
from hatchery.provision.operations import deploy_plan
from hatchery.runtime import for_runtime
from tests.security.secbroker import flood, tcp_login

pytestmark = pytest.mark.docker
LIMIT = 40


@pytest.fixture
def fleet(client, tmp_path, monkeypatch):  # noqa: F811 (the fixture)
    monkeypatch.setattr(broker_conf, "PUBLIC_MAX_CONNECTIONS", LIMIT)
    monkeypatch.setattr(broker_conf, "AGENT_MARGIN", 0)
    prefix = f"hty-{secrets.token_hex(3)}-"
    state = tmp_path / ("s" + "x" * 60)            # the socket's path in it: well past 107 bytes
    inv = docker_inventory(tmp_path, prefix, [AgentSpec("alpha", runtime=DOCKER)], state_dir=state)
    assert apply_plan("deploy", deploy_plan(inv)).ok
    wait_mqtt(inv)
    yield inv
    remove_fleet(inv)
    shutil.rmtree(Path(broker_conf.control_socket(inv)).parent, ignore_errors=True)


def test_the_manager_gets_in_through_the_mounted_socket_during_a_flood(fleet):
    path = broker_conf.control_socket(fleet)
    assert path.startswith(f"/tmp/hatchery-ctl-{os.geteuid()}/")
    deadline = time.monotonic() + 10
    while control_target(fleet) != path:               # the broker makes it as it starts
        assert time.monotonic() < deadline, "no control socket on the host"
        time.sleep(0.1)
    assert tcp_login(fleet, "alpha")
    socks = flood(fleet.broker.port, LIMIT + 60, settle=0.5)
    try:
        assert not tcp_login(fleet, "alpha"), "the flood did not fill the published port"
        for role in (None, "monitor"):
            with bus_for(fleet, role=role, connect_timeout=3) as bus:     # raises if refused
                assert bus.unix_socket == path
                assert bus.retained_messages(["fleet/+/status"], timeout=3) == []
    finally:
        for sock in socks:
            sock.close()


def test_a_remote_engine_gets_no_control_socket(tmp_path):
    inv = Inventory(path=tmp_path / "fleet_inventory.yaml", state_dir=tmp_path / ".hatchery",
                    broker=BrokerSpec(runtime=DOCKER, docker_host="ssh://root@10.0.0.2"))
    assert for_runtime(DOCKER).broker_layout(inv).control_socket == ""
    local = replace(inv, broker=replace(inv.broker, docker_host=None))
    assert for_runtime(DOCKER).broker_layout(local).control_socket == "/mosquitto/control/control.sock"
