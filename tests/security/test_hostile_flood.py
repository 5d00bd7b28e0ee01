"""Attack 8d of the threat model: a flood of the handler's queue loses a real command.

During a burst of 10,000 messages Mosquitto kept at most 1,000 per client
(``max_queued_messages``) and dropped the rest: about half, a real command
among them. Control: the rendered config queues 20,000 per client, bounded in
bytes (``max_queued_bytes``). The flood is 10,000 unsigned junk commands from
a raw paho client holding the manager's credentials, on 127.0.0.1; a real
signed health-check sent in the middle of it must be answered.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.commands import run_command
from hatchery.configs import broker as broker_conf
from hatchery.core.paths import StatePaths
from hatchery.provision import credentials as cr
from hatchery.provision.operations import broker_conf as rendered_conf
from tests.security.hostilefleet import deployed_fleet

FLOOD = 10_000


@pytest.fixture
def fleet(tmp_path):
    yield from deployed_fleet(tmp_path, agents=("alpha",), interval=600, hatch=True)


def test_the_rendered_config_queues_a_burst(fleet):
    conf = rendered_conf(fleet)
    assert f"max_queued_messages {broker_conf.MAX_QUEUED_MESSAGES}" in conf
    assert f"max_queued_bytes {broker_conf.MAX_QUEUED_BYTES}" in conf
    assert broker_conf.MAX_QUEUED_MESSAGES >= 2 * FLOOD


def _flood(inv, half_way: threading.Event, done: threading.Event) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.username_pw_set("zephyr", cr.stored_secret(inv, "zephyr"))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", inv.broker.port)
    client.loop_start()
    try:
        for number in range(FLOOD):
            junk = contract.encode(contract.make_command("health-check", f"junk-{number}"))
            info = client.publish("fleet/alpha/command", junk, qos=1)     # unsigned: dropped
            if number == FLOOD // 2:
                half_way.set()
        info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()
        done.set()


def test_a_real_command_survives_a_flood_of_the_handlers_queue(fleet):
    half_way, done = threading.Event(), threading.Event()
    flooder = threading.Thread(target=_flood, args=(fleet, half_way, done))
    flooder.start()
    try:
        assert half_way.wait(60)
        result = run_command(fleet, "health-check", names=["alpha"], timeout=30)
        assert [r.state for r in result.replies] == ["answered"], result.as_dict()
    finally:
        flooder.join(90)
    log = Path(StatePaths(fleet.state_dir).broker_log).read_text()
    assert "Outgoing messages are being dropped" not in log
