"""monitor.snapshot / stream against a real Mosquitto; build_snapshot on captured messages."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest
from responders import Responder, clear_retained, inventory, unique

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.core.intent import IntentBook, Stopped
from hatchery.observe import monitor
from hatchery.observe.fleetstate import FleetState


@pytest.fixture
def bus(module_broker):
    with BusClient(module_broker.host, module_broker.port, connect_timeout=3) as client:
        yield client


def _msg(name, kind, payload):
    data = payload if isinstance(payload, bytes) else contract.encode(payload)
    return Message(contract.topic(name, kind), data, True, time.time())


def test_build_snapshot_from_captured_messages():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    beat = {"v": 1, "ts": "2026-01-01T11:59:30.000Z", "agent": "a", "ok": True,
            "uptime": 99, "mem_kb": 4096, "cpu": 1.5, "errors": {"x": 2, "y": 3},
            "version": "9.9"}
    messages = [_msg("a", "heartbeat", beat),
                _msg("a", "status", contract.make_state("a", "online")),
                _msg("b", "status", contract.make_state("b", "offline")),
                _msg("c", "heartbeat", b"not json"),
                _msg("e", "status", contract.make_state("e", "offline")),
                _msg("stray", "status", contract.make_state("stray", "online"))]
    state = FleetState({n: 60 for n in "abcde"}, "mgr").observe_all(messages)
    book = IntentBook(stopped={"e": Stopped(now - 60, "agent.stop")}, retired=frozenset({"d"}))
    snap = monitor.build_snapshot(state, book, now)
    rows = {r["agent"]: r for r in snap.rows()}
    assert {k: rows["a"][k] for k in snap.columns} == {
        "agent": "a", "state": "online", "heartbeat_age_s": 30.0, "uptime_s": 99, "mem_kb": 4096,
        "cpu": 1.5, "errors": 5, "version": "9.9"}
    assert rows["b"]["state"] == "offline" and rows["b"]["heartbeat_age_s"] is None
    assert snap.agents["c"].invalid == 1 and rows["c"]["state"] == "missing"
    assert rows["d"]["state"] == "retired" and rows["e"]["state"] == "stopped"
    assert rows["e"]["intent"] == "stopped" and "agent.stop" in rows["e"]["reason"]
    assert rows["stray (not in inventory)"]["state"] == "stale"    # online, no heartbeat yet
    assert list(snap.agents)[:5] == ["a", "b", "c", "d", "e"]


def test_the_version_column_takes_a_version_report_answer_as_printable_text():
    state = FleetState({"a": 60, "b": 60}, "mgr")
    for name, version in (("a", "Python 3.11.7"), ("b", "v1\x1b[31m\u202e<b>" + "x" * 200)):
        command = contract.make_command("version-report", f"c-{name}")
        reply = contract.make_reply(name, command, True, result={"version": version})
        state.observe(Message(contract.topic(name, "status"), contract.encode(reply), False, time.time()))
    rows = {r["agent"]: r for r in monitor.build_snapshot(state, IntentBook(), time.time()).rows()}
    assert rows["a"]["version"] == "Python 3.11.7"
    shown = rows["b"]["version"]
    assert shown.startswith("v1?[31m?<b>x") and len(shown) == 64 and shown.isprintable()


def test_snapshot_reads_the_real_bus_quickly(module_broker, bus):
    names = [unique() for _ in range(3)]
    inv = inventory(module_broker, names)
    agents = [Responder(module_broker, n, inv.manager) for n in names[:2]]
    agents[1].crash()
    time.sleep(0.2)
    try:
        snap = monitor.snapshot(inv, bus, timeout=3)
    finally:
        agents[0].stop()
        clear_retained(module_broker, names)
    states = {r["agent"]: r["state"] for r in snap.rows()}
    assert [states[n] for n in names] == ["online", "offline", "missing"]
    assert snap.as_dict()["items"][0]["version"] == "1.2.3"
    assert snap.seconds < 0.5
    assert snap.as_dict()["items"][0]["agent"] == names[0]


def test_stream_delivers_filtered_live_events(module_broker, bus):
    name, other = unique(), unique()
    inv = inventory(module_broker, [name, other])
    got = []
    stop = threading.Event()

    def on_event(event):
        got.append(event)
        if event.kind == "heartbeat" and not event.retained:
            stop.set()

    def later():
        time.sleep(0.3)
        Responder(module_broker, other, inv.manager).stop()   # filtered out: other agent
        agent = Responder(module_broker, name, inv.manager)
        agent.stop()

    worker = threading.Thread(target=later)
    worker.start()
    try:
        count = monitor.stream(inv, bus, on_event=on_event, agents=[name],
                               kinds=["heartbeat", "status"], duration=5, stop=stop)
    finally:
        worker.join()
        clear_retained(module_broker, [name, other])
    assert count == len(got) >= 2
    assert {e.agent for e in got} == {name}
    assert got[0].kind == "status" and got[0].summary == "state online"
    beat = next(e for e in got if e.kind == "heartbeat")
    assert beat.valid and "uptime=12.5s" in beat.line()
    assert beat.as_dict()["payload"]["agent"] == name


def test_to_event_marks_bad_payloads_and_broadcasts():
    bad = monitor.to_event(Message("fleet/a/alert", b"\xff", False, time.time()), "mgr")
    assert not bad.valid and bad.summary == "dropped: not-json"
    cmd = contract.encode(contract.make_command("health-check", "abc"))
    event = monitor.to_event(Message("mgr/broadcast", cmd, False, time.time()), "mgr")
    assert (event.agent, event.kind, event.summary) == ("*", "command", "health-check id=abc")
    assert monitor.to_event(Message("other/topic", b"{}", False, time.time()), "mgr") is None


def test_stream_filters():
    assert monitor.stream_filters("m", None, list(contract.KINDS)) == ["fleet/+/+", "m/broadcast"]
    assert monitor.stream_filters("m", ["a"], ["alert"]) == ["fleet/a/alert", "fleet/m/alert"]
    assert monitor.stream_filters("m", ["a"], ["status"]) == ["fleet/a/status"]


def test_status_events_are_valid_and_named_and_a_bad_one_is_flagged():
    # bus-publish status events and the supervisor's main-exited are part of the contract
    event, alert = contract.make_main_exited("a", 137)
    seen = monitor.to_event(Message("fleet/a/status", contract.encode(event), False, time.time()), "mgr")
    assert (seen.summary, seen.valid) == ("event main-exited", True)
    seen = monitor.to_event(Message("fleet/a/alert", contract.encode(alert), False, time.time()), "mgr")
    assert seen.valid and seen.summary.startswith("main-exited")
    free_text = {**event, "note": "the agent said hello to client b"}
    seen = monitor.to_event(Message("fleet/a/status", contract.encode(free_text), False, time.time()), "mgr")
    assert seen.valid is False


def test_stream_summaries_come_from_the_typed_decode():
    def event(topic, payload):
        return monitor.to_event(Message(topic, contract.encode(payload), False, time.time()), "zephyr")
    healed = event("fleet/zephyr/alert", contract.make_alert("client-c", "heal-restart", count=1))
    assert (healed.agent, healed.valid) == ("zephyr", True)
    assert healed.summary == "heal-restart for client-c count=1"
    assert healed.line().split()[1:] == ["zephyr", "alert", "heal-restart", "for", "client-c", "count=1"]
    own = event("fleet/a/alert", contract.make_alert("a", "dropped-message", count=3))
    assert own.summary == "dropped-message count=3"
    reply = contract.make_reply("a", contract.make_command("version-report", "c9"), True,
                                result={"version": "Python 3.11.7"})
    assert event("fleet/a/status", reply).summary == "reply version-report id=c9 ok version=Python 3.11.7"
    # an agent speaks only for itself: b's heartbeat on a's topic is dropped, not shown
    forged = event("fleet/a/heartbeat", contract.make_heartbeat("b", True, 5))
    assert (forged.valid, forged.summary, forged.payload) == (False, "dropped: wrong-agent", {})


def test_a_stream_of_chosen_agents_shows_the_heals_about_them_only(module_broker, bus):
    name, other = unique(), unique()
    inv = inventory(module_broker, [name, other])
    got, stop = [], threading.Event()

    def on_event(event):
        got.append(event)
        if name in event.summary:
            stop.set()

    def later():
        time.sleep(0.3)
        with BusClient(module_broker.host, module_broker.port) as heal:
            for about in (other, name):         # in order: the one about `other` comes first
                alert = contract.make_alert(about, "heal-restart", reason="offline", count=1)
                heal.publish(contract.topic(inv.manager, "alert"), contract.encode(alert))
    worker = threading.Thread(target=later)
    worker.start()
    try:
        monitor.stream(inv, bus, on_event=on_event, agents=[name], kinds=["alert"], duration=5, stop=stop)
    finally:
        worker.join()
    assert [(e.agent, e.summary) for e in got] == [(inv.manager, f"heal-restart for {name} count=1")]
