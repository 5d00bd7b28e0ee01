"""The fleet-at-a-glance tasks through the real CLI, on a real local fleet:
monitor, bus-health, collect, broadcast, exporter, schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]
AGENTS = ("red", "green", "blue")


def cli(inventory: Path, *args, rc=0, timeout=60) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEET_INVENTORY": str(inventory), "NO_COLOR": "1"}
    proc = subprocess.run([*INVOKE, *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == rc, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tasks")
    lines = ["broker:", "  runtime: local", f"  port: {free_port()}", "groups:",
             "  warm:", "    agents: [red]", "agents:"]
    for name in AGENTS:
        lines += [f"  {name}:", "    version_command: 'echo 2.0'", "    heartbeat_interval: 2"]
    inventory = directory / "fleet_inventory.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    cli(inventory, "broker.deploy")
    cli(inventory, "agent.hatch")
    yield inventory
    cli(inventory, "agent.stop")
    cli(inventory, "broker.stop")


def json_out(inventory, *args, rc=0):
    return json.loads(cli(inventory, *args, "--json", rc=rc).stdout)


def test_monitor_snapshot_shows_every_agent_online(fleet):
    snap = json_out(fleet, "fleet.monitor")
    states = {a["agent"]: a["state"] for a in snap["items"]}
    assert snap["task"] == "fleet.monitor" and snap["ok"] is True
    assert states == {name: "online" for name in AGENTS}     # the verdict of the one rule
    assert {a["intent"] for a in snap["items"]} == {"running"}


def test_monitor_stream_sees_a_command_and_its_reply(fleet):
    env = {**os.environ, "FLEET_INVENTORY": str(fleet)}
    stream = subprocess.Popen([*INVOKE, "fleet.monitor", "--stream", "--json", "--duration", "3",
                               "--name", "red", "--kinds", "command,status"],
                              stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    cli(fleet, "fleet.health-check", "--name", "red")
    lines = [json.loads(line) for line in stream.communicate(timeout=10)[0].splitlines()]
    assert all(e["task"] == "fleet.monitor" and len(e["items"]) == 1 for e in lines)
    events = [e["items"][0] for e in lines]
    kinds = [(e["agent"], e["kind"]) for e in events if not e["retained"]]
    assert ("red", "command") in kinds and ("red", "status") in kinds
    assert all(e["agent"] == "red" for e in events)


def test_broadcast_dry_run_lists_recipients_and_sends_nothing(fleet):
    plan = json_out(fleet, "fleet.broadcast", "--verb", "version-report", "--dry-run")
    assert plan["mode"] == "broadcast" and sorted(plan["recipients"]) == sorted(AGENTS)
    subset = json_out(fleet, "fleet.broadcast", "--verb", "version-report", "--dry-run",
                      "--pattern", "g*")
    assert subset["recipients"] == ["green"] and subset["mode"] == "direct"


def test_broadcast_collects_every_answer(fleet):
    result = json_out(fleet, "fleet.broadcast", "--verb", "version-report")
    assert {r["agent"]: r["result"]["version"] for r in result["items"]} == {n: "2.0" for n in AGENTS}


def test_collect_then_bus_health_is_clean(fleet):
    assert json_out(fleet, "fleet.collect")["ok"]
    report = json_out(fleet, "fleet.bus-health")
    assert report["ok"] and {a["verdict"] for a in report["items"]} == {"online"}
    assert {a["intent"] for a in report["items"]} == {"running"}


def test_killed_agent_is_offline_in_bus_health_within_5s(fleet):
    pid = int((fleet.parent / ".hatchery/agents/blue/handler.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    env = {**os.environ, "FLEET_INVENTORY": str(fleet)}
    deadline = time.monotonic() + 5
    while True:
        proc = subprocess.run([*INVOKE, "fleet.bus-health"], capture_output=True, text=True, env=env)
        if proc.returncode == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert proc.returncode == 1, proc.stdout
    assert "blue: offline" in proc.stderr
    cli(fleet, "agent.hatch", "--name", "blue")


def test_stopped_heartbeats_become_stale_at_the_threshold(fleet):
    # SIGSTOP freezes the handler: the TCP connection stays open (no Last Will)
    # and heartbeats stop. Stale a little after the threshold, counted from the
    # fresh heartbeat; the threshold leaves room for slow CLI starts on a busy machine.
    threshold = 8.0
    pid = int((fleet.parent / ".hatchery/agents/green/handler.pid").read_text())
    cli(fleet, "fleet.health-check", "--name", "green")  # a fresh heartbeat now
    fresh_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        assert json_out(fleet, "fleet.bus-health", "--threshold", str(threshold))["ok"]
        time.sleep(max(0.0, fresh_at + threshold + 0.5 - time.monotonic()))
        report = json_out(fleet, "fleet.bus-health", "--threshold", str(threshold), rc=1)
        verdicts = {a["agent"]: a["verdict"] for a in report["items"]}
        assert verdicts["green"] == "stale"
    finally:
        os.kill(pid, signal.SIGCONT)


def test_exporter_serves_metrics_from_the_bus(fleet):
    port = free_port()
    env = {**os.environ, "FLEET_INVENTORY": str(fleet)}
    proc = subprocess.Popen([*INVOKE, "fleet.exporter", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_port(port, 10)
        cli(fleet, "fleet.collect")
        time.sleep(0.3)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'hatchery_agent_up{agent="red"} 1.0' in body
    finally:
        proc.terminate()
        proc.wait(10)


def test_schedule_check_shows_the_systemd_units_and_writes_nothing(fleet, tmp_path):
    out = cli(fleet, "fleet.schedule", "--kind", "systemd", "--every", "10",
              "--target-dir", str(tmp_path), "--check", "--diff").stdout
    assert "would change" in out and "OnUnitActiveSec" in out and "fleet.collect" in out
    assert list(tmp_path.iterdir()) == []


def test_schedule_check_shows_the_weekly_audit_and_writes_nothing(fleet, tmp_path):
    out = cli(fleet, "fleet.schedule", "--job", "audit", "--kind", "systemd", "--at", "Wed 04:30",
              "--target-dir", str(tmp_path), "--check", "--diff").stdout
    assert "hatchery-audit.timer" in out and "OnCalendar=Wed *-*-* 04:30:00" in out
    assert "bus.audit" in out and "--listen 300" in out and "hatchery-collect" not in out
    plist = cli(fleet, "fleet.schedule", "--job", "audit", "--kind", "launchd", "--weekly",
                "--target-dir", str(tmp_path), "--check", "--diff").stdout
    assert "<key>StartCalendarInterval</key>" in plist and "hatchery-audit.plist" in plist
    assert list(tmp_path.iterdir()) == []


def test_schedule_refuses_flags_of_the_other_job(fleet):
    mixed = cli(fleet, "fleet.schedule", "--at", "Mon 03:00", "--check", rc=2)
    assert "--job audit" in mixed.stdout + mixed.stderr
    cli(fleet, "fleet.schedule", "--job", "audit", "--every", "10", "--check", rc=2)
    cli(fleet, "fleet.schedule", "--job", "audit", "--at", "someday", "--check", rc=2)
    cli(fleet, "fleet.schedule", "--job", "nightly", "--check", rc=2)


def test_bus_health_verify_docker_has_nothing_to_cross_check_on_a_local_fleet(fleet):
    cli(fleet, "fleet.collect")     # fresh heartbeats after the stop/kill tests above
    report = json_out(fleet, "fleet.bus-health", "--verify-docker")
    assert report["ok"] and report["docker"] == {"ok": True, "items": [], "problems": []}
