"""FleetModel: captured bus messages in, judged rows out (pure, no broker)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from agent_kit import contract
from hatchery.bus.client import Message
from hatchery.core.intent import IntentBook, Stopped
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import fleetstate, live


def _inv(*names, groups=None, hosts=None):
    hosts = hosts or {}
    return Inventory(Path("/nonexistent.yaml"), manager="mgr", groups=groups or {},
                     agents={n: AgentSpec(n, heartbeat_interval=60, docker_host=hosts.get(n))
                             for n in names}, state_dir=Path("/nonexistent/.hatchery"))


def _msg(name, kind, payload, at=1000.0):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"fleet/{name}/{kind}", data, False, at)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_states_heartbeats_alerts_and_round_trips_fold_into_rows():
    model = live.FleetModel(_inv("a", "b", groups={"web": ("a",)},
                                 hosts={"b": "ssh://root@h2.example"}))
    model.observe(_msg("a", "status", contract.make_state("a", "online")))
    model.observe(_msg("a", "heartbeat", contract.make_heartbeat(
        "a", True, 5, errors={"x": 2, "y": 1})))
    model.observe(_msg("a", "alert", contract.make_alert("a", "dropped-message", count=3)))
    model.observe(_msg("a", "command", contract.make_command("version-report", "c1"), at=10.0))
    reply = contract.make_reply("a", {"id": "c1", "verb": "version-report"}, True,
                                result={"version": "Python 3.11.7"})
    model.observe(_msg("a", "status", reply, at=10.004))
    rows = {r["agent"]: r for r in model.changes_since(-1)[1]}
    assert rows["a"]["state"] == "online" and rows["a"]["errors"] == 3
    assert rows["a"]["alerts"] == 1 and rows["a"]["last_alert"] == "dropped-message"
    assert rows["a"]["version"] == "Python 3.11.7" and abs(rows["a"]["rtt_ms"] - 4.0) < 0.01
    assert rows["a"]["groups"] == ["web"] and rows["b"]["host"] == "h2.example"
    assert rows["b"]["state"] == "missing" and rows["b"]["intent"] == "running"


def test_contract_breaks_are_counted_and_versions_are_printable_text():
    model = live.FleetModel(_inv("a"))
    hostile = "<img src=x onerror=alert(1)>"
    model.observe(_msg("a", "heartbeat", {"v": 1, "ts": contract.now_rfc3339(), "agent": "a",
                                          "ok": True, "uptime": 1, "version": hostile}))
    model.observe(_msg("a", "alert", b"not json"))
    assert model.state.facts("a").invalid == 2 and model.state.facts("a").last_alert is None
    # a version-report answer is the agent's own words: shown, but as printable text only
    reply = contract.make_reply("a", {"id": "c1", "verb": "version-report"}, True,
                                result={"version": "\x1b[31mred\u202e" + "v" * 100})
    model.observe(_msg("a", "status", reply))
    [row] = model.changes_since(-1)[1]
    assert row["invalid"] == 2 and row["version"].startswith("?[31mred?vvv")
    assert len(row["version"]) == 64 and row["version"].isprintable()


def test_agents_outside_the_inventory_are_bounded():
    model = live.FleetModel(_inv("a"))
    for i in range(fleetstate.MAX_EXTRA_AGENTS + 50):
        model.observe(_msg(f"x{i}", "status", contract.make_state(f"x{i}", "online")))
    rows = model.snapshot()
    assert len(rows) == 1 + fleetstate.MAX_EXTRA_AGENTS and model.dropped_extra == 50
    assert not next(r for r in rows if r["agent"] == "x0")["in_inventory"]


def test_the_clock_alone_turns_a_silent_agent_stale_and_wakes_a_reader():
    clock = Clock(1000.0)
    model = live.FleetModel(_inv("a"), clock=clock)
    model.observe(_msg("a", "status", contract.make_state("a", "online")))
    beat = {"v": 1, "ts": "1970-01-01T00:16:30.000Z", "agent": "a", "ok": True, "uptime": 1}
    model.observe(_msg("a", "heartbeat", beat))           # ts 990
    version, rows = model.changes_since(-1)
    assert rows[0]["state"] == "online"
    clock.now = 990 + 2 * 60 + 1                          # past twice its interval
    assert model.wait_for_change(version, 3) is True
    version, rows = model.changes_since(version)
    assert [(r["agent"], r["state"]) for r in rows] == [("a", "stale")]
    assert model.wait_for_change(version, 0.01) is False  # nothing moved since


def test_intent_stopped_is_shown_and_a_retired_agent_leaves_the_page():
    book = [IntentBook()]
    clock = Clock(1000.0)
    model = live.FleetModel(_inv("a", "b", "c"), clock=clock, intent=lambda: book[0])
    for name in "abc":
        model.observe(_msg(name, "status", contract.make_state(name, "offline")))
    version, rows = model.changes_since(-1)
    assert {r["agent"]: r["state"] for r in rows} == {"a": "offline", "b": "offline", "c": "offline"}
    book[0] = IntentBook(stopped={"a": Stopped(999.0, "agent.stop")}, retired=frozenset({"b"}))
    clock.now += live.INTENT_EVERY
    version, rows = model.changes_since(version)
    assert {r["agent"]: r["state"] for r in rows} == {"a": "stopped", "b": "retired"}
    assert [r["agent"] for r in model.snapshot()] == ["a", "c"]
    assert "b" not in {r["agent"] for r in model.changes_since(-1)[1]}   # a new page never sees it


def test_a_reader_wakes_on_the_next_change():
    model = live.FleetModel(_inv("a"))
    version = model.changes_since(-1)[0]
    woke = []
    reader = threading.Thread(target=lambda: woke.append(model.wait_for_change(version, 5)))
    reader.start()
    model.observe(_msg("a", "status", contract.make_state("a", "offline")))
    reader.join(5)
    assert woke == [True]
    assert [r["agent"] for r in model.changes_since(version)[1]] == ["a"]


def test_heal_alerts_on_the_managers_topic_show_on_the_healed_agent():
    model = live.FleetModel(_inv("a", "b"))
    model.observe(_msg("mgr", "alert", contract.make_alert("b", "heal-restart", reason="offline", count=1)))
    model.observe(_msg("mgr", "alert", contract.make_alert("ghost", "heal-restart", count=1)))
    rows = {r["agent"]: r for r in model.changes_since(-1)[1]}
    assert set(rows) == {"a", "b"}                      # no "mgr" row, no "ghost" row
    assert rows["b"]["last_alert"] == "heal-restart"
