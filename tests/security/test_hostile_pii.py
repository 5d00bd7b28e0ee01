"""Attack 6 of the threat model: personal data spelled so that the audit misses it.

None of these raised a finding before: an e-mail as a slug, split across keys
or hex-encoded; a card with dots, as a float or split across four integers; a
lowercase IBAN; a phone as ``0044-..`` or a bare integer; base64 in a reply's
``result.version`` or ``id``; an AWS key in hex; fullwidth digits, look-alike
letters and zero-width characters. Round 2: an e-mail as the keys of a
heartbeat's ``errors`` (``john``, ``doe``, ``example``, ``com``, or
``john_at_example``, ``dot_com``), and a random token, a password or an API
key in base64 or hex in ``result.version``. Control: the audit normalises before it
matches (NFKC, invisible characters dropped, look-alikes mapped, hex and
base64 decoded, ``at``/``dot`` spelled e-mails, ``00`` prefixes, numbers and
neighbouring fields joined). The attacker publishes with raw paho; the
record and audit are the product's.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.observe import audit
from hatchery.observe import record as rec
from hatchery.security import pii

AGENT = "mole"
EMAIL = "john.doe@example.com"
CARD = "4111111111111111"
AWS = "AKIAIOSFODNN7EXAMPLE"


def _beat(**extra) -> dict:
    return {**contract.make_heartbeat(AGENT, True, 1.0), **extra}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _reply(**extra) -> dict:
    command = contract.make_command("version-report", "c1")
    return {**contract.make_reply(AGENT, command, True, result={"version": "1.0"}), **extra}


EVASIONS = {
    "email as a slug": ("heartbeat", _beat(version="john.doe.at.example.com"), pii.EMAIL),
    "email as a dashed slug": ("heartbeat", _beat(version="john-doe-at-example-com"), pii.EMAIL),
    "email split across keys": ("heartbeat", _beat(errors={"a": 1}, version="john.doe",
                                                   **{"x-mail": "@example.com"}), pii.EMAIL),
    "email in hex": ("heartbeat", _beat(version=EMAIL.encode().hex()), pii.EMAIL),
    "email fullwidth": ("heartbeat", _beat(version="ｊｏｈｎ.ｄｏｅ＠ｅｘａｍｐｌｅ.ｃｏｍ"), pii.EMAIL),
    "email with homoglyphs": ("heartbeat", _beat(version="jоhn.dое@ехаmple.com"), pii.EMAIL),
    "email with zero-width": ("heartbeat", _beat(version="john\u200b.doe@exa\u200dmple.com"), pii.EMAIL),
    "card with dots": ("heartbeat", _beat(version="4111.1111.1111.1111"), pii.CARD),
    "card as a float": ("heartbeat", _beat(uptime=4111111111111111.0), pii.CARD),
    "card split across 4 integers": ("heartbeat", _beat(errors={"a": 4111, "b": 1111, "c": 1111,
                                                                 "d": 1111}), pii.CARD),
    "card in fullwidth digits": ("heartbeat", _beat(version="４１１１１１１１１１１１１１１１"), pii.CARD),
    "lowercase iban": ("heartbeat", _beat(version="gb82west12345698765432"), pii.IBAN),
    "phone with 00 prefix": ("heartbeat", _beat(version="0044-20-7946-0958"), pii.PHONE),
    "phone as a bare integer": ("heartbeat", _beat(mem_kb=442079460958), pii.PHONE),
    "base64 in result.version": ("status", _reply(result={"version": base64.b64encode(
        EMAIL.encode()).decode()}), pii.EMAIL),
    "base64 in a reply id": ("status", _reply(id=base64.urlsafe_b64encode(
        EMAIL.encode()).decode().rstrip("=")), pii.EMAIL),
    "aws key in hex": ("heartbeat", _beat(version=AWS.encode().hex()), pii.SECRET),
    "aws key in base64": ("alert", {**contract.make_alert(AGENT, "x"), "reason": base64.b64encode(
        AWS.encode()).decode()}, pii.SECRET),
    # round 2 (issue 18, item 9)
    "email over the errors keys": ("heartbeat", _beat(errors={"john": 1, "doe": 1, "example": 1,
                                                              "com": 1}), pii.EMAIL),
    "email over the errors keys, spelled": ("heartbeat", _beat(errors={"john_at_example": 1,
                                                                       "dot_com": 1}), pii.EMAIL),
    "email over keys, co.uk": ("heartbeat", _beat(errors={"jdoe": 0, "example": 0, "co": 0,
                                                          "uk": 0}), pii.EMAIL),
    "email over keys, look-alikes": ("heartbeat", _beat(errors={"jоhn": 1, "exаmple": 1,
                                                                "com": 1}), pii.EMAIL),
    "email over reply fields in words": ("status", _reply(result={"a": "john", "b": "example",
                                                                  "c": "com"}), pii.EMAIL),
    "email with underscores": ("heartbeat", _beat(version="john_at_example_dot_com"), pii.EMAIL),
    "phone over reply fields": ("status", _reply(result={"a": "+44", "b": "20", "c": "7946",
                                                         "d": "0958"}), pii.PHONE),
    "random token in base64 in result.version": ("status", _reply(result={"version": _b64(
        "q8Zx3N0vT1mKpR7wYbE2sLdF9hJcA4uG6iVnXoW5yQe")}), pii.HIGH_ENTROPY),
    "password in base64 in result.version": ("status", _reply(result={"version": _b64(
        "password=hunter2-correct")}), pii.SECRET),
    "api key in hex in result.version": ("status", _reply(result={
        "version": f"sk-proj-{'Ab3dEf6hIj9kLm2nOp5q'}".encode().hex()}), pii.SECRET),
    "email in base64 in any result key": ("status", _reply(result={"build": _b64(EMAIL)}),
                                          pii.EMAIL),
}


def _message(kind: str, payload: dict) -> audit.BusMessage:
    return audit.BusMessage(contract.topic(AGENT, kind), json.dumps(payload).encode(),
                            contract.now_rfc3339())


@pytest.mark.parametrize("name", list(EVASIONS))
def test_the_audit_finds_data_however_it_is_spelled(name):
    kind, payload, rule = EVASIONS[name]
    findings = audit.check_message(_message(kind, payload))
    assert rule in {f.rule for f in findings}, (name, [str(f) for f in findings])
    for finding in findings:       # and never repeats what it found
        for secret in (EMAIL, CARD, AWS, "7946", "john", "doe"):
            assert secret not in finding.detail and secret not in finding.topic


CLEAN = [_beat(), _beat(version="openclaw-1.4.2"), _beat(version="2.0.11-deb12u1"),
         _beat(errors={"cron": 0, "dns": 3}, uptime=86400, mem_kb=16777216, interval=30),
         _reply(result={"version": "1.4.2", "uptime": 1795792816}),
         _beat(version="a3f9c2e", uptime=1795792816123), _beat(version="build-20260318"),
         _beat(version="v10.250.2.2"), _beat(version="data-at-rest"),
         {**contract.make_alert(AGENT, "dropped-message"), "count": 12, "suppressed": 3},
         # keys and values in a row that are not an address (issue 18, round 2)
         _beat(errors={"dropped": 0, "failed": 2}), _beat(errors={"cron": 0, "dns": 3, "disk": 1}),
         _beat(errors={"timeout": 0, "tls": 1, "http": 4, "api": 2}),
         _reply(result={"error": 0, "warn": 2, "info": 10}),
         _reply(result={"version": "a3f9c2e4b1d0c9e8f7a6b5c4d3e2f1a0b9c8d7e6", "ok": "at-home"}),
         _reply(result={"uptime": 86400, "pid": 4242, "handler_version": "0.9.0",
                        "python": "3.11.7", "counters": {"received": 12, "answered": 11,
                                                         "failed": 0, "duplicates": 1},
                        "connected_since": "2026-03-18T21:30:00.123Z", "mem_kb": 51200}),
         _reply(result={"version": "1.4.2", "ip": "172.18.0.5", "build": "20260318"})]


@pytest.mark.parametrize("payload", CLEAN)
def test_clean_telemetry_raises_nothing(payload):
    kind = "status" if payload.get("kind") == "reply" else \
        "alert" if payload.get("kind") == "alert" else "heartbeat"
    assert audit.check_message(_message(kind, payload)) == []


def test_every_evasion_is_found_on_a_real_bus(broker, tmp_path):
    """Raw paho publishes every evasion; bus.record records, bus.audit reads the record."""
    path = tmp_path / "bus.jsonl"
    log = rec.RotatingLog(path)
    stop, ready = threading.Event(), threading.Event()
    with BusClient(broker.host, broker.port) as bus:
        worker = threading.Thread(target=rec.record, args=(bus, log),
                                  kwargs={"stop": stop, "ready": ready})
        worker.start()
        try:
            assert ready.wait(5)
            attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            attacker.connect(broker.host, broker.port)
            attacker.loop_start()
            for kind, payload, _ in EVASIONS.values():
                attacker.publish(contract.topic(AGENT, kind), json.dumps(payload).encode(),
                                 qos=1).wait_for_publish(5)
            attacker.disconnect()
            attacker.loop_stop()
            deadline = time.monotonic() + 5
            while sum(1 for _ in rec.read_record(path)) < len(EVASIONS) and time.monotonic() < deadline:
                log.flush()
                time.sleep(0.05)
        finally:
            stop.set()
            worker.join(10)
    log.close()
    result = audit.audit_record(path)
    assert result.messages == len(EVASIONS)
    wanted = Counter(rule for _, _, rule in EVASIONS.values())
    counts = result.counts()
    assert all(counts.get(rule, 0) >= n for rule, n in wanted.items()), (wanted, counts)
