"""bus-health: pure classification on captured messages, then one real bus read."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from responders import Responder, clear_retained, inventory, unique

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.observe import health, monitor

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


def test_classify_every_verdict():
    names = ["fresh", "old", "gone", "never", "sick", "born"]
    inv = inventory(_Broker, names, interval=60)
    messages = [_beat("fresh", 30), _state("fresh", "online"),
                _beat("old", 121), _state("old", "online"),
                _beat("gone", 5), _state("gone", "offline"),
                _beat("sick", 1, ok=False),
                _state("born", "online")]
    report = health.classify(inv, monitor.build_snapshot(messages, names, NOW), now=NOW)
    verdicts = {a.agent: a.verdict for a in report.agents}
    assert verdicts == {"fresh": "healthy", "old": "stale", "gone": "offline",
                        "never": "missing", "sick": "unhealthy", "born": "stale"}
    assert not report.ok
    assert report.problems[0].startswith("old: stale: last heartbeat 121s ago (threshold 120s)")
    assert [a.threshold_s for a in report.agents] == [120] * 6


def test_explicit_threshold_overrides_the_interval():
    inv = inventory(_Broker, ["a"], interval=600)
    snap = monitor.build_snapshot([_beat("a", 90)], ["a"], NOW)
    assert health.classify(inv, snap, now=NOW).ok
    strict = health.classify(inv, snap, threshold=60, now=NOW)
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
    assert [a.verdict for a in report.agents] == ["healthy", "offline", "missing"]
    assert report.as_dict()["ok"] is False
    assert len(report.problems) == 2
