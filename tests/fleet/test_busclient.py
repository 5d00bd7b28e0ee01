"""BusClient against a real Mosquitto: connect errors, publish, retained, ping, request."""

from __future__ import annotations

import time

import pytest
from responders import Responder, clear_retained, free_port, start_broker, unique

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.errors import BusError, UsageError


@pytest.fixture
def bus(module_broker):
    with BusClient(module_broker.host, module_broker.port, connect_timeout=3) as client:
        yield client


def test_unreachable_broker_raises_bus_error_with_fix():
    with pytest.raises(BusError) as err:
        BusClient("127.0.0.1", free_port(), connect_timeout=1).connect()
    assert "broker.deploy" in err.value.fix
    assert "cannot connect" in err.value.message


def test_publish_then_retained_snapshot_reads_it_back(module_broker, bus):
    topic = f"hatchery/test/{unique()}"
    bus.publish(topic, b"kept", retain=True, timeout=3)
    try:
        with BusClient(module_broker.host, module_broker.port) as fresh:
            started = time.perf_counter()
            got = fresh.retained([topic, f"hatchery/test/{unique()}"], timeout=3)
            elapsed = time.perf_counter() - started
    finally:
        bus.publish(topic, b"", retain=True, timeout=3)
    assert got == {topic: b"kept"}
    assert elapsed < 0.5, "the marker, not a fixed wait, ends a snapshot"


def test_ping_measures_a_round_trip(bus):
    samples = [bus.ping(timeout=3) for _ in range(5)]
    assert all(0 < ms < 100 for ms in samples)


def test_subscribe_collect_gets_messages_in_order(bus):
    topic = f"hatchery/test/{unique()}"
    import threading
    timer = threading.Timer(0.1, lambda: [bus.publish(topic, str(i).encode(), timeout=3)
                                          for i in range(3)])
    timer.start()
    got = bus.subscribe_collect([topic], 0.5)
    timer.join()
    assert [m.payload for m in got] == [b"0", b"1", b"2"]


def test_request_classifies_answered_failed_offline_silent(module_broker, bus):
    manager = unique("mgr")
    ok, bad, mute, gone = (unique(p) for p in ("ok", "bad", "mute", "gone"))
    agents = [Responder(module_broker, ok, manager),
              Responder(module_broker, bad, manager, mode="fail"),
              Responder(module_broker, mute, manager, mode="mute"),
              Responder(module_broker, gone, manager)]
    agents[3].crash()
    never = unique("never")
    time.sleep(0.2)  # let the broker publish the crashed agent's Will
    try:
        replies = bus.request([ok, bad, mute, gone, never], "version-report", timeout=1.0)
    finally:
        for a in agents[:3]:
            a.stop()
        clear_retained(module_broker, [ok, bad, mute, gone])
    by_name = {r.agent: r for r in replies}
    assert [r.agent for r in replies] == [ok, bad, mute, gone, never]
    assert by_name[ok].state == "answered" and by_name[ok].ok
    assert by_name[ok].result == {"version": "1.2.3"}
    assert 0 < by_name[ok].rtt_ms < 500
    assert by_name[bad].state == "failed" and by_name[bad].error == "reload-failed"
    assert by_name[mute].state == "silent"
    assert by_name[gone].state == "offline"
    assert by_name[never].state == "silent"
    assert len({r.id for r in replies}) == 5, "a fresh id per agent"


def test_request_returns_early_when_everyone_answered(module_broker, bus):
    manager = unique("mgr")
    names = [unique() for _ in range(3)]
    agents = [Responder(module_broker, n, manager) for n in names]
    try:
        started = time.perf_counter()
        replies = bus.request(names, "health-check", timeout=5.0)
        elapsed = time.perf_counter() - started
    finally:
        for a in agents:
            a.stop()
        clear_retained(module_broker, names)
    assert all(r.state == "answered" for r in replies)
    assert elapsed < 1.0


def test_broadcast_request_sends_one_command(module_broker, bus):
    manager = unique("mgr")
    names = [unique() for _ in range(3)]
    agents = [Responder(module_broker, n, manager) for n in names]
    try:
        replies = bus.request(names, "health-check", timeout=3.0, broadcast_manager=manager)
    finally:
        for a in agents:
            a.stop()
        clear_retained(module_broker, names)
    assert all(r.state == "answered" for r in replies)
    assert len({r.id for r in replies}) == 1
    for a in agents:
        assert [t for t, _ in a.commands] == [contract.broadcast_topic(manager)]


def test_command_carries_message_expiry(module_broker, bus):
    name = unique()
    got = []
    import paho.mqtt.client as mqtt
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect(module_broker.host, module_broker.port)
    sub.subscribe(contract.topic(name, "command"), 1)
    sub.loop_start()
    time.sleep(0.2)
    try:
        bus.request([name], "status-report", timeout=0.3)
        time.sleep(0.1)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert len(got) == 1
    command = contract.parse_command(got[0].payload)
    assert command["verb"] == "status-report"
    assert 0 < got[0].properties.MessageExpiryInterval <= 1


def test_request_refuses_an_unknown_verb_and_a_bad_name(bus):
    with pytest.raises(UsageError):
        bus.request(["a"], "rm -rf", timeout=1)
    with pytest.raises(UsageError):
        bus.request(["a/#"], "health-check", timeout=1)


def test_refused_login_raises_bus_error_naming_credentials(tmp_path):
    import shutil
    import subprocess
    passwd = tmp_path / "passwd"
    subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c",
                    str(passwd), "zephyr", "s3cret"], check=True, timeout=10)
    passwd.chmod(0o600)
    secured = start_broker(tmp_path / "b", extra=f"allow_anonymous false\npassword_file {passwd}\n")
    try:
        with pytest.raises(BusError) as err:
            BusClient(secured.host, secured.port, username="zephyr", password="wrong",
                      connect_timeout=3).connect()
        with BusClient(secured.host, secured.port, username="zephyr", password="s3cret") as ok:
            assert ok.ping(timeout=3) > 0
    finally:
        secured.stop()
    assert "refused" in err.value.message and "password" in err.value.fix


def test_the_manager_sets_tcp_nodelay_and_backs_off_from_1_to_5s(bus):
    """As agent_kit's paho factory does for every agent: a QoS 1 round trip on
    loopback drops from ~88 ms to well under 1 ms with TCP_NODELAY."""
    import socket

    from hatchery.bus import link
    assert bus._link._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert link.BACKOFF == (1.0, 5.0)


def test_a_restarted_broker_is_reconnected_and_resubscribed(broker):
    topic = f"hatchery/test/{unique()}"
    got = []
    with BusClient(broker.host, broker.port, connect_timeout=3) as client:
        with client.listen([topic], got.append, qos=1):
            broker.restart()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not got:
                try:
                    client.publish(topic, b"again", timeout=1)
                except BusError:
                    pass          # not reconnected yet
                time.sleep(0.2)
        assert client._link.reconnects >= 1
    assert got and got[0].payload == b"again"


def test_the_kits_bus_error_never_escapes_the_control_side():
    from agent_kit import bus as kit
    with pytest.raises(BusError) as err:
        BusClient("127.0.0.1", free_port(), connect_timeout=1).connect()
    assert not isinstance(err.value, kit.BusError)
    assert err.value.exit_code == 3 and err.value.fix


def test_an_idle_link_keeps_itself_alive_with_pings(module_broker):
    """The broker drops a client silent for 1.5 x its keepalive: a 2 s keepalive, 5 s idle."""
    from hatchery.bus.link import Endpoint, Link, Login
    link = Link(Endpoint(module_broker.host, module_broker.port),
                Login(f"idle-{unique()}", keepalive=2), on_messages=lambda batch: None,
                on_reconnect=lambda: None)
    link.open(3)
    try:
        time.sleep(5)
        assert link.connected and link.reconnects == 0
        ticket = link.publish(f"hatchery/test/{unique()}", b"still here", qos=1)
        assert link.wait(ticket, 3)
    finally:
        link.close()
