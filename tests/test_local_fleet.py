"""End to end: the real CLI drives a local fleet (native mosquitto + agent handlers).

Each test module gets its own inventory, port and state directory under tmp,
and everything is stopped afterwards, even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def write_inventory(directory: Path, port: int, agents=("alpha", "beta")) -> Path:
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
             "  host: 127.0.0.1", "  bind: 127.0.0.1", f"  port: {port}", "agents:"]
    for name in agents:
        lines += [f"  {name}:", "    version_command: 'echo {}-1.2.3'".format(name),
                  "    heartbeat_interval: 30"]
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args, inventory: Path, check=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEET_INVENTORY": str(inventory), "NO_COLOR": "1"}
    proc = subprocess.run([*INVOKE, *args], capture_output=True, text=True, env=env, timeout=60)
    if check is not None:
        assert proc.returncode == check, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fleet")
    inventory = write_inventory(directory, free_port())
    yield inventory
    run("agent.stop", inventory=inventory)
    run("broker.stop", inventory=inventory)


def test_check_mode_changes_nothing(fleet):
    out = run("broker.deploy", "--check", inventory=fleet, check=0).stdout
    assert "would change" in out and "broker" in out
    assert not (fleet.parent / ".hatchery" / "broker" / "mosquitto.conf").exists()


def test_deploy_then_unchanged(fleet):
    first = run("broker.deploy", inventory=fleet, check=0).stdout
    assert "changed=1" in first
    second = run("broker.deploy", inventory=fleet, check=0).stdout
    assert "changed=0" in second and "(no changes)" in second


def test_hatch_then_unchanged(fleet):
    first = run("agent.hatch", inventory=fleet, check=0).stdout
    assert "changed=2" in first
    started = time.monotonic()
    second = run("agent.hatch", inventory=fleet, check=0).stdout
    assert "changed=0" in second and time.monotonic() - started < 5


def test_version_report_lists_both(fleet):
    out = run("fleet.version-report", "--json", inventory=fleet, check=0).stdout
    replies = {r["agent"]: r for r in json.loads(out)["replies"]}
    assert replies["alpha"]["result"]["version"] == "alpha-1.2.3"
    assert replies["beta"]["result"]["version"] == "beta-1.2.3"
    assert all(r["rtt_ms"] < 1000 for r in replies.values())


def test_verify_passes(fleet):
    report = json.loads(run("verify", "--json", inventory=fleet, check=0).stdout)
    names = [c["check"] for c in report["checks"]]
    assert report["ok"] and any("retained" in n for n in names)
    assert sum("answers a health-check" in n for n in names) == 2


def test_killed_agent_is_reported_offline(fleet):
    pid_file = fleet.parent / ".hatchery" / "agents" / "beta" / "handler.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    time.sleep(0.5)
    proc = run("fleet.version-report", "--timeout", "2", inventory=fleet, check=1)
    assert "beta" in proc.stderr and "offline" in proc.stderr
    states = {r["agent"]: r["state"] for r in json.loads(
        run("fleet.version-report", "--json", "--timeout", "2", inventory=fleet, check=1).stdout)["replies"]}
    assert states == {"alpha": "answered", "beta": "offline"}
    # hatch brings it back, and only it
    out = run("agent.hatch", inventory=fleet, check=0).stdout
    assert "changed=1" in out and "beta" in out


def test_one_agent_by_name(fleet):
    out = json.loads(run("fleet.health-check", "--name", "alpha", "--json", inventory=fleet, check=0).stdout)
    assert [r["agent"] for r in out["replies"]] == ["alpha"]


def test_bad_inventory_changes_nothing(tmp_path):
    bad = tmp_path / "fleet_inventory.yaml"
    bad.write_text("broker:\n  port: 99999\nagents:\n  Bad.Name: {}\n")
    proc = run("broker.deploy", inventory=bad, check=2)
    assert "fleet_inventory.yaml:2" in proc.stderr and "fleet_inventory.yaml:4" in proc.stderr
    assert not (tmp_path / ".hatchery").exists()


def test_unknown_agent_name_is_a_usage_error(fleet):
    proc = run("fleet.health-check", "--name", "nobody", inventory=fleet, check=2)
    assert "nobody" in proc.stderr and "alpha" in proc.stderr
