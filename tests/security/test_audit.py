"""bus.audit over recorded sessions: every planted violation found, a clean one silent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hatchery.observe.audit import (
    BusMessage,
    audit_lines,
    audit_messages,
    audit_record,
    check_message,
)
from hatchery.observe.record import entry_payload
from hatchery.security import pii

DATA = Path(__file__).parent / "data"
MANAGER = "zephyr"
# The data planted in session_planted.jsonl: none of it may appear in a finding.
PLANTED = ["jane.roe@example.org", "415-555-0123", "4111111111111111", "GB82 WEST",
           "123-45-6789", "JG 10 37 42 B", "AKIAIOSFODNN7EXAMPLE", "ghp_R8x2Lq9Z",
           "xoxb-2048", "eyJhbGciOiJIUzI1NiJ9", "q7Zp3Xv9LmK2", "john.doe", "vault was locked"]


def _lines(name: str) -> list:
    out = []
    for number, text in enumerate((DATA / name).read_text().splitlines(), 1):
        try:
            out.append(json.loads(text))
        except ValueError:
            out.append({"corrupt": number, "file": name})
    return out


def test_clean_session_reports_nothing():
    result = audit_lines(_lines("session_clean.jsonl"), manager=MANAGER)
    assert result.messages == 12
    assert result.findings == [], [str(f) for f in result.findings]
    assert result.ok and result.exit_status() == 0


def _planted_cases():
    return [pytest.param(line, id=f"{line['time'][-9:-5]}-{'+'.join(line['expect'])}")
            for line in _lines("session_planted.jsonl") if "expect" in line]


@pytest.mark.parametrize("line", _planted_cases())
def test_each_planted_violation_is_found(line):
    message = BusMessage(line["topic"], entry_payload(line), line["time"], line["retain"])
    findings = check_message(message, manager=MANAGER)
    assert sorted({f.rule for f in findings}) == sorted(line["expect"])
    assert all(f.time == line["time"] for f in findings)


def test_planted_session_as_a_whole():
    result = audit_lines(_lines("session_planted.jsonl"), manager=MANAGER)
    rules = set(result.counts())
    assert rules >= {"unknown-topic", "unknown-verb", "not-json", "oversized", "free-text",
                     "email", "phone", "card-number", "iban", "national-id", "secret-token",
                     "high-entropy", "schema", "agent-mismatch", "corrupt-record"}
    assert result.exit_status() == 1 and not result.ok
    assert result.as_dict()["counts"]["secret-token"] == 4


def test_findings_never_echo_the_data():
    result = audit_lines(_lines("session_planted.jsonl"), manager=MANAGER)
    text = json.dumps(result.as_dict()) + "\n".join(str(f) for f in result.findings)
    for secret in PLANTED:
        assert secret not in text, secret
    assert "j***@e***.org" in text and "****1111" in text and "***-**-6789" in text


def test_a_topic_carrying_data_is_masked_in_the_finding():
    [finding, *_] = check_message(BusMessage("fleet/john.doe@example.com/status", b"{}"),
                                  manager=MANAGER)
    assert finding.topic == "fleet/<j***@e***.com>/status"


def test_broadcast_of_another_manager_is_an_unknown_topic():
    payload = json.dumps({"v": 1, "ts": "2026-03-18T21:30:00Z", "id": "x",
                          "verb": "health-check"}).encode()
    assert check_message(BusMessage("zephyr/broadcast", payload), manager=MANAGER) == []
    rules = {f.rule for f in check_message(BusMessage("mallory/broadcast", payload),
                                           manager=MANAGER)}
    assert rules == {"unknown-topic"}


def test_audit_record_reads_rotated_files_in_order(tmp_path):
    lines = _lines("session_clean.jsonl")
    path = tmp_path / "bus.jsonl"
    (tmp_path / "bus.jsonl.1").write_text("".join(json.dumps(l) + "\n" for l in lines[:5]))
    path.write_text("".join(json.dumps(l) + "\n" for l in lines[5:]))
    result = audit_record(path, manager=MANAGER)
    assert result.messages == len(lines) and result.ok


@pytest.mark.parametrize("text, rules", [
    ("call 020 7946 0958 today", {"phone"}),
    ("host 192.168.100.200 build 10.0.19045", set()),
    ("epoch 1742333400123 and uuid 550e8400-e29b-41d4-a716-446655440000", set()),
    ("card 5555-5555-5555-4444", {"card-number"}),
    ("card 4111 1111 1111 1112", set()),                 # fails Luhn
    ("iban DE89 3704 0044 0532 0130 01", set()),          # fails mod 97
    ("-----BEGIN OPENSSH PRIVATE KEY-----", {"secret-token"}),
])
def test_detectors_on_lookalikes(text, rules):
    assert {h.rule for h in pii.scan(text)} == rules


# --- robustness ----------------------------------------------------------------------

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=60)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=30)
_topics = st.one_of(st.sampled_from(["fleet/a/heartbeat", "fleet/a/status", "fleet/a/alert",
                                     "fleet/a/command", "zephyr/broadcast", "x"]),
                    st.text(max_size=40))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_topics, st.binary(max_size=6000))
def test_random_bytes_never_crash_the_auditor(topic, payload):
    result = audit_messages([BusMessage(topic, payload, "t")], manager=MANAGER)
    assert result.messages == 1
    assert all(f.rule and f.time == "t" for f in result.findings)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_topics, _json)
def test_random_json_never_crashes_the_auditor(topic, value):
    payload = json.dumps(value).encode()
    result = audit_messages([BusMessage(topic, payload)], manager=MANAGER)
    assert isinstance(result.exit_status(), int)


def test_deeply_nested_json_is_reported_not_raised():
    payload = b"[" * 2000 + b"]" * 2000
    rules = {f.rule for f in check_message(BusMessage("fleet/a/status", payload))}
    assert rules == {"not-json"}


def test_corrupt_record_lines_are_findings(tmp_path):
    path = tmp_path / "bus.jsonl"
    path.write_text('{"time":"t","topic":"fleet/a/heartbeat","size":0,"retain":false,"text":""}\n'
                    '{"time":"t2","topic":"fle\n[1,2]\n')
    result = audit_record(path, manager=MANAGER)
    assert [f.rule for f in result.findings] == ["corrupt-record", "corrupt-record"]
    assert result.messages == 1


def test_heal_alerts_on_the_managers_topic_are_not_agent_mismatches():
    from agent_kit import contract
    heal = contract.encode(contract.make_alert("client-a", "heal-restart", reason="offline", count=1,
                                               level="warning")).decode()
    assert check_message(BusMessage("fleet/zephyr/alert", heal.encode(), "t", False), manager=MANAGER) == []
    # the same payload on another agent's topic still is one
    [finding] = check_message(BusMessage("fleet/client-b/alert", heal.encode(), "t", False), manager=MANAGER)
    assert finding.rule == "agent-mismatch"
