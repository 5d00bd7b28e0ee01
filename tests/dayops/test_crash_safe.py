"""Crash-safe local runtime: real handlers, counted by their command line in /proc.

Ctrl-C (SIGINT to the CLI's process group) at several points of a 30-agent
hatch, kill -9, a pid file that names a reused pid, a duplicate handler, an
orphan, and a broker that is not there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dayops import ROOT, bring_up, handlers, interrupt, run, start, take_down, wait_for, write_inventory

from hatchery.core.ports import free_port

AGENTS = tuple(f"a{n:02d}" for n in range(30))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    inventory, state, _ = bring_up(tmp_path_factory.mktemp("crash"), AGENTS, hatch=False)
    yield inventory, state
    take_down(inventory, state)


def _rows(inventory) -> dict:
    return {r["agent"]: r for r in json.loads(run("agent.list", "--json", inventory=inventory,
                                                  check=0).stdout)["items"]}


def _interrupt_hatch(inventory, state, when) -> int:
    """Start agent.hatch, send SIGINT to its process group once ``when()`` holds; its exit code."""
    cli = start("agent.hatch", inventory=inventory)
    wait_for(lambda: when() or cli.poll() is not None, timeout=60, step=0.02)
    interrupt(cli, timeout=60)
    return cli.returncode


def test_sigint_at_several_points_then_hatch_leaves_one_each_and_stop_none(fleet):
    inventory, state = fleet
    count = lambda: sum(len(p) for p in handlers(state).values())   # noqa: E731
    points = [lambda: time.sleep(0.3) or True,              # while loading / issuing credentials
              lambda: count() >= 3, lambda: count() >= 12, lambda: count() >= 24]
    for when in points:
        _interrupt_hatch(inventory, state, when)
        assert all(len(pids) == 1 for pids in handlers(state).values()), handlers(state)
    run("agent.hatch", inventory=inventory, check=0)
    table = handlers(state)
    assert sorted(table) == list(AGENTS) and all(len(pids) == 1 for pids in table.values()), table
    rows = _rows(inventory)
    assert all(rows[a]["running"] and not rows[a]["problem"] for a in AGENTS), rows
    again = run("agent.hatch", inventory=inventory, check=0).stdout
    assert "changed=0" in again


def test_a_second_handler_with_the_lock_exits_at_once(fleet):
    inventory, state = fleet
    config, lock = state / "agents/a00/agent.json", state / "agents/a00/handler.lock"
    second = subprocess.run([sys.executable, "-m", "agent_kit.handler", "--config", str(config),
                             "--lock", str(lock)], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert second.returncode == 3 and "holds" in second.stderr
    assert len(handlers(state)["a00"]) == 1


def test_duplicate_without_lock_is_reported_and_repaired(fleet):
    inventory, state = fleet
    config = state / "agents/a01/agent.json"
    # a handler started by hand or by an older hatchery: no lock, same config
    extra = subprocess.Popen([sys.executable, "-m", "agent_kit.handler", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    try:
        assert wait_for(lambda: len(handlers(state).get("a01", [])) == 2)
        assert _rows(inventory)["a01"]["problem"] == "duplicates: 2 handlers"
        out = run("agent.hatch", inventory=inventory, check=0).stdout
        assert "2 handlers running" in out and "duplicates" in out
        assert len(handlers(state)["a01"]) == 1
    finally:
        extra.kill()
        extra.wait(10)


def test_kill_9_and_a_reused_pid_are_listed_right(fleet):
    inventory, state = fleet
    [pid] = handlers(state)["a02"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: "a02" not in handlers(state))
    row = _rows(inventory)["a02"]
    assert not row["running"] and f"names {pid}, a process that is gone" in row["problem"]

    stranger = subprocess.Popen(["sleep", "60"])            # the pid now belongs to another program
    try:
        (state / "agents/a02/handler.pid").write_text(f"{stranger.pid}\n")
        row = _rows(inventory)["a02"]
        assert not row["running"] and "reused pid" in row["problem"], row
        out = run("agent.hatch", inventory=inventory, check=0).stdout
        assert "agent a02" in out and "changed=1" in out
        assert stranger.poll() is None                      # never signalled: not ours
        row = _rows(inventory)["a02"]
        assert row["running"] and row["problem"] == "" and row["pid"] == handlers(state)["a02"][0]
    finally:
        stranger.kill()
        stranger.wait(10)


def test_pid_file_lost_mid_start_is_rewritten(fleet):
    inventory, state = fleet
    (state / "agents/a03/handler.pid").unlink()
    out = run("agent.hatch", inventory=inventory, check=0).stdout
    assert "agent a03" in out and "pid file" in out
    assert int((state / "agents/a03/handler.pid").read_text()) == handlers(state)["a03"][0]


def test_orphan_is_listed_and_stopped(fleet):
    inventory, state = fleet
    original = inventory.read_text()
    try:
        inventory.write_text(original.replace("  a29:\n", "  gone29:\n"))
        rows = _rows(inventory)
        assert rows["a29"]["problem"] == "orphan: not in the inventory" and rows["a29"]["running"]
        out = run("agent.stop", "--name", "a28", inventory=inventory, check=0).stdout
        assert "a29" not in out                              # --name stops only that one
        out = run("agent.stop", inventory=inventory, check=0).stdout
        assert "orphan" in out
        assert handlers(state) == {}
    finally:
        inventory.write_text(original)


def test_broker_down_hatch_exits_3_and_starts_nothing(tmp_path):
    inventory = write_inventory(tmp_path, free_port(), ("b1", "b2"))
    proc = run("agent.hatch", inventory=inventory, check=3)
    assert "is not running or cannot be reached" in proc.stderr and "broker.deploy" in proc.stderr
    assert handlers(tmp_path / ".hatchery") == {}
    assert not (tmp_path / ".hatchery" / "agents").exists()
