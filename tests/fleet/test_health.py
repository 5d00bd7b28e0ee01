"""bus-health: pure classification on captured messages, then one real bus read."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from responders import Responder, clear_retained, inventory, unique

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.core.intent import IntentBook, Lease, Stopped
from hatchery.observe import health, monitor
from hatchery.observe.fleetstate import FleetState

NOW = datetime(2026, 3, 18, 21, 30, tzinfo=timezone.utc)


class _Broker:
    host, port = "127.0.0.1", 1


def _beat(name, seconds_ago, ok=True):
    ts = (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    payload = {"v": 1, "ts": ts, "agent": name, "ok": ok, "uptime": 1}
    return Message(contract.topic(name, "heartbeat"), contract.encode(payload), True, 0)


def _state(name, state):
    return Message(contract.topic(name, "status"),
                   contract.encode(contract.make_state(name, state)), True, 0)


def _snapshot(inv, messages, book=IntentBook(), threshold=None):
    state = FleetState.for_inventory(inv).observe_all(messages)
    return monitor.build_snapshot(state, book, NOW.timestamp(), threshold=threshold)


def test_classify_every_verdict():
    names = ["fresh", "old", "gone", "never", "sick", "born", "halted", "retired", "moving"]
    inv = inventory(_Broker, names, interval=60)
    messages = [_beat("fresh", 30), _state("fresh", "online"),
                _beat("old", 121), _state("old", "online"),
                _beat("gone", 5), _state("gone", "offline"),
                _beat("sick", 1, ok=False),
                _state("born", "online"),
                _beat("halted", 500), _state("halted", "offline"),
                _beat("moving", 500), _state("moving", "offline")]
    book = IntentBook(stopped={"halted": Stopped(NOW.timestamp() - 600, "agent.stop")},
                      retired=frozenset({"retired"}),
                      leases={"moving": Lease("fleet.rollout pid 1", NOW.timestamp() + 60, 0.0)})
    report = health.classify(inv, _snapshot(inv, messages, book))
    verdicts = {a.agent: a.verdict for a in report.agents}
    assert verdicts == {"fresh": "online", "old": "stale", "gone": "offline", "never": "missing",
                        "sick": "unhealthy", "born": "stale", "halted": "stopped",
                        "retired": "retired", "moving": "offline"}
    assert not report.ok
    assert report.problems[0].startswith("old: stale: last heartbeat 121s ago (threshold 120s)")
    assert [p.split(":")[0] for p in report.problems] == ["old", "gone", "never", "sick", "born"]
    assert [a.threshold_s for a in report.agents] == [120] * len(names)
    items = {i["agent"]: i for i in report.as_dict()["items"]}
    assert items["halted"]["intent"] == "stopped" and items["moving"]["intent"] == "in-rollout"


def test_stopped_retired_and_leased_agents_never_fail_the_check():
    inv = inventory(_Broker, ["halted", "retired", "moving"], interval=60)
    book = IntentBook(stopped={"halted": Stopped(NOW.timestamp(), "agent.stop")},
                      retired=frozenset({"retired"}),
                      leases={"moving": Lease("fleet.rollout pid 1", NOW.timestamp() + 60, 0.0)})
    report = health.classify(inv, _snapshot(inv, [_state("halted", "online")], book))
    assert report.ok and report.problems == []
    assert "the bus still says online" in report.agents[0].reason


def test_explicit_threshold_overrides_the_interval():
    inv = inventory(_Broker, ["a"], interval=600)
    assert health.classify(inv, _snapshot(inv, [_beat("a", 90)])).ok
    strict = health.classify(inv, _snapshot(inv, [_beat("a", 90)], threshold=60))
    assert not strict.ok and strict.agents[0].verdict == "stale"


def test_bus_health_on_the_real_bus(module_broker):
    alive, dead, absent = unique(), unique(), unique()
    inv = inventory(module_broker, [alive, dead, absent])
    agents = [Responder(module_broker, n, inv.manager) for n in (alive, dead)]
    agents[1].crash()
    time.sleep(0.2)
    try:
        with BusClient(module_broker.host, module_broker.port) as bus:
            report = health.bus_health(inv, bus)
    finally:
        agents[0].stop()
        clear_retained(module_broker, [alive, dead])
    assert [a.verdict for a in report.agents] == ["online", "offline", "missing"]
    assert report.as_dict()["ok"] is False
    assert len(report.problems) == 2
