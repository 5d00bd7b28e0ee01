"""Attack 2 (and 8b, 8c) of the threat model: numbers from the bus.

A compromised agent publishes, with a raw paho client and its own topics only:
a 400-digit integer, NaN, Infinity, 1e400, a float past 2**53, nested in any
field; and heartbeats dated in the future. Controls: the contract's decoder
refuses every number that is not finite or not within +-2**53 (counted as an
invalid message); the exporter checks one agent's values as a whole before it
exports any (a value it cannot export costs that agent its series, counted in
``hatchery_exporter_dropped_series_total``); timestamps ahead of the reader's
clock by more than the slack are clamped (exporter) or judged stale (health).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.core.intent import IntentBook
from hatchery.observe import exporter, health
from hatchery.observe.fleetstate import FleetState
from tests.fleet.responders import (
    Responder,
    clear_retained,
    free_port,
    inventory,
    serving_exporter,
    unique,
)

ROOT = Path(__file__).resolve().parents[2]
HUGE = "9" * 400
HOSTILE_NUMBERS = [HUGE, "-" + HUGE, "NaN", "Infinity", "-Infinity", "1e400", "1.7e308",
                   "9007199254740993", "1" + "0" * 40 + ".5", "123456789012345e9", "1E+16", "9.9e15"]


def _raw_publish(broker, topic: str, payload: bytes, retain: bool = False) -> None:
    """The attacker: paho, no hatchery code, its own topic."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _beat_text(agent: str, uptime: str = "1", ts: str | None = None, errors: str = "{}") -> bytes:
    ts = ts or contract.now_rfc3339()
    return (f'{{"v":1,"ts":"{ts}","agent":"{agent}","ok":true,"uptime":{uptime},'
            f'"errors":{errors}}}').encode()


@pytest.mark.parametrize("number", HOSTILE_NUMBERS)
def test_the_decoder_refuses_numbers_that_are_not_finite_and_bounded(number):
    for text in (f'{{"a":{number}}}', f'{{"a":{{"b":[{number}]}}}}'):
        with pytest.raises(contract.ContractError) as caught:
            contract.decode(text.encode())
        assert caught.value.reason == "bad-number"


def test_the_encoder_never_writes_nan():
    with pytest.raises(contract.ContractError):
        contract.encode({"cpu": math.nan})
    assert contract.decode(b'{"a":9007199254740992,"b":-1.5e15,"c":0.001}')["a"] == 2 ** 53


# --- the exporter -----------------------------------------------------------------

def _scrape(port: int) -> tuple:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _wait_for(port: int, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status, text = _scrape(port)
        assert status == 200, "one agent's message took /metrics down"
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


@pytest.mark.parametrize("number", [HUGE, "NaN", "1e400"])
def test_one_agent_cannot_take_down_metrics_and_recovers_on_its_next_good_beat(broker, number):
    good, bad = unique("good"), unique("bad")
    inv = inventory(broker, [good, bad])
    honest = Responder(broker, good, inv.manager)
    port = free_port()
    try:
        with BusClient(broker.host, broker.port) as bus, serving_exporter(inv, bus, port):
            _raw_publish(broker, f"fleet/{bad}/heartbeat", _beat_text(bad, uptime=number), retain=True)
            _raw_publish(broker, f"fleet/{bad}/heartbeat",
                         _beat_text(bad, errors=f'{{"boom":{number}}}'), retain=True)
            _raw_publish(broker, f"fleet/{bad}/alert",
                         (f'{{"v":1,"ts":"{contract.now_rfc3339()}","agent":"{bad}",'
                          f'"kind":"alert","code":"dropped-message","count":{number}}}').encode())
            text = _wait_for(port, 'hatchery_bus_invalid_messages_total{kind="alert"} 1.0')
            assert f'hatchery_agent_uptime_seconds{{agent="{good}"}} 12.5' in text
            assert 'hatchery_bus_invalid_messages_total{kind="heartbeat"} 2.0' in text
            assert f'hatchery_agent_uptime_seconds{{agent="{bad}"}}' not in text
            # its next good heartbeat brings its series back
            _raw_publish(broker, f"fleet/{bad}/heartbeat", _beat_text(bad, uptime="7"), retain=True)
            text = _wait_for(port, f'hatchery_agent_uptime_seconds{{agent="{bad}"}} 7.0')
            assert f'hatchery_agent_uptime_seconds{{agent="{bad}"}} 7.0' in text
    finally:
        honest.stop()
        clear_retained(broker, [good, bad])


def test_a_value_the_exporter_cannot_export_costs_only_that_agents_series():
    """Defence in depth behind the decoder: state poisoned by any other path."""
    class Nowhere:
        host, port = "127.0.0.1", 1
    inv = inventory(Nowhere, ["a", "b"])
    metrics = exporter.BusMetrics(inv)
    for name in ("a", "b"):
        metrics.observe(Message(f"fleet/{name}/heartbeat", _beat_text(name, uptime="3"), True, time.time()))
    poisoned = metrics.state.agents["b"]       # the fleet state, reached behind the decoder's back
    poisoned.rtt_ms = math.inf
    poisoned.beat = dataclasses.replace(poisoned.beat, mem_kb=10 ** 400)
    registry = exporter.registry_for(metrics)
    for _ in range(2):
        assert registry.get_sample_value("hatchery_agent_uptime_seconds", {"agent": "a"}) == 3
        assert registry.get_sample_value("hatchery_agent_uptime_seconds", {"agent": "b"}) is None
    assert registry.get_sample_value("hatchery_exporter_dropped_series_total", {"agent": "b"}) >= 2
    assert registry.get_sample_value("hatchery_exporter_dropped_series_total", {"agent": "a"}) is None


def test_one_agent_cannot_mint_unbounded_alert_series():
    class Nowhere:
        host, port = "127.0.0.1", 1
    inv = inventory(Nowhere, ["a"])
    metrics = exporter.BusMetrics(inv)
    for number in range(500):
        alert = contract.make_alert("a", f"code-{number}")
        metrics.observe(Message("fleet/a/alert", contract.encode(alert), False, time.time()))
    assert len(metrics.alerts) == exporter.CODES_PER_AGENT + 1
    assert metrics.alerts[("a", exporter.OTHER_CODE)] == 500 - exporter.CODES_PER_AGENT


# --- heartbeats dated in the future -------------------------------------------------

def _ts(offset_s: float) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize("ahead", [None, 3600, 60])
def test_a_heartbeat_dated_in_the_future_is_not_fresh(broker, ahead):
    ts = "2099-01-01T00:00:00Z" if ahead is None else _ts(ahead)   # computed now, not at import
    name = unique("future")
    inv = inventory(broker, [name], interval=30)
    _raw_publish(broker, f"fleet/{name}/status",
                 json.dumps(contract.make_state(name, "online")).encode(), retain=True)
    _raw_publish(broker, f"fleet/{name}/heartbeat", _beat_text(name, ts=ts), retain=True)
    try:
        with BusClient(broker.host, broker.port) as bus:
            report = health.bus_health(inv, bus)
    finally:
        clear_retained(broker, [name])
    assert report.agents[0].verdict == health.STALE
    assert "future" in report.agents[0].reason


def test_a_little_clock_skew_is_still_online():
    name = "skewed"
    state = FleetState({name: 30}, "zephyr").observe_all(
        [Message(f"fleet/{name}/heartbeat", _beat_text(name, ts=_ts(3)), True, time.time())])
    assert state.judge(name, IntentBook()).verdict == health.ONLINE


def test_the_exporter_clamps_a_future_heartbeat_to_its_arrival():
    class Nowhere:
        host, port = "127.0.0.1", 1
    inv = inventory(Nowhere, ["a"])
    now = [time.time()]
    metrics = exporter.BusMetrics(inv, clock=lambda: now[0])
    metrics.observe(Message("fleet/a/heartbeat", _beat_text("a", ts="2099-01-01T00:00:00Z"), True, now[0]))
    now[0] += 3600
    age = exporter.registry_for(metrics).get_sample_value(
        "hatchery_agent_heartbeat_age_seconds", {"agent": "a"})
    assert age >= 3600 - contract.FUTURE_SLACK_S


# --- fleet.monitor --json is strict JSON -----------------------------------------------

def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_monitor_json_is_strict_json_whatever_agents_publish(broker, tmp_path):
    names = [unique("m") for _ in range(3)]
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text("\n".join(["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
                               "  host: 127.0.0.1", f"  port: {broker.port}", "  auth: false",
                               "agents:", *[f"  {n}: {{}}" for n in names]]) + "\n")
    for name, number in zip(names, ["NaN", "Infinity", HUGE]):
        _raw_publish(broker, f"fleet/{name}/heartbeat",
                     _beat_text(name, uptime=number).replace(b'"ok":true', f'"cpu":{number},"ok":true'.encode()),
                     retain=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT),
                               "fleet.monitor", "--snapshot", "--json"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "FLEET_INVENTORY": str(path), "NO_COLOR": "1"})
    finally:
        clear_retained(broker, names)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _strict(proc.stdout)["items"]
    assert [r["cpu"] for r in rows] == [None, None, None]
