"""Round 3: the manager's own MQTT reader (hatchery/bus/wire.py, link.py) against one agent.

The attacker holds one agent's password and uses raw paho (MQTT v5); the
victim is the manager's ``BusClient`` on a real Mosquitto that broker.deploy
configured. Each test fails if the attack works.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus import encode, wire
from hatchery.bus.connection import connection_for
from hatchery.observe.fleetstate import FleetState, live_filters
from hatchery.provision.credentials import stored_secret
from tests.security.hostilefleet import agent_client, deployed_fleet

BIG_BROKER_PACKETS = 4 * 1024 * 1024      # the operator may raise broker.max_packet_size this far


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """broker.deploy's broker (auth, ACL) allowing 4 MiB packets; agents alpha and beta."""
    yield from deployed_fleet(tmp_path_factory.mktemp("wire"), interval=600,
                              broker_lines=[f"  max_packet_size: {BIG_BROKER_PACKETS}"])


def _beat(name: str, **extra) -> bytes:
    return contract.encode(contract.make_heartbeat(name, True, 5.0, **extra))


def _clear(inv, name: str) -> None:
    agent = agent_client(inv, name)
    agent.publish(contract.topic(name, "heartbeat"), b"", qos=1, retain=True).wait_for_publish(5)
    agent.disconnect()
    agent.loop_stop()


def test_an_oversized_retained_message_does_not_knock_the_manager_off_the_bus(fleet):
    """A retained 2 MiB heartbeat (under the broker's 4 MiB, over the manager's 1 MiB reader):
    the manager must neither drop its connection on it nor loop reconnecting to it."""
    inv = fleet
    attacker = agent_client(inv, "alpha")
    try:
        info = attacker.publish(contract.topic("alpha", "heartbeat"), b"x" * (2 << 20), qos=1, retain=True)
        info.wait_for_publish(5)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS
        state = FleetState.for_inventory(inv)
        with connection_for(inv).client() as bus, bus.listen(live_filters(inv.manager), state.observe):
            time.sleep(3.0)         # the retained 2 MiB came (or not) with the SUBACK
            beta = agent_client(inv, "beta")
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
    busy (folding, judging): a command the manager sends meanwhile must still reach its agent.
    Before the fix, the reader looped on full reads and never wrote while the flood lasted:
    no command, no PUBACK, no PINGREQ went out. (Acknowledgements *to* the manager still
    queue behind the flood at the broker: one ordered stream.)"""
    inv = fleet
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        attacker = agent_client(inv, "alpha")
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

    def busy(message) -> None:       # a manager with real work per message (1 ms)
        seen[0] += 1
        time.sleep(0.001)           # not a spin: the flooder, in this process, needs the GIL to pull ahead

    got = threading.Event()
    beta = agent_client(inv, "beta")
    beta.on_message = lambda client, userdata, message: got.set()
    beta.subscribe(contract.topic("beta", "command"), qos=0)
    time.sleep(0.3)
    with connection_for(inv).client() as bus, bus.listen([contract.topic("alpha", "heartbeat")], busy):
        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            deadline = time.monotonic() + 15
            while seen[0] < 2000 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert seen[0] >= 2000, "the flood never reached the manager"
            deadline = time.monotonic() + 15
            while sent[0] - seen[0] <= 1000 and time.monotonic() < deadline:
                time.sleep(0.05)    # on a quiet machine the flood needs a moment to pull ahead
            behind = sent[0] - seen[0]      # the manager's backlog as it sends
            bus.publish(contract.topic("beta", "command"), b"{}", qos=0)
            arrived = got.wait(5.0)
            assert not stop.is_set()
        finally:
            stop.set()
            flooder.join(10)
            beta.disconnect()
            beta.loop_stop()
    assert behind > 1000, f"the flood did not outrun the manager ({behind} behind): nothing was shown"
    assert arrived, "the manager's command did not go out while one agent flooded it"


def _raw_login(inv, name: str) -> socket.socket:
    """A raw MQTT v5 session as ``name`` (the attacker writes its own packets)."""
    sock = socket.create_connection((inv.broker.host, inv.broker.port), 5)
    sock.sendall(encode.connect(wire.MQTTv5, f"raw-{name}-{time.time_ns()}", 30,
                              username=name, password=stored_secret(inv, name)))
    reader = wire.Reader(wire.MQTTv5)
    controls: list = []
    while not controls:
        controls = reader.feed(sock.recv(4096), time.time())[2]
    assert controls[0][0] == wire.CONNACK and controls[0][2][1] == 0, "the attacker was refused"
    return sock


def _packed_with_user_properties(topic: str, payload: bytes, size: int) -> bytes:
    """A QoS 0 PUBLISH of ``size`` bytes, its properties all empty user properties (5 bytes each)."""
    one = b"\x26\x00\x00\x00\x00"
    head = encode.text(topic)
    count = (size - len(head) - len(payload) - 10) // len(one)
    properties = one * count
    return encode.packet(wire.PUBLISH, 0, head + encode.varint(len(properties)) + properties + payload)


def test_messages_full_of_properties_cannot_slow_the_manager_behind_other_agents(fleet):
    """alpha sends 64 KiB PUBLISHes holding 13,000 user properties each, 250 a second; beta's
    heartbeat sent meanwhile must reach the manager's fleet state within 1.5 s (heal's
    confirming health-check waits 3 s for a reply). Before the fix
    each such message cost the reader 33 ms: the manager fell further behind every second."""
    inv = fleet
    packet = _packed_with_user_properties(contract.topic("alpha", "heartbeat"), b"{}", 65000)
    state = FleetState.for_inventory(inv)
    attacker = _raw_login(inv, "alpha")
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            for _ in range(25):
                attacker.sendall(packet)
            time.sleep(0.1)

    flooder = threading.Thread(target=flood, daemon=True)
    beta = agent_client(inv, "beta")
    try:
        with connection_for(inv).client() as bus, bus.listen(live_filters(inv.manager), state.observe):
            flooder.start()
            time.sleep(5.0)
            assert state.facts("alpha").invalid > 100, f"the flood never reached the manager: {state.facts('alpha').invalid}"
            beta.publish(contract.topic("beta", "heartbeat"), _beat("beta"), qos=1).wait_for_publish(5)
            sent = time.monotonic()
            while state.facts("beta").beat is None and time.monotonic() - sent < 10:
                time.sleep(0.02)
            took = time.monotonic() - sent
            assert state.facts("beta").beat is not None, "beta's heartbeat never reached the manager"
            assert took < 1.5, f"beta's heartbeat waited {took:.1f}s behind alpha's properties"
    finally:
        stop.set()
        flooder.join(5)
        attacker.close()
        beta.disconnect()
        beta.loop_stop()
        _clear(inv, "beta")


def _publish_raw(topic: str, properties: bytes, payload: bytes) -> bytes:
    return encode.packet(wire.PUBLISH, 0, encode.text(topic) + encode.varint(len(properties)) + properties + payload)


def test_whatever_bytes_an_agent_sends_the_manager_stays_up_and_hears_the_others(fleet):
    """Raw packets as alpha: payloads that are not UTF-8, not JSON, 60 KiB, nested 2,000 deep;
    user properties and a content type that are not UTF-8 or hold U+0000; a payload format
    indicator of 1 on bytes that are not text. Each reaches the manager (or the broker drops
    it); the manager's link stays up and beta's heartbeat after them is read."""
    inv = fleet
    topic = contract.topic("alpha", "heartbeat")
    bad_text = b"\xff\xfe\xc0\xaf"
    sends = [
        _publish_raw(topic, b"", bad_text),
        _publish_raw(topic, b"", b"{" * 2000),
        _publish_raw(topic, b"", b"[" * 2000 + b"]" * 2000),
        _publish_raw(topic, b"", b"x" * 60000),
        _publish_raw(topic, b"\x26" + struct.pack("!H", 4) + bad_text + encode.text("v"), b"{}"),
        _publish_raw(topic, b"\x26" + encode.text("k") + encode.text("a\x00b"), b"{}"),
        _publish_raw(topic, b"\x03" + struct.pack("!H", 4) + bad_text, b"{}"),
        _publish_raw(topic, b"\x01\x01", bad_text),
    ]
    state = FleetState.for_inventory(inv)
    beta = agent_client(inv, "beta")
    try:
        with connection_for(inv).client() as bus, bus.listen(live_filters(inv.manager), state.observe):
            for packet in sends:            # a fresh login each: the broker may drop one for it
                attacker = _raw_login(inv, "alpha")
                try:
                    attacker.sendall(packet)
                    time.sleep(0.1)
                finally:
                    attacker.close()
            beta.publish(contract.topic("beta", "heartbeat"), _beat("beta"), qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 5
            while state.facts("beta").beat is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert state.facts("beta").beat is not None, "beta's heartbeat was lost"
            assert bus._link.reconnects == 0 and bus._link.connected
            assert state.facts("alpha").beat is None, "a malformed heartbeat was taken"
            assert state.facts("alpha").invalid + bus.dropped >= 4, "nothing reached the manager"
    finally:
        beta.disconnect()
        beta.loop_stop()
        _clear(inv, "beta")
