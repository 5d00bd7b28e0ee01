"""Attack 5 of the threat model: empty the audit by flooding, and store unbounded data.

One e-mail address in a heartbeat followed by enough clean heartbeats rotated
the bounded record and bus.audit exited 0 with no findings; and an agent could
store any number of retained messages under ``hatchery/verify/{self}/#``.
Controls: a file that rotates away is audited first and its findings kept in
``bus.jsonl.findings`` (bounded: per file at most KEPT_PER_FILE findings plus
one count per rule), which bus.audit reads; each agent may write exactly one
verify topic, so it holds at most one retained message per topic it may write.
The attackers are raw paho clients.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.observe import record as rec
from hatchery.observe.audit import audit_record
from hatchery.security import acl
from tests.security.secbroker import Probe, start_fleet_broker

ROOT = Path(__file__).resolve().parents[2]


def _beat(agent: str, **extra) -> bytes:
    """A heartbeat; ``extra`` fields are written as given (a leak need not keep the contract)."""
    return json.dumps({**contract.make_heartbeat(agent, True, 1.0), **extra}).encode()


def _flood(broker, agent: str, leak: bytes, clean: int) -> None:
    """The attacker: one leak, then ``clean`` contract-perfect heartbeats (QoS 0, raw paho)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(f"fleet/{agent}/heartbeat", leak, qos=1).wait_for_publish(5)
        for number in range(clean):
            info = client.publish(f"fleet/{agent}/heartbeat", _beat(agent), qos=1)
            if number % 200 == 199:
                info.wait_for_publish(10)
        info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def _record_while(broker, path: Path, action, *, max_bytes: int, keep: int) -> rec.RecordStats:
    log = rec.RotatingLog(path, max_bytes=max_bytes, keep=keep)
    stop, ready, stats = threading.Event(), threading.Event(), []
    with BusClient(broker.host, broker.port) as bus:
        worker = threading.Thread(target=lambda: stats.append(rec.record(bus, log, stop=stop, ready=ready)))
        worker.start()
        try:
            assert ready.wait(5)
            action()
            time.sleep(0.5)
        finally:
            stop.set()
            worker.join(10)
    log.close()
    return stats[0]


@pytest.mark.parametrize("keep", [0, 2])
def test_a_leak_survives_a_flood_that_rotates_it_out_of_the_record(broker, tmp_path, keep):
    path = tmp_path / "bus.jsonl"
    leak = _beat("leaky", version="john.doe@example.com")
    stats = _record_while(broker, path, lambda: _flood(broker, "leaky", leak, 1500),
                          max_bytes=20_000, keep=keep)
    assert stats.rotations >= keep + 2, "the flood did not rotate the leak away"
    assert all(b"john.doe" not in f.read_bytes() for f in rec.record_files(path))
    result = audit_record(path)
    emails = [f for f in result.findings if f.rule == "email"]
    assert emails and "kept from" in emails[0].detail
    assert "john.doe@example.com" not in rec.findings_path(path).read_text()   # masked
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "bus.audit",
                           "--record", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FLEET_INVENTORY": str(_inventory(tmp_path, broker)),
                               "NO_COLOR": "1"})
    assert proc.returncode == 1 and "email" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _inventory(directory: Path, broker) -> Path:
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
                               "  host: 127.0.0.1", f"  port: {broker.port}", "  auth: false",
                               "agents:", "  leaky: {}"]) + "\n")
    return path


def test_the_kept_findings_are_bounded_and_count_every_leak(tmp_path, monkeypatch):
    monkeypatch.setattr(rec, "MAX_FINDINGS_BYTES", 20_000)
    path = tmp_path / "bus.jsonl"
    log = rec.RotatingLog(path, max_bytes=5_000, keep=1)
    leaks = 3000
    for number in range(leaks):
        payload = _beat("leaky", version=f"mail{number}@example.com")
        log.write(rec.entry("fleet/leaky/heartbeat", payload, retain=False, when=number))
    log.close()
    kept = rec.findings_path(path)
    assert kept.stat().st_size < 20_000 + 10_000
    assert rec.counts_path(kept).stat().st_size < 500
    lines = list(rec.read_kept_findings(path))
    counted = sum(line["count"] if line.get("summary") else 1
                  for line in lines if line["rule"] == "email")
    in_record = sum(1 for f in audit_record(path).findings
                    if f.rule == "email" and f.topic != "(rotated away)" and "kept from" not in f.detail)
    assert counted + in_record == leaks
    assert oct(kept.stat().st_mode & 0o777) == "0o600"


# --- quotas on what an agent may store ---------------------------------------------------

@pytest.fixture
def fleet_broker(tmp_path):
    broker, secrets = start_fleet_broker(tmp_path, "zephyr", ["agent-a", "agent-b"])
    yield broker, secrets
    broker.stop()


def test_an_agent_may_retain_on_one_verify_topic_only(fleet_broker):
    broker, secrets = fleet_broker
    attacker = Probe(broker, "agent-a", secrets["agent-a"])
    assert not attacker.connect().is_failure
    for number in range(200):
        attacker.publish(f"hatchery/verify/agent-a/x{number}", b"x" * 10_000, retain=True)
    attacker.publish("hatchery/verify/agent-a/selftest", b"ping", retain=True)
    attacker.publish("hatchery/verify/agent-b/selftest", b"not mine", retain=True)
    attacker.close()
    manager = Probe(broker, "zephyr", secrets["zephyr"])
    assert not manager.connect().is_failure
    manager.subscribe("hatchery/verify/#")
    manager.publish("hatchery/probe/marker", b"")        # nothing retained arrives after this
    seen = {}
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            topic, payload = manager.receive(timeout=0.3)
        except Exception:
            break
        seen[topic] = payload
    manager.close()
    assert seen == {"hatchery/verify/agent-a/selftest": b"ping"}


def test_every_agent_grant_is_one_exact_topic():
    for grant in acl.agent_grants("agent-a", "zephyr"):
        assert "#" not in grant.topic and "+" not in grant.topic, grant
