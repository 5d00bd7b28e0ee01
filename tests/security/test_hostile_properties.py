"""Attack 6 of the threat model: data in MQTT v5 properties, beside the payload.

Free text and personal data in user properties (and content type, response
topic, correlation data) reached the manager and stayed on the broker with a
retained heartbeat; bus.audit recorded as MQTT 3.1.1 and saw none of it, and
a handler took a signed command whatever properties came with it (the
signature covers the payload only). Control: the contract names the
properties each topic may carry (``contract.ALLOWED_PROPERTIES``: Message
Expiry on commands, nothing from agents). A handler drops any other
(``bad-properties``: counted, alerted); the manager's readers count such an
agent message as invalid and ignore it; bus.record speaks v5 and keeps every
property, and bus.audit reports each disallowed and each user property and
scans their values like payload text. The attackers are raw paho v5 clients
holding the manager's or an agent's password, against the product's own
broker and handler.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent_kit import bus as kit_bus
from agent_kit import contract, signing
from hatchery.bus.connection import bus_for
from hatchery.bus.messages import Message
from hatchery.bus.requests import Pending
from hatchery.bus.commands import run_command
from hatchery.observe.fleetstate import FleetState, retained_filters
from hatchery.provision import credentials as cr
from tests.security.hostilefleet import deployed_fleet

HATCHERY = Path(sys.executable).with_name("hatchery")
EMAIL, PHONE, AWS = "john.doe@example.com", "+44 20 7946 0958", "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The product's broker (auth, ACL) and one real handler, alpha, with signed commands."""
    yield from deployed_fleet(tmp_path_factory.mktemp("props"), agents=("alpha",), interval=600, hatch=True)


def _raw(inv, user: str) -> tuple:
    """A raw paho v5 client logged in as ``user`` and its inbox."""
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, cr.stored_secret(inv, user))
    client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload))
    kit_bus.connect_and_wait(client, "127.0.0.1", inv.broker.port, 5)
    return client, inbox


def _props(**values) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def _signed(inv, command_id: str) -> bytes:
    command = contract.make_command("health-check", command_id)
    return contract.encode(signing.sign_command(command, cr.signing_keys(inv)("alpha")))


def _wait_for(inbox: queue.SimpleQueue, wanted, timeout: float) -> list:
    """Messages until one satisfies ``wanted`` (then returns all seen) or the timeout."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            topic, payload = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append((topic, json.loads(payload) if payload else {}))
        if wanted(*seen[-1]):
            return seen
    return seen


HOSTILE_ON_COMMANDS = {
    "user property": {"UserProperty": [("note", f"call {EMAIL} about the invoice")]},
    "response topic": {"ResponseTopic": "fleet/alpha/heartbeat"},
    "content type": {"ContentType": "text/plain", "MessageExpiryInterval": 30},
}


def test_a_signed_command_with_properties_is_dropped_counted_and_alerted(fleet):
    client, inbox = _raw(fleet, "zephyr")     # only the manager may write commands (ACL)
    try:
        client.subscribe([("fleet/alpha/status", 1), ("fleet/alpha/alert", 1)])
        time.sleep(0.3)
        for number, values in enumerate(HOSTILE_ON_COMMANDS.values()):
            client.publish("fleet/alpha/command", _signed(fleet, f"props-{number}"), qos=1,
                           properties=_props(**values)).wait_for_publish(5)
        # the first drop is alerted at once, the others counted (alerts are rate limited)
        seen = _wait_for(inbox, lambda t, p: t.endswith("/alert"), 5)
        alerts = [p for t, p in seen if t.endswith("/alert")]
        assert alerts and alerts[0]["reason"] == "bad-properties", seen
        seen += _wait_for(inbox, lambda t, p: False, 1.5)
        assert not [p for t, p in seen if str(p.get("id", "")).startswith("props-")], seen
        # the contract's own property passes: the same signed command with Message Expiry only
        client.publish("fleet/alpha/command", _signed(fleet, "props-ok"), qos=1,
                       properties=_props(MessageExpiryInterval=30)).wait_for_publish(5)
        seen = _wait_for(inbox, lambda t, p: p.get("id") == "props-ok", 5)
        assert seen and seen[-1][1]["ok"] is True, seen
    finally:
        client.disconnect()
        client.loop_stop()
    report = run_command(fleet, "status-report", names=["alpha"], timeout=10).replies[0]
    assert report.ok, report
    dropped = report.result["counters"]["dropped"]
    assert dropped.get("bad-properties") == len(HOSTILE_ON_COMMANDS), dropped


LEAKY = {"UserProperty": [("contact", EMAIL), ("note", "the customer asked us to call back")],
         "ContentType": base64.b64encode(AWS.encode()).decode(),
         "CorrelationData": PHONE.encode(), "ResponseTopic": "fleet/alpha/status"}


@pytest.fixture
def leaky_heartbeat(fleet):
    """alpha's own login retains a valid heartbeat that carries LEAKY properties."""
    client, _ = _raw(fleet, "alpha")
    beat = contract.encode(contract.make_heartbeat("alpha", True, 4242.0))
    client.publish("fleet/alpha/heartbeat", beat, qos=1, retain=True,
                   properties=_props(**LEAKY)).wait_for_publish(5)
    yield
    # the handler's next heartbeat is 600 s away: put a clean one back
    clean = contract.encode(contract.make_heartbeat("alpha", True, 1.0))
    client.publish("fleet/alpha/heartbeat", clean, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_an_agent_message_with_properties_is_invalid_to_the_manager(fleet, leaky_heartbeat):
    with bus_for(fleet) as manager:            # MQTT v5: it sees the properties
        retained = manager.retained_messages(retained_filters())
    beat = [m for m in retained if m.topic == "fleet/alpha/heartbeat"]
    assert beat and beat[0].properties_ok is False and "UserProperty" in beat[0].properties
    state = FleetState.for_inventory(fleet).observe_all(retained)
    facts = state.facts("alpha")
    assert facts.invalid >= 1 and state.invalid_by_kind.get("heartbeat", 0) >= 1
    assert facts.beat is None or facts.beat.uptime != 4242.0, "the leaky heartbeat was taken"
    with bus_for(fleet, role="monitor") as monitor:     # v5 too: every reader judges alike
        seen = [m for m in monitor.retained_messages(retained_filters())
                if m.topic == "fleet/alpha/heartbeat"]
    assert seen and seen[0].properties_ok is False, "the monitor must refuse what the manager refuses"


def _cli(*args, inventory) -> subprocess.CompletedProcess:
    return subprocess.run([str(HATCHERY), *args, "--inventory", str(inventory.path)],
                          capture_output=True, text=True, timeout=60)


def test_record_and_audit_see_every_property_an_agent_sent(fleet, leaky_heartbeat, tmp_path):
    record = tmp_path / "bus.jsonl"
    recorded = _cli("bus.record", "--duration", "1.5", "--out", str(record), inventory=fleet)
    assert recorded.returncode == 0, recorded.stderr
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    kept = [line for line in lines if line["topic"] == "fleet/alpha/heartbeat"]
    assert kept and kept[0]["props"]["UserProperty"][0] == ["contact", EMAIL]   # 0600, like all
    for how in (["--record", str(record)], ["--listen", "1.5"]):
        audited = _cli("bus.audit", *how, "--json", inventory=fleet)
        assert audited.returncode == 1, audited.stdout + audited.stderr
        findings = json.loads(audited.stdout)["items"]
        on_beat = [f for f in findings if f["topic"] == "fleet/alpha/heartbeat"]
        rules = {f["rule"] for f in on_beat}
        assert {"user-property", "mqtt-property", "email", "phone", "secret-token",
                "free-text"} <= rules, (how, on_beat)
        assert any("$props" in f["detail"] for f in on_beat)
        shown = json.dumps(findings)
        for secret in (EMAIL, "7946", AWS, "customer"):
            assert secret not in shown, secret


# --- the rule, without a broker ------------------------------------------------------------

def test_the_contract_allows_expiry_on_commands_and_nothing_from_agents():
    assert contract.disallowed_properties("fleet/a/command", ["MessageExpiryInterval"]) == ()
    assert contract.disallowed_properties("zephyr/broadcast", ["MessageExpiryInterval"]) == ()
    assert contract.disallowed_properties("fleet/a/command", ["UserProperty", "ContentType"]) \
        == ("ContentType", "UserProperty")
    for kind in ("heartbeat", "status", "alert"):
        assert contract.disallowed_properties(f"fleet/a/{kind}", ["MessageExpiryInterval"]) \
            == ("MessageExpiryInterval",)
    assert contract.disallowed_properties("hatchery/verify/a/selftest", ["ContentType"])
    assert contract.disallowed_properties("fleet/a/heartbeat", []) == ()


def test_received_properties_reads_every_property_paho_decodes():
    """The reader looks at paho's attributes directly (15x cheaper than isEmpty()):
    this fails if a paho upgrade stores them elsewhere."""
    props = _props(**LEAKY, MessageExpiryInterval=5, PayloadFormatIndicator=1)
    wire = props.pack()
    decoded = Properties(PacketTypes.PUBLISH)
    decoded.unpack(wire)
    assert set(kit_bus.received_properties(decoded)) == {*LEAKY, "MessageExpiryInterval",
                                                          "PayloadFormatIndicator"}
    assert kit_bus.received_properties(Properties(PacketTypes.PUBLISH)) == {}
    assert kit_bus.received_properties(None) == {}


def test_readers_drop_what_the_bus_marked():
    beat = contract.encode(contract.make_heartbeat("alpha", True, 1.0))
    state = FleetState({"alpha": 600}, "zephyr")
    state.observe(Message("fleet/alpha/heartbeat", beat, True, time.time(),
                          {"UserProperty": [("a", "b")]}, False))
    assert state.facts("alpha").beat is None and state.facts("alpha").invalid == 1
    pending = Pending(["alpha"], "health-check")
    command_id = pending.expect(["alpha"])
    reply = contract.encode(contract.make_reply(
        "alpha", contract.make_command("health-check", command_id), True, {}))
    pending.on_message(Message("fleet/alpha/status", reply, False, time.time(),
                               {"ContentType": "x"}, False))
    assert not pending.settled()
    pending.on_message(Message("fleet/alpha/status", reply, False, time.time()))
    assert pending.settled()
