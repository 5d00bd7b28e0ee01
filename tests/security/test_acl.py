"""The rendered ACL, and a real Mosquitto enforcing it (no anonymous, per-user blocks)."""

from __future__ import annotations

import json
import queue
import time
import uuid

import pytest

from agent_kit import contract
from hatchery.errors import UsageError
from hatchery.security import acl
from hatchery.security import passwords as pw
from tests.security.secbroker import Probe, start_fleet_broker

MANAGER = "zephyr"


def test_render_has_one_explicit_block_per_user_and_no_patterns():
    text = acl.render_acl(acl.fleet_grants(MANAGER, ["client-a", "client-b"]))
    assert "pattern" not in text
    block = text.split("user client-a\n")[1].split("\n\n")[0].splitlines()
    assert block == ["topic write fleet/client-a/heartbeat", "topic write fleet/client-a/status",
                     "topic write fleet/client-a/alert", "topic read fleet/client-a/command",
                     "topic read zephyr/broadcast", "topic write hatchery/verify/client-a/selftest"]
    manager = text.split("user zephyr\n")[1].split("\n\n")[0].splitlines()
    assert manager == ["topic write fleet/+/command", "topic write fleet/zephyr/alert",
                       "topic write zephyr/broadcast",
                       "topic read fleet/#", "topic readwrite hatchery/probe/#",
                       "topic read $SYS/broker/uptime", "topic readwrite hatchery/verify/#"]
    for reader in ("monitor", "exporter"):
        assert f"user {reader}\ntopic read fleet/#\n" in text
        assert f"user {reader}\ntopic read fleet/#\ntopic readwrite hatchery/probe/#\n" \
               "topic read $SYS/broker/uptime\n" in text
    assert "user recorder\ntopic read #\n" in text
    # no topic line before the first user block: anonymous would get it
    before_first_user = text.split("\nuser ")[0]
    assert "topic" not in before_first_user.replace("# No topic", "")


def test_no_agent_grant_mentions_another_agent_or_a_wildcard():
    grants = acl.fleet_grants(MANAGER, ["a", "b", "c"])
    for name in ("a", "b", "c"):
        for grant in grants[name]:
            private = grant.topic == f"hatchery/verify/{name}/selftest"   # its own verify topic
            assert private or ("#" not in grant.topic and "+" not in grant.topic)
            assert (grant.topic.startswith(f"fleet/{name}/") or private
                    or grant.topic == "zephyr/broadcast")


@pytest.mark.parametrize("manager, agents", [
    ("zephyr", ["a", "a"]), ("zephyr", ["zephyr"]), ("zephyr", ["monitor"]),
    ("zephyr", ["fleet/#"]), ("Zephyr", ["a"]), ("zephyr", ["a+b"])])
def test_fleet_grants_refuse_clashing_or_unsafe_names(manager, agents):
    with pytest.raises(UsageError):
        acl.fleet_grants(manager, agents)


def test_fleet_users_lists_every_role():
    assert acl.fleet_users(MANAGER, ["a"]) == ["zephyr", "a", "monitor", "exporter", "recorder"]


# --- a real broker ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A broker with password file + ACL for zephyr, agents a/b, monitor and recorder."""
    tmp = tmp_path_factory.mktemp("acl")
    suffix = uuid.uuid4().hex[:6]
    agents = [f"a-{suffix}", f"b-{suffix}"]
    broker, secrets = start_fleet_broker(tmp, MANAGER, agents)
    probes = []

    def connect(user, password=None):
        probe = Probe(broker, user, secrets[user] if password is None else password)
        reason = probe.connect()
        assert not reason.is_failure, (user, reason)
        probes.append(probe)
        return probe

    yield {"broker": broker, "agents": agents, "secrets": secrets, "connect": connect,
           "passwd": tmp / "passwd"}
    for probe in probes:
        probe.close()
    broker.stop()


def _heartbeat(agent: str) -> bytes:
    return json.dumps({"v": 1, "ts": contract.now_rfc3339(), "agent": agent, "ok": True,
                       "uptime": 1}).encode()


def _drain(probe: Probe) -> list:
    got = []
    while True:
        try:
            got.append(probe.inbox.get_nowait())
        except queue.Empty:
            return got


def test_agent_subscribing_to_everything_sees_nothing_of_others(fleet):
    a, b = fleet["agents"]
    spy = fleet["connect"](a)
    spy.subscribe("fleet/#")
    spy.subscribe("#")
    other = fleet["connect"](b)
    other.publish(contract.topic(b, "heartbeat"), _heartbeat(b))
    manager = fleet["connect"](MANAGER)
    manager.publish(contract.topic(b, "command"), b"{}")
    # a sentinel the spy may read: once it arrives, everything before it would have too
    manager.publish(contract.topic(a, "command"), b"sentinel")
    topic, _ = spy.receive()
    assert topic == contract.topic(a, "command")
    assert [t for t, _ in _drain(spy) if b in t] == []


def test_agent_cannot_publish_as_another_agent_or_send_commands(fleet):
    a, b = fleet["agents"]
    watcher = fleet["connect"](MANAGER)
    assert not watcher.subscribe("fleet/#")[0].is_failure
    target = fleet["connect"](b)
    target.subscribe(contract.topic(b, "command"))
    attacker = fleet["connect"](a)
    attacker.publish(contract.topic(b, "heartbeat"), _heartbeat(b))
    attacker.publish(contract.topic(b, "command"), b'{"verb":"config-reload"}')
    attacker.publish(contract.topic(a, "heartbeat"), _heartbeat(a))    # its own: allowed
    topic, payload = watcher.receive()
    assert topic == contract.topic(a, "heartbeat") and json.loads(payload)["agent"] == a
    assert _drain(watcher) == [] and _drain(target) == []


def test_agent_receives_its_commands_and_the_broadcast(fleet):
    a, _ = fleet["agents"]
    agent = fleet["connect"](a)
    agent.subscribe(contract.topic(a, "command"))
    agent.subscribe(contract.broadcast_topic(MANAGER))
    manager = fleet["connect"](MANAGER)
    manager.publish(contract.topic(a, "command"), b"one")
    manager.publish(contract.broadcast_topic(MANAGER), b"all")
    assert {agent.receive()[1], agent.receive()[1]} == {b"one", b"all"}


def test_agent_cannot_broadcast(fleet):
    a, b = fleet["agents"]
    listener = fleet["connect"](b)
    listener.subscribe(contract.broadcast_topic(MANAGER))
    fleet["connect"](a).publish(contract.broadcast_topic(MANAGER), b"forged")
    fleet["connect"](MANAGER).publish(contract.broadcast_topic(MANAGER), b"real")
    assert listener.receive()[1] == b"real"
    assert _drain(listener) == []


def test_monitor_reads_the_fleet_but_cannot_command(fleet):
    a, _ = fleet["agents"]
    agent = fleet["connect"](a)
    agent.subscribe(contract.topic(a, "command"))
    monitor = fleet["connect"]("monitor")
    monitor.subscribe("fleet/#")
    monitor.publish(contract.topic(a, "command"), b"from-monitor")
    agent.publish(contract.topic(a, "status"), b"status")
    assert monitor.receive() == (contract.topic(a, "status"), b"status")
    fleet["connect"](MANAGER).publish(contract.topic(a, "command"), b"from-manager")
    assert agent.receive()[1] == b"from-manager"


@pytest.mark.parametrize("user, password", [("monitor", "wrong"), (None, None), ("ghost", "x")])
def test_wrong_password_unknown_user_and_anonymous_are_refused(fleet, user, password):
    probe = Probe(fleet["broker"], user, password)
    assert probe.connect().is_failure


def test_verify_round_trip_topics_are_private_to_each_agent(fleet):
    a, b = fleet["agents"]
    agent = fleet["connect"](a)
    manager = fleet["connect"](MANAGER)
    manager.subscribe("hatchery/verify/#")
    spy = fleet["connect"](b)
    spy.subscribe("hatchery/verify/#")
    agent.subscribe(f"hatchery/verify/{a}/selftest")            # granted, but never delivered
    agent.publish(f"hatchery/verify/{a}/selftest", b"ping")
    assert manager.receive() == (f"hatchery/verify/{a}/selftest", b"ping")
    spy.publish(f"hatchery/verify/{a}/selftest", b"intrusion")       # refused: not b's space
    agent.publish(f"hatchery/verify/{a}/selftest", b"again")
    assert manager.receive()[1] == b"again"
    # an agent reads no topic it can write: nothing of its own comes back to it
    time.sleep(0.3)
    assert _drain(spy) == [] and _drain(agent) == [] and _drain(manager) == []


def test_revoked_user_cannot_connect_after_sighup(fleet):
    broker, passwd = fleet["broker"], fleet["passwd"]
    probe = fleet["connect"]("exporter")          # works before the revocation
    hashes = pw.read_password_file(passwd)
    del hashes["exporter"]
    pw.write_private(passwd, pw.render_password_file(hashes))
    broker.hup()
    assert _refused_within(broker, "exporter", fleet["secrets"]["exporter"], 5.0)
    # the open session is re-checked on reload too: the revoked client is dropped
    deadline = time.monotonic() + 5
    while probe.client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not probe.client.is_connected()


def _refused_within(broker, user: str, password: str, timeout: float) -> bool:
    """SIGHUP is handled asynchronously: retry until the broker refuses ``user``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = Probe(broker, user, password)
        if probe.connect().is_failure:
            return True
        probe.close()
        time.sleep(0.02)
    return False
