"""Fleet operations (run_command, collect, broadcast) against a real Mosquitto."""

from __future__ import annotations

import pytest
from responders import Responder, clear_retained, inventory, unique

from agent_kit import contract
from hatchery.bus import commands as fleet
from hatchery.errors import UsageError


@pytest.fixture
def small_fleet(module_broker):
    """Three agents: two answer, one is mute; groups 'web' (first two) and 'all'."""
    names = [unique("web"), unique("web"), unique("db")]
    inv = inventory(module_broker, names, groups={"web": tuple(names[:2])})
    agents = [Responder(module_broker, names[0], inv.manager, version="2.0"),
              Responder(module_broker, names[1], inv.manager, version="2.1"),
              Responder(module_broker, names[2], inv.manager, mode="mute")]
    yield inv, agents
    for a in agents:
        a.stop()
    clear_retained(module_broker, names)


def test_run_command_on_a_group_is_ok_and_shows_versions(small_fleet):
    inv, agents = small_fleet
    result = fleet.run_command(inv, "version-report", group="web", timeout=2)
    assert result.ok
    assert [row["answer"] for row in result.rows()] == ["2.0", "2.1"]
    assert set(result.rows()[0]) == set(result.columns)
    assert result.missing == [] and result.problems == []
    assert agents[2].commands == [], "the db agent was not targeted"


def test_run_command_reports_the_silent_agent(small_fleet):
    inv, _ = small_fleet
    result = fleet.run_command(inv, "health-check", timeout=0.5)
    mute = list(inv.agents)[2]
    assert not result.ok
    assert result.missing == [{"agent": mute, "state": "silent"}]
    assert result.problems[0].startswith(f"{mute}: silent")
    assert result.as_dict()["items"][0]["state"] == "answered"


def test_run_command_unknown_agent_is_a_usage_error(small_fleet):
    inv, _ = small_fleet
    with pytest.raises(UsageError):
        fleet.run_command(inv, "health-check", names=["nobody-here"], timeout=0.5)


def test_collect_uses_one_broadcast(small_fleet):
    inv, agents = small_fleet
    result = fleet.collect(inv, timeout=0.7)
    assert result.mode == "broadcast"
    assert sorted(result.answered) == sorted(list(inv.agents)[:2])
    assert [m["state"] for m in result.missing] == ["silent"]
    for a in agents:
        assert [t for t, _ in a.commands] == [contract.broadcast_topic(inv.manager)]


def test_broadcast_dry_run_previews_recipients_without_sending(small_fleet):
    inv, agents = small_fleet
    plan = fleet.broadcast(inv, "config-reload", pattern="web-*", dry_run=True)
    assert plan.mode == "direct" and plan.recipients == list(inv.agents)[:2]
    wanted = [contract.topic(n, "command") for n in plan.recipients]
    assert [r["topic"] for r in plan.rows()] == wanted
    whole = fleet.broadcast(inv, "config-reload", dry_run=True)
    assert whole.mode == "broadcast" and whole.topics == [contract.broadcast_topic(inv.manager)]
    assert all(a.commands == [] for a in agents)


def test_broadcast_to_a_pattern_reaches_only_matches(small_fleet):
    inv, agents = small_fleet
    result = fleet.broadcast(inv, "config-reload", pattern="web-*", timeout=2)
    assert result.ok and len(result.replies) == 2
    assert agents[2].commands == []


def test_broadcast_pattern_matching_nothing_is_a_usage_error(small_fleet):
    inv, _ = small_fleet
    with pytest.raises(UsageError):
        fleet.broadcast(inv, "health-check", pattern="zz-*", dry_run=True)
