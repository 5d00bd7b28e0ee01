"""Attack 8a of the threat model: a captured command replayed after the handler restarts.

The replay cache lived in memory: a signed command captured on the bus and
published again after the handler restarted, inside its 30 s window, ran a
second time. Control: the cache persists (one appended line per accepted id,
read back at start, expired ids dropped, compacted; bounded). The replay is
published with a raw paho client, byte for byte what was captured.
"""

from __future__ import annotations

import os
import stat
import time

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract, signing
from agent_kit.config import AgentConfig
from agent_kit.handler import CommandHandler, replay_file
from tests.agent_kit.akhelpers import Probe, unique_name

KEY = os.urandom(32)


def _start(broker, probe: Probe, name: str, manager: str, path) -> CommandHandler:
    config = AgentConfig(name=name, manager=manager, broker_host=broker.host,
                         broker_port=broker.port, heartbeat_interval=600, alert_interval=10)
    handler = CommandHandler(config, password="", keys={"command": KEY, "broadcast": KEY},
                             replay_file=str(path))
    handler.start()
    assert handler.wait_connected(5)
    probe.wait_for(contract.topic(name, "status"),
                   lambda p: p.get("state") == "online" and p["ts"] >= handler.connected_since[:19])
    return handler


def _raw_publish(broker, topic: str, data: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, data, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _replies(probe: Probe, name: str, command_id: str) -> int:
    return sum(1 for p in probe.decoded(contract.topic(name, "status"))
               if p.get("kind") == "reply" and p.get("id") == command_id)


def test_a_replay_after_a_restart_is_refused(broker, tmp_path):
    name, manager = unique_name("replay"), unique_name("mgr")
    probe = Probe(broker.host, broker.port)
    probe.subscribe(f"fleet/{name}/#")
    path = tmp_path / "replay-cache"
    handler = _start(broker, probe, name, manager, path)
    captured = contract.encode(signing.sign_command(contract.make_command("health-check", "c-1"), KEY))
    try:
        _raw_publish(broker, contract.topic(name, "command"), captured)
        probe.reply_to(name, "c-1")
    finally:
        handler.stop(timeout=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    handler = _start(broker, probe, name, manager, path)          # restarted, same cache file
    try:
        _raw_publish(broker, contract.topic(name, "command"), captured)      # the replay
        fresh = signing.sign_command(contract.make_command("health-check", "c-2"), KEY)
        _raw_publish(broker, contract.topic(name, "command"), contract.encode(fresh))
        probe.reply_to(name, "c-2")          # a fresh command still runs
        time.sleep(0.2)
        assert _replies(probe, name, "c-1") == 1
        assert handler.counters.snapshot().get("dropped:replayed", 0) == 1
    finally:
        handler.stop(timeout=2)
        probe.close()


def test_the_cache_file_is_bounded_and_forgets_expired_ids(tmp_path):
    path = str(tmp_path / "cache")
    cache = signing.ReplayCache(size=10, path=path, now=1000.0)
    for number in range(100):
        cache.add(f"id-{number}", expires=1000.0 + number, now=1000.0)
    assert len(open(path).read().splitlines()) <= 2 * 10 + 1
    again = signing.ReplayCache(size=10, path=path, now=1095.0)
    assert "id-99" in again and "id-94" not in again and len(again) <= 10


@pytest.mark.parametrize("junk", [b"\x00\xff garbage\n", b"id-1 nan\nid-2 inf\n", b"../x 9e99\n",
                                  b"a" * 5000 + b" 1\n"])
def test_a_damaged_cache_file_is_survived(tmp_path, junk):
    path = tmp_path / "cache"
    path.write_bytes(junk)
    cache = signing.ReplayCache(size=10, path=str(path), now=0.0)
    assert len(cache) == 0
    cache.add("ok", expires=50.0, now=0.0)
    assert "ok" in signing.ReplayCache(size=10, path=str(path), now=1.0)


def test_the_default_cache_lives_beside_the_config(tmp_path):
    config = AgentConfig(name="alpha", manager="zephyr")
    assert replay_file(config, str(tmp_path / "config.json")) == str(tmp_path / ".alpha.replay-cache")
