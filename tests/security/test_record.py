"""bus.record: a bounded, rotated JSON-lines log of real bus traffic."""

from __future__ import annotations

import json
import stat
import threading
import time

import pytest

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.observe.audit import audit_record
from hatchery.observe.record import (
    RotatingLog,
    entry,
    entry_payload,
    read_record,
    record,
    record_files,
)
from hatchery.security import acl
from hatchery.security import passwords as pw
from tests.security.secbroker import Probe, start_secure_broker


def test_entry_keeps_text_as_text_and_binary_as_base64():
    text = entry("fleet/a/status", b'{"ok":true}', retain=True, when=0)
    assert text == {"time": "1970-01-01T00:00:00.000Z", "topic": "fleet/a/status",
                    "size": 11, "retain": True, "text": '{"ok":true}'}
    binary = entry("x", b"\xff\x00", retain=False, when=1.5)
    assert "text" not in binary and entry_payload(binary) == b"\xff\x00"
    assert entry_payload(text) == b'{"ok":true}'


def test_rotation_bounds_the_record_and_keeps_the_newest(tmp_path):
    path = tmp_path / "rec" / "bus.jsonl"
    log = RotatingLog(path, max_bytes=500, keep=2)
    for i in range(200):
        log.write(entry("fleet/a/heartbeat", f"message {i:03d}".encode(), retain=False, when=i))
    log.close()
    files = record_files(path)
    assert [f.name for f in files] == ["bus.jsonl.2", "bus.jsonl.1", "bus.jsonl"]
    assert all(f.stat().st_size < 500 + 200 for f in files)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    texts = [line["text"] for line in read_record(path)]
    assert texts[-1] == "message 199"
    numbers = [int(t.split()[1]) for t in texts]
    assert numbers == list(range(numbers[0], 200))        # contiguous, oldest first
    assert log.rotations > 10


def test_keep_zero_keeps_only_the_current_file(tmp_path):
    log = RotatingLog(tmp_path / "bus.jsonl", max_bytes=100, keep=0)
    for i in range(20):
        log.write({"i": i})
    log.close()
    assert [f.name for f in record_files(tmp_path / "bus.jsonl")] == ["bus.jsonl"]


def test_bad_limits_are_refused(tmp_path):
    with pytest.raises(ValueError):
        RotatingLog(tmp_path / "x", max_bytes=0)


def _run_recorder(bus, log, **kw):
    stop, ready = threading.Event(), threading.Event()
    box = {}
    thread = threading.Thread(target=lambda: box.update(stats=record(
        bus, log, stop=stop, ready=ready, **kw)), daemon=True)
    thread.start()
    assert ready.wait(5)
    return stop, thread, box


def test_records_live_traffic_from_a_real_broker(broker, tmp_path):
    path = tmp_path / "bus.jsonl"
    hb = json.dumps({"v": 1, "ts": contract.now_rfc3339(), "agent": "rec-a", "ok": True,
                     "uptime": 3}).encode()
    with BusClient(broker.host, broker.port) as publisher:
        publisher.publish("fleet/rec-a/heartbeat", hb, retain=True)
        log = RotatingLog(path, max_bytes=4096, keep=3)
        with BusClient(broker.host, broker.port) as bus:
            stop, thread, box = _run_recorder(bus, log)
            publisher.publish("fleet/rec-a/status", b"\xff\xfe not json")
            for i in range(50):
                publisher.publish("fleet/rec-a/alert", b"x" * 100)
            publisher.publish("fleet/rec-a/status", b"last")
            arrived = _wait_for(path, b"last")
            stop.set()
            thread.join(5)
        log.close()
        publisher.publish("fleet/rec-a/heartbeat", b"", retain=True)   # tidy the retained
    assert arrived
    lines = list(read_record(path))
    assert lines[0]["topic"] == "fleet/rec-a/heartbeat" and lines[0]["retain"] is True
    assert "b64" in lines[1] and entry_payload(lines[1]) == b"\xff\xfe not json"
    assert box["stats"].messages == 53 and box["stats"].rotations >= 1
    assert not any(line["topic"].startswith("$SYS") for line in lines)
    rules = audit_record(path).counts()
    assert rules == {"not-json": 52}      # the binary, 50 x's and "last"; the heartbeat is clean


def _wait_for(path, needle: bytes, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle.decode() in f.read_text() for f in record_files(path)):
            return True
        time.sleep(0.01)
    return False


def test_recorder_role_records_under_the_acl(tmp_path):
    users = acl.fleet_users("zephyr", ["rec-b"])
    secrets = {u: pw.new_secret() for u in users}
    pw.write_private(tmp_path / "passwd", pw.render_password_file(
        {u: pw.hash_password(s) for u, s in secrets.items()}))
    pw.write_private(tmp_path / "acl", acl.render_acl(acl.fleet_grants("zephyr", ["rec-b"])))
    broker = start_secure_broker(tmp_path / "broker", password_file=tmp_path / "passwd",
                                 acl_file=tmp_path / "acl")
    try:
        log = RotatingLog(tmp_path / "bus.jsonl")
        with BusClient(broker.host, broker.port, username="recorder",
                       password=secrets["recorder"]) as bus:
            stop, thread, box = _run_recorder(bus, log, max_messages=2)
            agent = Probe(broker, "rec-b", secrets["rec-b"])
            agent.connect()
            agent.publish("fleet/rec-b/heartbeat", b"{}")
            manager = Probe(broker, "zephyr", secrets["zephyr"])
            manager.connect()
            manager.publish("zephyr/broadcast", b"{}")
            thread.join(5)
            stop.set()
            agent.close()
            manager.close()
        log.close()
        assert sorted(line["topic"] for line in read_record(tmp_path / "bus.jsonl")) == [
            "fleet/rec-b/heartbeat", "zephyr/broadcast"]
    finally:
        broker.stop()
