"""FleetModel: captured bus messages in, per-agent rows out (pure, no broker)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from agent_kit import contract
from hatchery.bus.client import Message
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import live


def _inv(*names, groups=None, hosts=None):
    hosts = hosts or {}
    return Inventory(Path("/nonexistent.yaml"), manager="mgr", groups=groups or {},
                     agents={n: AgentSpec(n, heartbeat_interval=60, docker_host=hosts.get(n))
                             for n in names}, state_dir=Path("/nonexistent/.hatchery"))


def _msg(name, kind, payload, at=1000.0):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"fleet/{name}/{kind}", data, False, at)


def test_states_heartbeats_alerts_and_round_trips_fold_into_rows():
    model = live.FleetModel(_inv("a", "b", groups={"web": ("a",)},
                                 hosts={"b": "ssh://root@h2.example"}))
    model.observe(_msg("a", "status", contract.make_state("a", "online")))
    model.observe(_msg("a", "heartbeat", contract.make_heartbeat(
        "a", True, 5, errors={"x": 2, "y": 1})))
    model.observe(_msg("a", "alert", contract.make_alert("a", "dropped-message", count=3)))
    model.observe(_msg("a", "command", contract.make_command("version-report", "c1"), at=10.0))
    reply = contract.make_reply("a", {"id": "c1", "verb": "version-report"}, True,
                                result={"version": "2.1.0"})
    model.observe(_msg("a", "status", reply, at=10.004))
    rows = {r["agent"]: r for r in model.changes_since(-1)[1]}
    assert rows["a"]["state"] == "online" and rows["a"]["errors"] == 3
    assert rows["a"]["alerts"] == 1 and rows["a"]["last_alert"] == "dropped-message"
    assert rows["a"]["version"] == "2.1.0" and abs(rows["a"]["rtt_ms"] - 4.0) < 0.01
    assert rows["a"]["groups"] == ["web"] and rows["b"]["host"] == "h2.example"
    assert rows["b"]["state"] == "unknown"


def test_contract_breaks_are_counted_never_kept():
    model = live.FleetModel(_inv("a"))
    hostile = "<img src=x onerror=alert(1)>"
    model.observe(_msg("a", "heartbeat", {"v": 1, "ts": contract.now_rfc3339(), "agent": "a",
                                          "ok": True, "uptime": 1, "version": hostile}))
    model.observe(_msg("a", "alert", b"not json"))
    reply = contract.make_reply("a", {"id": "c1", "verb": "version-report"}, True,
                                result={"version": hostile})
    model.observe(_msg("a", "status", reply))
    agent = model.agents["a"]
    assert agent.invalid == 2 and agent.version is None and agent.last_alert is None
    assert hostile not in json.dumps(model.changes_since(-1)[1])


def test_agents_outside_the_inventory_are_bounded():
    model = live.FleetModel(_inv("a"))
    for i in range(live.MAX_EXTRA_AGENTS + 50):
        model.observe(_msg(f"x{i}", "status", contract.make_state(f"x{i}", "online")))
    assert len(model.agents) == 1 + live.MAX_EXTRA_AGENTS and model.dropped_extra == 50
    assert not model.agents["x0"].in_inventory


def test_stale_is_shown_when_an_online_agent_goes_silent():
    agent = live.AgentLive("a", interval=10, state="online", beat_ts=100.0)
    assert agent.shown_state(115.0) == "online"
    assert agent.shown_state(121.0) == live.STALE
    assert live.AgentLive("b", interval=10, state="offline", beat_ts=0.0).shown_state(99) == "offline"


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
    assert model.wait_for_change(model.version, 0.01) is False


def test_heal_alerts_on_the_managers_topic_show_on_the_healed_agent():
    model = live.FleetModel(_inv("a", "b"))
    model.observe(_msg("mgr", "alert", contract.make_alert("b", "heal-restart", reason="offline", count=1)))
    model.observe(_msg("mgr", "alert", contract.make_alert("ghost", "heal-restart", count=1)))
    rows = {r["agent"]: r for r in model.changes_since(-1)[1]}
    assert set(rows) == {"a", "b"}                      # no "mgr" row, no "ghost" row
    assert rows["b"]["last_alert"] == "heal-restart" and rows["b"]["alerts"] == 1
