"""The handler's MQTT client id: stable for one agent, not guessable by another.

The broker closes an existing connection when a new one arrives with the same
client id. With a predictable id (``hatchery-agent-{name}``) any broker user
could knock an agent's handler off the bus, for good, since both sides
reconnect. These tests run the real handler against a real Mosquitto with our
password file and ACL, and try the ids another agent could come up with.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from agent_kit.config import handler_client_id, load_config
from agent_kit.handler import CommandHandler
from hatchery.security import passwords as pw
from tests.security.secbroker import Probe, start_fleet_broker

MANAGER = "zephyr"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A broker with auth + ACL, and an agent config file (with password_file) per agent."""
    tmp = tmp_path_factory.mktemp("clientid")
    suffix = uuid.uuid4().hex[:6]
    agents = [f"a-{suffix}", f"b-{suffix}"]
    broker, secrets = start_fleet_broker(tmp, MANAGER, agents)
    configs = {}
    for name in agents:
        secret_file = tmp / f"{name}.password"
        pw.write_private(secret_file, secrets[name] + "\n")
        config_file = tmp / f"{name}.json"
        config_file.write_text(json.dumps({
            "name": name, "manager": MANAGER, "username": name,
            "password_file": str(secret_file),
            "broker": {"host": broker.host, "port": broker.port}}))
        configs[name] = str(config_file)
    yield {"broker": broker, "agents": agents, "secrets": secrets, "configs": configs}
    broker.stop()


def test_the_handler_id_is_stable_across_loads_and_secret_derived(fleet):
    a, b = fleet["agents"]
    first = load_config(fleet["configs"][b], {}).client_id
    again = load_config(fleet["configs"][b], {}).client_id
    assert first == again                                     # a restart keeps its session
    assert first.startswith(f"hatchery-agent-{b}-") and first != f"hatchery-agent-{b}"
    assert len(first) == len(f"hatchery-agent-{b}-") + 16
    assert fleet["secrets"][b] not in first
    assert load_config(fleet["configs"][a], {}).client_id != first
    # rotation: another secret, another id
    assert handler_client_id(b, pw.new_secret()) != first


def test_another_agent_cannot_take_over_the_handler_id(fleet):
    a, b = fleet["agents"]
    handler = CommandHandler(load_config(fleet["configs"][b], {}))
    kicked = []
    original = handler.client.on_disconnect

    def on_disconnect(*args):
        kicked.append(args)
        original(*args)

    handler.client.on_disconnect = on_disconnect
    handler.start()
    attackers = []
    try:
        assert handler.wait_connected(5), "the handler did not connect"
        # every id agent a can work out: the old fixed one, and the tag under its own secret
        own = load_config(fleet["configs"][a], {}).client_id
        guesses = list(dict.fromkeys([f"hatchery-agent-{b}", handler_client_id(b, own),
                                      handler_client_id(b, fleet["secrets"][a]),
                                      own.replace(a, b)]))
        for guess in guesses:
            attacker = Probe(fleet["broker"], a, fleet["secrets"][a], client_id=guess)
            assert not attacker.connect().is_failure
            attackers.append(attacker)
        # A takeover closes the old connection before the new one gets its CONNACK;
        # on loopback the handler sees the EOF within milliseconds, and paho waits
        # at least 1 s before reconnecting: watch for half a second.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            assert handler.connected and not kicked, "the handler was kicked off the bus"
            time.sleep(0.01)
    finally:
        for attacker in attackers:
            attacker.close()
        handler.stop()


def test_without_auth_the_id_is_the_plain_name():
    assert handler_client_id("client-a", None) == "hatchery-agent-client-a"
    assert handler_client_id("client-a", "") == "hatchery-agent-client-a"
