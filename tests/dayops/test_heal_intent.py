"""fleet.heal --watch beside the operator and a rollout, against real handlers on a real broker:
it leaves alone what the operator stopped and what a rollout's lease holds, it restarts only
what the runtime confirms down, and a raw paho client holding one agent's password can neither
make it kill a live handler nor spend its restart budget."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from dayops import (
    bring_up,
    handlers,
    interrupt,
    listen,
    raw_client,
    run,
    start,
    take_down,
    wait_for,
    write_inventory,
)

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.core.intent import read_intent, take_lease
from hatchery.inventory.load import load_inventory
from hatchery.operate.confirm import ALIVE, HUNG, confirm

WORKERS = ("w-a", "w-b", "w-c", "w-d")
SOLO = "solo"
BUDGET = 3


def _versions(version: str = "1.0", broken: tuple = ()) -> dict:
    """Every agent at ``version``; those in ``broken`` with a version_command that cannot run."""
    return {name: f"/nonexistent/agent-{version}" if name in broken else f"echo {version}"
            for name in (*WORKERS, SOLO)}


def write(directory, port: int, version: str, broken: tuple = ()):
    return write_inventory(directory, port, _versions(version, broken), groups={"workers": WORKERS})


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("healintent")
    inventory, state, port = bring_up(directory, _versions(), groups={"workers": WORKERS})
    alerts, client = listen(state, port, "monitor", "fleet/zephyr/alert")
    cli = start("fleet.heal", "--watch", "--json", "--budget", str(BUDGET), "--grace", "2",
                inventory=inventory)
    lines: list = []
    threading.Thread(target=lambda: [lines.append(json.loads(line)) for line in cli.stdout],
                     daemon=True).start()
    time.sleep(2.0)
    assert cli.poll() is None, cli.stderr.read()
    try:
        yield directory, port, inventory, state, alerts, lines
    finally:
        try:
            interrupt(cli)
        finally:
            client.disconnect()
            client.loop_stop()
            take_down(inventory, state)


def _inv(inventory):
    return load_inventory(inventory, env={})


def _answers(inventory, name: str) -> bool:
    """The handler itself answers (a retained, perhaps forged, offline does not end the wait)."""
    with bus_for(_inv(inventory)) as bus:
        return bus.request([name], "health-check", timeout=1.0, answers_only=True)[0].ok


def _pid(state, name: str):
    pids = handlers(state).get(name, [])
    return pids[0] if len(pids) == 1 else None


def _acted(lines: list, name: str) -> list:
    return [line["action"] for line in lines if line.get("agent") == name]


def _lost_a_lock(state) -> list:
    return [p.parent.name for p in (state / "agents").glob("*/handler.log")
            if "holds" in p.read_text(errors="replace")]


def test_a_rollout_with_batch_1_succeeds_under_the_supervisor_and_no_handler_loses_its_lock(fleet):
    directory, port, inventory, state, _, lines = fleet
    assert wait_for(lambda: all(_answers(inventory, n) for n in WORKERS), timeout=20)
    write(directory, port, "4.0")
    try:
        done = run("fleet.rollout", "-g", "workers", "--batch", "1", "--expect-version", "4.0",
                   "--timeout", "15", "--json", inventory=inventory, check=0)
    finally:
        write(directory, port, "4.0")
    report = json.loads(done.stdout)
    assert report["ok"] and report["batches"] == [[n] for n in WORKERS]
    assert {r["outcome"] for r in report["items"]} == {"updated"}
    assert _lost_a_lock(state) == []
    assert not [line for line in lines if line.get("agent") in WORKERS and line["action"] == "restarted"]
    assert read_intent(_inv(inventory)).leases == {}            # every batch's lease released
    # issue 20: a second rollout finds them current and spends no batch on them
    again = json.loads(run("fleet.rollout", "-g", "workers", "--batch", "1", "--json",
                           inventory=inventory, check=0).stdout)
    assert again["batches"] == [] and {r["outcome"] for r in again["items"]} == {"current"}
    checked = json.loads(run("fleet.rollout", "--batch", "1", "--check", "--json",
                             inventory=inventory, check=0).stdout)
    assert {r["agent"]: r["batch"] for r in checked["items"]} == {**{n: None for n in WORKERS}, SOLO: 1}


def test_forged_offlines_with_the_agents_password_spend_no_budget_and_a_real_kill_is_still_healed(fleet):
    _, port, inventory, state, alerts, lines = fleet
    assert wait_for(lambda: _answers(inventory, SOLO), timeout=20)
    live = _pid(state, SOLO)
    attacker, _ = raw_client(state, port, SOLO)          # holds solo's password, nothing more
    try:
        for _ in range(BUDGET):
            forged = contract.encode(contract.make_state(SOLO, contract.STATE_OFFLINE))
            attacker.publish(f"fleet/{SOLO}/status", forged, qos=1, retain=True).wait_for_publish(5)
            time.sleep(1.5)
    finally:
        attacker.disconnect()
        attacker.loop_stop()
    assert wait_for(lambda: any(a["agent"] == SOLO and a["code"] == "telemetry-mismatch" for a in alerts), 10)
    mismatch = next(a for a in alerts if a["code"] == "telemetry-mismatch")
    assert mismatch["reason"] == "offline" and mismatch["level"] == "warning"
    assert _pid(state, SOLO) == live and _answers(inventory, SOLO)      # the live handler was left alone
    assert "restarted" not in _acted(lines, SOLO)
    os.kill(live, signal.SIGKILL)                        # now a real crash: the budget is intact
    assert wait_for(lambda: _pid(state, SOLO) not in (None, live) and _answers(inventory, SOLO),
                    timeout=10, step=0.1)
    assert _acted(lines, SOLO).count("restarted") == 1
    assert wait_for(lambda: any(a["agent"] == SOLO and a["code"] == "heal-restart" and a["reason"] == "gone"
                                for a in alerts), 5)


def test_an_agent_the_operator_stopped_stays_down(fleet):
    _, _, inventory, state, alerts, lines = fleet
    run("agent.stop", "-n", "w-c", inventory=inventory, check=0)
    assert "w-c" in read_intent(_inv(inventory)).stopped
    time.sleep(6.0)                                      # several ticks and a survey
    assert not handlers(state).get("w-c")
    assert _acted(lines, "w-c") == [] and not [a for a in alerts if a["agent"] == "w-c"]
    once = json.loads(run("fleet.heal", "--json", inventory=inventory, check=0).stdout)
    assert [a for a in once["items"] if a["agent"] == "w-c"] == []
    health = json.loads(run("fleet.bus-health", "-n", "w-c", "--json", inventory=inventory, check=0).stdout)
    assert [(i["agent"], i["verdict"]) for i in health["items"]] == [("w-c", "stopped")]
    run("agent.hatch", "-n", "w-c", inventory=inventory, check=0)
    assert "w-c" not in read_intent(_inv(inventory)).stopped and handlers(state).get("w-c")


def test_a_leased_agent_is_left_to_the_rollout_and_an_expired_lease_is_ignored(fleet):
    _, _, inventory, state, _, lines = fleet
    assert wait_for(lambda: _answers(inventory, "w-a"), timeout=20)
    take_lease(_inv(inventory), ["w-a"], "fleet.rollout pid 1 on a-test", 3.0)
    old = _pid(state, "w-a")
    os.kill(old, signal.SIGKILL)
    time.sleep(2.0)
    assert not handlers(state).get("w-a") and _acted(lines, "w-a") == []
    assert wait_for(lambda: _pid(state, "w-a") not in (None, old) and _answers(inventory, "w-a"),
                    timeout=10, step=0.1)               # expired: the crash is healed
    assert _acted(lines, "w-a") == ["restarted"]


def test_ctrl_c_during_a_rollout_releases_its_lease(fleet):
    directory, port, inventory, state, _, _ = fleet
    write(directory, port, "5.0", broken=("w-b",))
    try:
        cli = start("fleet.rollout", "-n", "w-b", "--expect-version", "5.0", "--timeout", "60",
                    inventory=inventory)
        assert wait_for(lambda: read_intent(_inv(inventory)).lease("w-b") is not None, timeout=20)
        time.sleep(1.0)                                  # in the gate, waiting for 5.0
        interrupt(cli)
        assert read_intent(_inv(inventory)).leases == {}
    finally:
        write(directory, port, "4.0")
        run("agent.hatch", inventory=inventory, check=0)


def test_the_runtime_confirms_a_stopped_process_hung_and_a_running_one_alive(fleet):
    _, _, inventory, state, _, _ = fleet
    inv = _inv(inventory)
    assert wait_for(lambda: _answers(inventory, "w-d"), timeout=20)
    pid = _pid(state, "w-d")
    with bus_for(inv) as bus:
        assert confirm(inv, bus, ["w-d"], hung_after=2.0)["w-d"].finding == ALIVE
        os.kill(pid, signal.SIGSTOP)
        try:
            found = confirm(inv, bus, ["w-d"], hung_after=1.0)["w-d"]
            running = _run_states(handlers(state).get("w-d", []))     # who could have answered
        finally:
            os.kill(pid, signal.SIGCONT)
    assert found.finding == HUNG and "did not answer" in found.detail, (found.detail, pid, running)


def _run_states(pids: list) -> dict:
    """{pid: (its state letter, its parent)} from /proc: T is stopped."""
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[pid] = (fields[0].decode(), int(fields[1]))
    return found
