"""Issue 18 item 6: after a kill -9 of the broker, a stopped agent's retained state came
back ``online`` from the last autosave. broker.deploy (and fleet.heal --watch, seeing the
broker's start move) set it offline again, as the agent, when its runtime says it is not
running. Real Mosquitto, real handlers, the real CLI; read back by a raw paho subscriber.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from dayops import bring_up, interrupt, retained_on, run, start, take_down, wait_for, write_inventory

from agent_kit import contract
from hatchery.core.paths import StatePaths
from hatchery.core.plan import apply_plan
from hatchery.core.ports import free_port, wait_until
from hatchery.core.process import read_pid
from hatchery.inventory.load import load_inventory
from hatchery.observe.fleetstate import BROKER_UPTIME_TOPIC, FleetState
from hatchery.bus.messages import Message
from hatchery.operate.aftercrash import stale_online
from hatchery.provision.operations import deploy_plan

AGENTS = ("alpha", "beta")


@pytest.fixture
def fleet(tmp_path):
    inventory, state, _ = bring_up(tmp_path, AGENTS, hatch=False)
    yield inventory, state
    take_down(inventory, state)


def _status(state: Path, port: int, name: str) -> dict | None:
    """The retained state on fleet/{name}/status as a fresh raw paho subscriber reads it."""
    payload = retained_on(state, port, contract.topic(name, "status"), wait=0.5).get(contract.topic(name, "status"))
    return contract.decode(payload) if payload else None


def _stale_online_after_kill_9(inventory: Path, state: Path) -> tuple:
    """alpha stopped cleanly, but the broker's saved database (kill -9 after it) says online.
    (port, alpha's instance)."""
    port = load_inventory(inventory).broker.port
    run("agent.hatch", inventory=inventory, check=0)
    assert wait_for(lambda: all((_status(state, port, n) or {}).get("state") == "online" for n in AGENTS), 20)
    online = _status(state, port, "alpha")
    paths, pid = StatePaths(state), read_pid(StatePaths(state).broker_pid)
    # No autosave between the save below and the kill (the rendered 5 s could fall there):
    # autosave_interval is re-read on SIGHUP; SIGUSR1 saves the database now, alpha online in it.
    conf = Path(paths.broker_conf)
    conf.write_text(conf.read_text().replace("autosave_interval 5\n", "autosave_interval 3600\n"))
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.5)
    os.kill(pid, signal.SIGUSR1)
    time.sleep(3.5)                     # the saved 'online' predates the next start by the fold's tolerance
    run("agent.stop", "-n", "alpha", inventory=inventory, check=0)
    assert (_status(state, port, "alpha") or {}).get("state") == "offline"
    os.kill(pid, signal.SIGKILL)
    assert wait_until("127.0.0.1", port, up=False)
    return port, online.get("instance")


def _health(inventory: Path) -> tuple:
    proc = run("fleet.bus-health", "--json", inventory=inventory)
    return proc.returncode, {i["agent"]: i for i in json.loads(proc.stdout)["items"]}


def _agrees(inventory: Path) -> bool:
    code, items = _health(inventory)
    return code == 0 and items["alpha"]["verdict"] == "stopped" and "online" not in items["alpha"]["reason"] \
        and items["beta"]["verdict"] == "online"


def test_broker_deploy_after_kill_9_sets_a_stopped_agents_retained_state_offline(fleet):
    inventory, state = fleet
    port, instance = _stale_online_after_kill_9(inventory, state)
    assert instance and contract.INSTANCE_RE.fullmatch(instance)
    deployed = json.loads(run("broker.deploy", "--json", inventory=inventory, check=0).stdout)
    [item] = [i for i in deployed["items"] if i["item"] == "bus retained states"]
    assert "corrected 1: alpha" in item["detail"], item      # the broker did serve 'online' again
    assert "beta" not in item["detail"], "a running agent re-announces itself: left alone"
    status = _status(state, port, "alpha")
    assert status["state"] == "offline" and status["agent"] == "alpha"
    assert status["instance"] == instance, "the offline names the instance the stale online named"
    contract.validate_status(status)
    assert wait_for(lambda: _agrees(inventory), 20), _health(inventory)
    again = json.loads(run("broker.deploy", "--json", inventory=inventory, check=0).stdout)
    assert again["changed"] == 0, "nothing left to correct: an unchanged deploy changes nothing"
    assert "bus retained states" not in {i["item"] for i in again["items"]}


def test_heal_watch_corrects_it_when_it_sees_the_broker_restart(fleet):
    inventory, state = fleet
    run("agent.hatch", inventory=inventory, check=0)
    heal = start("fleet.heal", "--watch", "--json", "--duration", "60", inventory=inventory)
    try:
        time.sleep(2.0)
        port, instance = _stale_online_after_kill_9(inventory, state)
        # restarted by the provisioning code alone: broker.deploy's own correction is not in it
        assert apply_plan("restart", deploy_plan(load_inventory(inventory))).ok
        assert wait_for(lambda: (_status(state, port, "alpha") or {}).get("state") == "offline", 30)
        assert _status(state, port, "alpha")["instance"] == instance
        assert wait_for(lambda: _agrees(inventory), 20), _health(inventory)
    finally:
        out, err = interrupt(heal)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    corrected = [a for a in lines if a["action"] == "corrected-retained"]
    assert [a["agent"] for a in corrected] == ["alpha"], (out, err)
    assert not [a for a in lines if a["agent"] == "alpha" and a["action"] == "restarted"]


def test_only_an_online_announced_before_the_start_is_stale():
    now = time.time()
    state = FleetState({"old": 30.0, "new": 30.0, "off": 30.0, "none": 30.0}, "zephyr")

    def state_message(name, online, ts):
        payload = contract.make_state(name, "online" if online else "offline", instance="abcdefgh12")
        payload["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"
        state.observe(Message(contract.topic(name, "status"), contract.encode(payload), True, now))

    state_message("old", True, now - 60)
    state_message("new", True, now - 1)
    state_message("off", False, now - 60)
    assert stale_online(state, ["old", "new", "off", "none"], None) == []
    state.observe(Message(BROKER_UPTIME_TOPIC, b"10 seconds", True, now))
    assert stale_online(state, ["old", "new", "off", "none"], state.broker_started) == [("old", "abcdefgh12")]


def test_deploy_plans_the_correction_only_where_a_saved_state_can_exist(tmp_path):
    from hatchery.core.paths import state_paths
    from hatchery.core.plan import Action
    from hatchery.operate.aftercrash import deploy_changes
    inv = load_inventory(write_inventory(tmp_path, free_port(), AGENTS))     # nothing listens there
    assert deploy_changes(inv) == [], "a first start: no saved retained state to roll back"
    Path(state_paths(inv).broker_dir).mkdir(parents=True)                 # it ran here before
    [again] = deploy_changes(inv)
    assert again.action is Action.CHECK and again.apply is not None
