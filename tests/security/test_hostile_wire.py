"""Round 3: the manager's own MQTT reader (hatchery/bus/wire.py, link.py) against one agent.

The attacker holds one agent's password and uses raw paho (MQTT v5); the
victim is the manager's ``BusClient`` on a real Mosquitto that broker.deploy
configured. Each test fails if the attack works.
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.connection import connection_for
from hatchery.core.plan import apply_plan
from hatchery.core.ports import free_port
from hatchery.inventory.load import load_inventory
from hatchery.observe.fleetstate import FleetState, live_filters
from hatchery.provision.credentials import stored_secret
from hatchery.provision.operations import deploy_plan, stop_broker_plan

BIG_BROKER_PACKETS = 4 * 1024 * 1024      # the operator may raise broker.max_packet_size this far


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """broker.deploy's broker (auth, ACL) allowing 4 MiB packets; agents alpha and beta."""
    work = tmp_path_factory.mktemp("wire")
    path = work / "fleet_inventory.yaml"
    path.write_text("\n".join([
        "fleet:", "  manager: zephyr", f"  state_dir: {work / 'state'}",
        "broker:", "  runtime: local", "  host: 127.0.0.1", "  bind: 127.0.0.1",
        f"  port: {free_port()}", f"  max_packet_size: {BIG_BROKER_PACKETS}",
        "agents:", "  alpha: {heartbeat_interval: 600}", "  beta: {heartbeat_interval: 600}"]) + "\n")
    inv = load_inventory(path)
    assert apply_plan("up", deploy_plan(inv)).ok
    yield inv
    apply_plan("down", stop_broker_plan(inv))


def _agent(inv, name: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{name}-{time.time_ns()}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(name, stored_secret(inv, name))
    client.connect(inv.broker.host, inv.broker.port, keepalive=30)
    client.loop_start()
    return client


def _beat(name: str, **extra) -> bytes:
    return contract.encode(contract.make_heartbeat(name, True, 5.0, **extra))


def _clear(inv, name: str) -> None:
    agent = _agent(inv, name)
    agent.publish(contract.topic(name, "heartbeat"), b"", qos=1, retain=True).wait_for_publish(5)
    agent.disconnect()
    agent.loop_stop()


def test_an_oversized_retained_message_does_not_knock_the_manager_off_the_bus(fleet):
    """A retained 2 MiB heartbeat (under the broker's 4 MiB, over the manager's 1 MiB reader):
    the manager must neither drop its connection on it nor loop reconnecting to it."""
    inv = fleet
    attacker = _agent(inv, "alpha")
    try:
        info = attacker.publish(contract.topic("alpha", "heartbeat"), b"x" * (2 << 20), qos=1, retain=True)
        info.wait_for_publish(5)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        state = FleetState.for_inventory(inv)
        with connection_for(inv).client() as bus, bus.listen(live_filters(inv.manager), state.observe):
            time.sleep(3.0)         # the retained 2 MiB came (or not) with the SUBACK
            beta = _agent(inv, "beta")
            beta.publish(contract.topic("beta", "heartbeat"), _beat("beta"), qos=1,
                         retain=True).wait_for_publish(5)
            deadline = time.monotonic() + 5
            while state.facts("beta").beat is None and time.monotonic() < deadline:
                time.sleep(0.05)
            beta.disconnect()
            beta.loop_stop()
            assert bus._link.reconnects == 0, "the manager's link was dropped by one agent's message"
            assert bus._link.connected
            assert state.facts("beta").beat is not None, "another agent's heartbeat was lost"
    finally:
        attacker.disconnect()
        attacker.loop_stop()
        _clear(inv, "alpha")
        _clear(inv, "beta")


def test_a_flood_from_one_agent_does_not_hold_back_what_the_manager_sends(fleet):
    """An agent publishes junk at QoS 0 as fast as it can while the manager's callbacks are
    busy (folding, judging): the manager's own publish (a command) must still go out and be
    acknowledged. Before the fix, the reader looped on full reads and never wrote while the
    flood lasted: no command, no PUBACK, no PINGREQ."""
    inv = fleet
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        attacker = _agent(inv, "alpha")
        payload = json.dumps({"junk": "y" * 900}).encode()
        topic = contract.topic("alpha", "heartbeat")
        try:
            while not stop.is_set():
                for _ in range(200):
                    attacker.publish(topic, payload, qos=0)
                sent[0] += 200
                time.sleep(0.001)
        finally:
            attacker.disconnect()
            attacker.loop_stop()

    seen = [0]

    def busy(message) -> None:       # a manager with real work per message (~0.3 ms)
        seen[0] += 1
        end = time.perf_counter() + 0.0003
        while time.perf_counter() < end:
            pass

    with connection_for(inv).client() as bus, bus.listen([contract.topic("alpha", "heartbeat")], busy):
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            deadline = time.monotonic() + 15
            while seen[0] < 3000 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen[0] >= 3000, "the flood never reached the manager"
            started = time.monotonic()
            bus.publish(contract.topic("beta", "command"), b"{}", qos=1, timeout=5.0)
            took = time.monotonic() - started
            assert not stop.is_set()
        finally:
            stop.set()
            flooder.join(10)
    assert took < 5.0
    assert sent[0] > seen[0], "the flood did not outrun the manager: nothing was shown"
