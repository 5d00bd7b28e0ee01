"""The Prometheus exporter: folding captured messages, a real scrape, and the rules file."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import pytest
from responders import (
    Responder,
    clear_retained,
    free_port,
    inventory,
    serving_exporter,
    unique,
)

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.observe import exporter


class _Broker:
    host, port = "127.0.0.1", 1


def _feed(metrics, topic, payload, at=None):
    data = payload if isinstance(payload, bytes) else contract.encode(payload)
    metrics.observe(Message(topic, data, False, at or time.time()))


def _sample(metrics, name, **labels):
    registry = exporter.registry_for(metrics)
    return registry.get_sample_value(name, labels)


def _beat(name):
    return {"v": 1, "ts": contract.now_rfc3339(), "agent": name, "ok": True, "uptime": 50,
            "mem_kb": 10, "cpu": 2.5, "errors": {"bad-json": 4}}


def test_offline_closes_the_agents_series_but_keeps_last_seen():
    inv = inventory(_Broker, ["a"], interval=60)
    metrics = exporter.BusMetrics(inv)
    _feed(metrics, "fleet/a/status", contract.make_state("a", "online"))
    _feed(metrics, "fleet/a/heartbeat", _beat("a"))
    assert _sample(metrics, "hatchery_agent_up", agent="a") == 1
    assert _sample(metrics, "hatchery_agent_memory_bytes", agent="a") == 10240
    assert _sample(metrics, "hatchery_agent_errors", agent="a", code="bad-json") == 4
    assert _sample(metrics, "hatchery_agent_heartbeat_interval_seconds", agent="a") == 60
    _feed(metrics, "fleet/a/status", contract.make_state("a", "offline"))
    assert _sample(metrics, "hatchery_agent_up", agent="a") == 0
    assert _sample(metrics, "hatchery_agent_memory_bytes", agent="a") is None
    assert _sample(metrics, "hatchery_agent_heartbeat_age_seconds", agent="a") is None
    assert _sample(metrics, "hatchery_agent_last_seen_timestamp_seconds", agent="a") > 0


def test_round_trip_alerts_drops_and_bad_messages_are_counted():
    inv = inventory(_Broker, ["a"])
    metrics = exporter.BusMetrics(inv)
    command = contract.make_command("health-check", "c1")
    _feed(metrics, contract.broadcast_topic(inv.manager), command, at=100.0)
    _feed(metrics, "fleet/a/status", contract.make_reply("a", command, True), at=100.25)
    _feed(metrics, "fleet/a/status", contract.make_state("a", "online"))
    _feed(metrics, "fleet/a/alert", contract.make_alert("a", "dropped-message", count=1))
    _feed(metrics, "fleet/a/alert", contract.make_alert("a", "dropped-message", count=3,
                                                          suppressed=1))
    _feed(metrics, "fleet/a/heartbeat", b"{broken")
    metrics.observe_log_line("2026-01-01T00:00:00: Client x disconnected, not authorised.")
    assert _sample(metrics, "hatchery_agent_command_rtt_seconds", agent="a") == pytest.approx(0.25)
    assert _sample(metrics, "hatchery_bus_alerts_total", agent="a", code="dropped-message") == 2
    assert _sample(metrics, "hatchery_agent_dropped_commands_total", agent="a") == 3
    assert _sample(metrics, "hatchery_bus_invalid_messages_total", kind="heartbeat") == 1
    assert _sample(metrics, "hatchery_bus_messages_total", kind="command") == 1
    assert _sample(metrics, "hatchery_broker_auth_failures_total") == 1


def test_serve_exports_the_real_bus(module_broker):
    name = unique()
    inv = inventory(module_broker, [name])
    agent = Responder(module_broker, name, inv.manager)
    port = free_port()
    with BusClient(module_broker.host, module_broker.port) as bus:
        try:
            with serving_exporter(inv, bus, port):
                time.sleep(0.2)   # retained state and heartbeat arrive
                before = _scrape(port)
                agent.crash()
                time.sleep(0.3)
                after = _scrape(port)
        finally:
            clear_retained(module_broker, [name])
    assert f'hatchery_agent_up{{agent="{name}"}} 1.0' in before
    assert f'hatchery_agent_uptime_seconds{{agent="{name}"}} 12.5' in before
    assert f'hatchery_agent_up{{agent="{name}"}} 0.0' in after
    assert f'hatchery_agent_uptime_seconds{{agent="{name}"}}' not in after


def _scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_rules_render_and_pass_promtool(tmp_path):
    rules = exporter.render_rules(stale_factor=3)
    assert "3 * hatchery_agent_heartbeat_interval_seconds" in rules
    for name in ("hatchery_agent_up", "hatchery_broker_auth_failures_total",
                 "hatchery_bus_alerts_total"):
        assert name in rules, "rules use metric names the exporter serves"
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not installed: apt-get install -y prometheus (scripts/setup.sh --test does)")
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout
