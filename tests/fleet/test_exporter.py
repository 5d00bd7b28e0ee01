"""The Prometheus exporter: folding captured messages, a real scrape, and the rules file."""

from __future__ import annotations

import json
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
from hatchery.core.intent import IntentBook, Stopped
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


def test_intent_a_retired_agent_is_not_exported_a_stopped_one_is_marked():
    inv = inventory(_Broker, ["kept", "halted", "gone"], interval=60)
    book = IntentBook(stopped={"halted": Stopped(time.time(), "agent.stop")}, retired=frozenset({"gone"}))
    metrics = exporter.BusMetrics(inv, intent=lambda: book)
    for name in ("kept", "halted", "gone"):
        _feed(metrics, f"fleet/{name}/status", contract.make_state(name, "online"))
        _feed(metrics, f"fleet/{name}/heartbeat", _beat(name))
        _feed(metrics, f"fleet/{name}/alert", contract.make_alert(name, "dropped-message", count=2))
    _feed(metrics, "fleet/halted/status", contract.make_state("halted", "offline"))
    assert _sample(metrics, "hatchery_agent_up", agent="kept") == 1
    assert _sample(metrics, "hatchery_agent_stopped", agent="kept") is None
    assert _sample(metrics, "hatchery_agent_up", agent="halted") == 0
    assert _sample(metrics, "hatchery_agent_stopped", agent="halted") == 1
    text = _text(metrics)
    assert 'agent="gone"' not in text and 'agent="kept"' in text


def _text(metrics) -> str:
    from prometheus_client import generate_latest
    return generate_latest(exporter.registry_for(metrics)).decode()


def test_agent_retire_clearing_its_retained_topics_closes_its_series():
    inv = inventory(_Broker, ["a"], interval=60)
    metrics = exporter.BusMetrics(inv)
    _feed(metrics, "fleet/a/status", contract.make_state("a", "online"))
    _feed(metrics, "fleet/a/heartbeat", _beat("a"))
    for kind in ("heartbeat", "status"):         # what agent.retire publishes
        metrics.observe(Message(f"fleet/a/{kind}", b"", True, time.time()))
    assert _sample(metrics, "hatchery_agent_up", agent="a") == 0
    assert _sample(metrics, "hatchery_agent_uptime_seconds", agent="a") is None


def test_only_contract_valid_heartbeats_are_exported_and_error_codes_are_capped():
    inv = inventory(_Broker, ["a"], interval=60)
    metrics = exporter.BusMetrics(inv)
    _feed(metrics, "fleet/a/status", contract.make_state("a", "online"))
    for key in ("<script>", "e\u202e", "nul\x00", "k" * 200, "Upper"):
        _feed(metrics, "fleet/a/heartbeat", {**_beat("a"), "errors": {key: 1}})
    assert _sample(metrics, "hatchery_agent_invalid_messages_total", agent="a") == 5
    for round_ in range(3):
        errors = {f"r{round_}-{i}": 1 for i in range(40)}
        _feed(metrics, "fleet/a/heartbeat", {**_beat("a"), "errors": errors})
    codes = {s.labels["code"] for f in metrics.collect() for s in f.samples
             if s.name == "hatchery_agent_errors"}
    assert codes == {"other"}           # the last heartbeat has none of the 16 pinned codes
    assert len(metrics.error_codes["a"]) == exporter.ERROR_CODES_PER_AGENT
    assert _sample(metrics, "hatchery_agent_errors", agent="a", code="other") == 40
    assert _sample(metrics, "hatchery_exporter_folded_error_codes_total", agent="a") == 3 * 40 - 16
    _feed(metrics, "fleet/a/heartbeat", {**_beat("a"), "errors": {"r0-0": 7, "r0-1": 2, "new": 5}})
    assert _sample(metrics, "hatchery_agent_errors", agent="a", code="r0-0") == 7
    assert _sample(metrics, "hatchery_agent_errors", agent="a", code="other") == 5


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
    assert "SUCCESS: 14 rules found" in result.stdout


GIB = 1024 ** 3


def test_the_full_soon_alert_fires_on_growth_and_not_on_a_flat_host(tmp_path):
    """promtool's own rule tests: twelve hours of series, the alerts Prometheus would raise."""
    promtool = shutil.which("promtool") or pytest.fail("promtool not installed: apt-get install -y prometheus")
    (tmp_path / "rules.yml").write_text(exporter.render_rules(full_within_days=7))
    minutes = 720

    def series(name, host, start, step=0):
        labels = f'{{host="{host}"}}' if host else ""
        return {"series": f"{name}{labels}", "values": f"{start}{step:+d}x{minutes}"}

    def summary(host, what):
        return {"severity": "warning", "host": host}, {
            "summary": f"host {host} runs out of {what} headroom within 7 days at the current growth",
            "fix": "invoke fleet.capacity --agents; look for an agent whose memory grows "
                   "(fleet.dashboard's sparklines)" if what == "memory" else
                   "invoke fleet.capacity --agents shows which agents use the CPU"}
    inputs = [series("hatchery_capacity_headroom_ratio", None, "0.2")]
    for host, memory_step in (("filling", -GIB // 1024), ("slow", -100_000), ("flat", 0)):
        inputs += [series("hatchery_host_memory_total_bytes", host, 16 * GIB),
                   series("hatchery_host_memory_available_bytes", host, 8 * GIB, memory_step),
                   series("hatchery_host_cpus", host, 4), series("hatchery_host_cpu_free", host, 3),
                   series("hatchery_host_past_headroom", host, 0)]
    labels, annotations = summary("filling", "memory")
    test = {"rule_files": [str(tmp_path / "rules.yml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": [
                {"eval_time": "7h", "alertname": "HatcheryHostMemoryFullSoon",
                 "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]},
                {"eval_time": "7h", "alertname": "HatcheryHostCpuFullSoon", "exp_alerts": []},
                {"eval_time": "7h", "alertname": "HatcheryHostPastHeadroom", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "HatcheryHostMemoryFullSoon", "exp_alerts": []}]}]}
    (tmp_path / "test.yml").write_text(json.dumps(test))       # JSON is YAML
    result = subprocess.run([promtool, "test", "rules", str(tmp_path / "test.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
