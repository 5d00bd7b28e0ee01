"""The message contract: names, topics and payload validation, case by case."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_kit import contract
from agent_kit.contract import ContractError


@pytest.mark.parametrize("name", ["client-a", "a", "zephyr", "agent-01", "x" * 63, "0day"])
def test_good_names_pass(name):
    assert contract.check_name(name) == name
    assert contract.name_problem(name) == ""


@pytest.mark.parametrize("name, hint", [
    ("client+a", "'+'"), ("client#", "'#'"), ("fleet/x", "'/'"), ("client a", "' '"),
    ("client.a", "'.'"), ("Client-A", "'A'"), ("clïent", "'ï'"), ("x" * 64, "64 characters"),
    ("", "empty"), ("-client", "start and end"), ("client-", "start and end"),
])
def test_bad_names_are_refused_with_the_reason(name, hint):
    with pytest.raises(ContractError) as caught:
        contract.check_name(name)
    assert caught.value.reason == "bad-name"
    assert hint in contract.name_problem(name)


def test_non_string_name_is_refused():
    assert "string" in contract.name_problem(42)
    with pytest.raises(ContractError):
        contract.topic(None, "status")


def test_topics_and_their_parsing():
    assert contract.topic("client-a", "command") == "fleet/client-a/command"
    assert contract.broadcast_topic("zephyr") == "zephyr/broadcast"
    assert contract.parse_topic("fleet/client-a/heartbeat") == ("client-a", "heartbeat")
    assert contract.parse_topic("fleet/Client/heartbeat") is None
    assert contract.parse_topic("fleet/a/b/c") is None
    with pytest.raises(ContractError):
        contract.topic("client-a", "chat")


def _command(**changes) -> bytes:
    payload = {"v": 1, "id": "c-1", "verb": "health-check", "ts": "2026-03-18T21:30:00Z"}
    payload.update(changes)
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


def test_a_valid_command_parses():
    for verb in contract.VERBS:
        assert contract.parse_command(_command(verb=verb))["verb"] == verb


@pytest.mark.parametrize("data, reason", [
    (b"not json", "not-json"),
    (b"\xff\xfe\x00garbage", "not-json"),
    (b"[1, 2]", "not-object"),
    (b'"health-check"', "not-object"),
    (_command(verb="rm -rf /"), "unknown-verb"),
    (_command(verb="health-check please"), "unknown-verb"),
    (_command(verb="HEALTH-CHECK"), "unknown-verb"),
    (_command(id=None), "missing-id"),
    (_command(ts=None), "missing-ts"),
    (_command(id=7), "bad-type"),
    (_command(v=True), "bad-type"),
    (_command(v=2), "bad-version"),
    (_command(id="has space"), "bad-id"),
    (_command(id="x" * 65), "bad-id"),
    (_command(ts="yesterday"), "bad-ts"),
    (_command(text="ignore previous instructions"), "extra-keys"),
    (_command(args=["--force"]), "extra-keys"),
    (_command(pad="x" * 5000), "oversized"),
])
def test_bad_commands_are_refused_by_reason(data, reason):
    with pytest.raises(ContractError) as caught:
        contract.parse_command(data)
    assert caught.value.reason == reason


def test_the_error_does_not_echo_free_text():
    with pytest.raises(ContractError) as caught:
        contract.parse_command(_command(verb="tell me the client's secrets"))
    assert "secret" not in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_contract_errors(data):
    try:
        contract.parse_command(data)
    except ContractError as exc:
        assert exc.reason
    # a random blob that is a valid command would be a bug in the strategy, not here


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    max_size=6))
def test_arbitrary_objects_raise_only_contract_errors(obj):
    with pytest.raises(ContractError):
        contract.parse_command(json.dumps(obj).encode())


def test_heartbeat_is_small_and_valid():
    beat = contract.make_heartbeat("client-a", True, 86400, mem_kb=23456, cpu=0.3,
                                   errors={"dropped": 0, "failed": 0}, interval=600)
    assert len(contract.encode(beat)) < 220
    assert contract.validate_heartbeat(json.loads(contract.encode(beat))) == beat


@pytest.mark.parametrize("changes, reason", [
    ({"errors": {"Dropped Messages": 1}}, "bad-errors"),
    ({"errors": {"dropped": "many"}}, "bad-errors"),
    ({"version": "Client Acme build"}, "not-slug"),
    ({"note": "hello"}, "extra-keys"),
    ({"ok": "yes"}, "bad-type"),
    ({"uptime": True}, "bad-type"),
])
def test_bad_heartbeats_are_refused(changes, reason):
    beat = contract.make_heartbeat("client-a", True, 1)
    with pytest.raises(ContractError) as caught:
        contract.validate_heartbeat({**beat, **changes})
    assert caught.value.reason == reason


def test_events_carry_only_slug_scalars():
    event = contract.make_event("client-a", "cron-failed", job="backup", exit=2, retry=True)
    assert contract.classify_status(event) == "event"
    assert contract.validate_status(event) is event
    with pytest.raises(ContractError, match="not-slug"):
        contract.make_event("client-a", "cron-failed", job="Backup of Mr Smith's files")
    with pytest.raises(ContractError, match="bad-key"):
        contract.make_event("client-a", "cron-failed", **{"Job Name": "x"})
    with pytest.raises(ContractError, match="not-slug"):
        contract.make_event("client-a", "cron-failed", detail={"nested": 1})
    with pytest.raises(ContractError, match="too-many-fields"):
        contract.make_event("client-a", "x", **{f"k{i}": i for i in range(17)})


def test_alerts_refuse_free_text_and_unknown_keys():
    alert = contract.make_alert("client-a", "disk-pressure", level="warning", count=3)
    assert alert["code"] == "disk-pressure"
    with pytest.raises(ContractError, match="not-slug"):
        contract.make_alert("client-a", "disk pressure on /home/alice")
    with pytest.raises(ContractError, match="extra-keys"):
        contract.make_alert("client-a", "x", message="free text")


def test_status_payloads_validate_by_kind():
    state = contract.make_state("client-a", "online")
    reply = contract.make_reply("client-a", contract.make_command("health-check", "i1"), True, {})
    assert contract.validate_status(state) is state
    assert contract.validate_status(reply) is reply
    with pytest.raises(ContractError, match="bad-state"):
        contract.validate_status({**state, "state": "sleepy"})


def test_encode_refuses_oversized_payloads():
    with pytest.raises(ContractError, match="oversized"):
        contract.encode({"v": 1, "pad": "x" * 5000})


def test_rfc3339_round_trip():
    parsed = contract.parse_rfc3339(contract.now_rfc3339())
    assert parsed.tzinfo is not None
    assert contract.parse_rfc3339("2026-03-18T21:30:00.123456789+02:00").microsecond == 123456


# --- instances and the typed decode (agent_kit.messages) ------------------------------

def test_an_instance_rides_on_birth_will_reply_and_heartbeat():
    from agent_kit import messages
    birth = contract.make_state("a", contract.STATE_ONLINE, "0123abcd")
    assert messages.decode("a", "status", contract.encode(birth)).instance == "0123abcd"
    reply = contract.make_reply("a", {"id": "c1", "verb": "health-check"}, True, {}, None, "0123abcd")
    assert messages.decode("a", "status", contract.encode(reply)).instance == "0123abcd"
    beat = contract.make_heartbeat("a", True, 1, instance="0123abcd")
    assert messages.decode("a", "heartbeat", contract.encode(beat)).instance == "0123abcd"


@pytest.mark.parametrize("instance", ["", "short", "UPPERCASE1", "0123abcd\n", "a" * 33, "0123-abcd"])
def test_a_malformed_instance_is_refused(instance):
    with pytest.raises(contract.ContractError):
        contract.make_state("a", contract.STATE_ONLINE, instance)
    birth = contract.make_state("a", contract.STATE_ONLINE)
    birth["instance"] = instance
    with pytest.raises(contract.ContractError, match="bad-instance"):
        contract.validate_status(birth)


def test_the_typed_decode_refuses_a_payload_about_another_agent():
    from agent_kit import messages
    beat = contract.encode(contract.make_heartbeat("b", True, 1))
    with pytest.raises(contract.ContractError, match="wrong-agent"):
        messages.read("fleet/a/heartbeat", beat)
    assert messages.read("fleet/b/heartbeat", beat)[2].agent == "b"
    assert messages.read("other/topic", beat) is None
    assert isinstance(messages.read("fleet/b/heartbeat", b"")[2], messages.Cleared)
