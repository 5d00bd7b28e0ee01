"""Upgrade: provenance, agent.hatch --check naming outdated agents, agent.restart and
fleet.rollout of 10 real local handlers, read back over the bus.

The "new version" of an agent is its inventory entry (here its version_command,
which is what version-report answers); a version that is broken on one host is
a version_command that cannot run there.
"""

from __future__ import annotations

import json

import pytest
from dayops import bring_up, handlers, run, take_down, wait_for, write_inventory

from hatchery.bus.commands import run_command
from hatchery.inventory.load import load_inventory

AGENTS = tuple(f"r{n:02d}" for n in range(1, 11))
BROKEN = "r05"          # in batch 2 (r04 r05 r06) with --batch 3


def versions_over_bus(inventory) -> dict:
    inv = load_inventory(inventory, env={})
    result = run_command(inv, "version-report", timeout=5.0)
    return {r.agent: (r.result or {}).get("version") or r.state for r in result.replies}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rollout")
    inventory, state, port = bring_up(directory, {n: "echo 1.0" for n in AGENTS})
    yield directory, port, inventory, state
    take_down(inventory, state)


def _pids(state) -> dict:
    return {name: pids[0] for name, pids in handlers(state).items()}


def test_provenance_outdated_check_and_restart(fleet):
    directory, port, inventory, state = fleet
    record = json.loads((state / "agents" / "r01" / "provenance.json").read_text())
    assert set(record) >= {"kit", "config", "started"}
    assert (state / "kits" / record["kit"] / "agent_kit" / "handler.py").exists()
    current = run("agent.hatch", "--check", "--json", inventory=inventory, check=0)
    assert all(r["action"] == "none" for r in json.loads(current.stdout)["items"]
               if r["item"].startswith("agent ")), current.stdout
    write_inventory(directory, port, {n: ("echo 1.1" if n == "r02" else "echo 1.0") for n in AGENTS})
    try:
        check = json.loads(run("agent.hatch", "--check", "--json", inventory=inventory, check=0).stdout)
        by_item = {r["item"]: r for r in check["items"]}
        assert by_item["agent r02"]["action"] == "restart"
        old = json.loads((state / "agents" / "r02" / "provenance.json").read_text())["config"]
        assert by_item["agent r02"]["reason"].startswith(f"outdated: config {old} → ")
        assert by_item["agent r01"]["action"] == "none"
    finally:
        write_inventory(directory, port, {n: "echo 1.0" for n in AGENTS})
    before = _pids(state)
    run("agent.restart", "--name", "r03", inventory=inventory, check=0)
    after = _pids(state)
    assert after["r03"] != before["r03"] and after["r01"] == before["r01"]
    assert wait_for(lambda: versions_over_bus(inventory)["r03"] == "1.0", timeout=10)


def test_rollout_in_batches_of_three_reaches_every_agent(fleet):
    directory, port, inventory, state = fleet
    write_inventory(directory, port, {n: "echo 2.0" for n in AGENTS})
    checked = run("fleet.rollout", "--batch", "3", "--check", "--json", inventory=inventory, check=0)
    plan = json.loads(checked.stdout)
    assert [r["batch"] for r in plan["items"]] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert all(r["action"] == "restart" for r in plan["items"])
    done = run("fleet.rollout", "--batch", "3", "--expect-version", "2.0", "--timeout", "10", "--json",
               inventory=inventory, check=0)
    report = json.loads(done.stdout)
    assert report["ok"] and report["batches"][3] == ["r10"]
    assert {r["outcome"] for r in report["items"]} == {"updated"}
    assert versions_over_bus(inventory) == {n: "2.0" for n in AGENTS}
    assert all(len(p) == 1 for p in handlers(state).values()) and len(handlers(state)) == 10


def test_rollout_failing_in_batch_two_aborts_and_rolls_back(fleet):
    directory, port, inventory, state = fleet
    write_inventory(directory, port, {n: "echo 2.0" for n in AGENTS})
    run("agent.hatch", inventory=inventory, check=0)           # everyone on 2.0 (the test above)
    before = _pids(state)
    write_inventory(directory, port, {n: ("/nonexistent/agent-3.0 --version" if n == BROKEN else "echo 3.0")
                            for n in AGENTS})
    done = run("fleet.rollout", "--batch", "3", "--expect-version", "3.0", "--timeout", "5",
               "--json", inventory=inventory, check=1)
    report = json.loads(done.stdout)
    outcomes = {r["agent"]: r for r in report["items"]}
    assert report["aborted"] and report["failed"] == [BROKEN]
    assert outcomes[BROKEN]["outcome"] == "rolled-back" and "version-report" in outcomes[BROKEN]["detail"]
    assert {n for n, r in outcomes.items() if r["outcome"] == "untouched"} == {"r07", "r08", "r09", "r10"}
    # read back over the bus: batch 1 and the rest of batch 2 new, the failed one old, the rest untouched
    versions = versions_over_bus(inventory)
    assert versions == {**{n: "3.0" for n in ("r01", "r02", "r03", "r04", "r06")}, BROKEN: "2.0",
                        **{n: "2.0" for n in ("r07", "r08", "r09", "r10")}}
    after = _pids(state)
    assert all(after[n] == before[n] for n in ("r07", "r08", "r09", "r10"))
    assert after[BROKEN] != before[BROKEN]
    assert all(len(p) == 1 for p in handlers(state).values())
