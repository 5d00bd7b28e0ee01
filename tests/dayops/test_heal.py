"""Self-healing: fleet.heal (one pass) and fleet.heal --watch (the supervisor) against
real handlers killed with SIGKILL, the alerts read back with a raw paho client, and
the exporter's hatchery_heal_actions_total."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from dayops import (
    bring_up,
    handlers,
    interrupt,
    listen,
    retained_on,
    run,
    start,
    take_down,
    wait_for,
    write_inventory,
)

from agent_kit import contract
from hatchery.bus.client import Message
from hatchery.bus.commands import run_command
from hatchery.inventory.load import load_inventory
from hatchery.observe.exporter import BusMetrics
from hatchery.operate.heal import (
    LEFT_DOWN,
    RESTARTED,
    HealAction,
    Policy,
    Tracker,
    heal_alert,
)

AGENTS = ("h1", "h2", "h3")
BUDGET = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("heal")
    inventory, state, port = bring_up(directory, AGENTS)
    alerts, client = listen(state, port, "monitor", "fleet/zephyr/alert")
    yield inventory, state, port, alerts
    client.disconnect()
    client.loop_stop()
    take_down(inventory, state)


def _answers(inventory, name: str) -> bool:
    inv = load_inventory(inventory, env={})
    return run_command(inv, "health-check", names=[name], timeout=1.0).ok


def _retained_state(state, port: int, name: str) -> str | None:
    topic = contract.topic(name, "status")
    payload = retained_on(state, port, topic, wait=0.3).get(topic)
    return json.loads(payload).get("state") if payload else None


def _kill(state, name: str) -> int:
    [pid] = handlers(state)[name]
    os.kill(pid, signal.SIGKILL)
    return pid


def test_one_pass_restarts_a_killed_handler(fleet):
    inventory, state, port, alerts = fleet
    old = _kill(state, "h1")
    # the broker publishes the Last Will at once, but a busy machine may run it late
    assert wait_for(lambda: _retained_state(state, port, "h1") == "offline", timeout=10)
    done = run("fleet.heal", "--json", inventory=inventory, check=0)
    actions = json.loads(done.stdout)["items"]
    assert [(a["agent"], a["reason"], a["action"]) for a in actions] == [("h1", "offline", RESTARTED)]
    assert handlers(state)["h1"] != [old]
    assert wait_for(lambda: _answers(inventory, "h1"), timeout=10)     # the new handler connects
    assert wait_for(lambda: any(a["agent"] == "h1" and a["code"] == "heal-restart" for a in alerts), 5)
    again = json.loads(run("fleet.heal", "--json", inventory=inventory, check=0).stdout)
    assert again["items"] == [] and again["ok"]


@pytest.fixture(scope="module")
def supervisor(fleet):
    inventory = fleet[0]
    cli = start("fleet.heal", "--watch", "--json", "--budget", str(BUDGET), "--grace", "2",
                inventory=inventory)
    lines: list = []
    reader = threading.Thread(target=lambda: [lines.append(json.loads(line)) for line in cli.stdout],
                              daemon=True)
    reader.start()
    time.sleep(2.0)                     # connected and subscribed
    assert cli.poll() is None, cli.stderr.read()
    yield lines
    interrupt(cli)


def test_watch_brings_a_killed_handler_back_within_five_seconds(fleet, supervisor):
    inventory, state, _, alerts = fleet
    old = _kill(state, "h2")
    killed = time.monotonic()
    assert wait_for(lambda: handlers(state).get("h2", [old]) != [old] and _answers(inventory, "h2"),
                    timeout=5.0, step=0.05)
    assert time.monotonic() - killed < 5.0
    assert any(a["agent"] == "h2" and a["action"] == RESTARTED for a in supervisor)
    assert wait_for(lambda: any(a["agent"] == "h2" and a["code"] == "heal-restart" for a in alerts), 5)


def test_a_crash_looping_handler_is_restarted_only_within_budget_then_alerted(fleet, supervisor):
    inventory, state, _, alerts = fleet
    (state / "agents" / "h3" / "agent.json").write_text("{not json")   # every start now dies at once
    _kill(state, "h3")
    assert wait_for(lambda: any(a["agent"] == "h3" and a["action"] == LEFT_DOWN for a in supervisor),
                    timeout=30)
    time.sleep(3.0)                     # and nothing after it
    mine = [a["action"] for a in supervisor if a["agent"] == "h3"]
    assert len(mine) == BUDGET + 1 and mine[-1] == LEFT_DOWN, mine
    assert not handlers(state).get("h3")
    gave_up = [a for a in alerts if a["agent"] == "h3" and a["code"] == "heal-gave-up"]
    assert len(gave_up) == 1 and gave_up[0]["level"] == "critical" and gave_up[0]["count"] == BUDGET
    run("agent.hatch", "--name", "h3", inventory=inventory, check=0)      # the fix: hatch rewrites it


def test_exporter_counts_heal_actions_from_the_managers_topic_only(tmp_path):
    inv = load_inventory(write_inventory(tmp_path, 1883, AGENTS), env={})
    metrics = BusMetrics(inv)
    alert = contract.encode(heal_alert(HealAction("h1", "offline", RESTARTED, restarts=1)))
    for topic in ("fleet/zephyr/alert", "fleet/zephyr/alert", "fleet/h2/alert"):   # h2 cannot fake one
        metrics.observe(Message(topic, alert, False, time.time()))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in metrics.collect() for s in family.samples}
    assert samples[("hatchery_heal_actions_total", (("action", "restart"), ("agent", "h1")))] == 2
    assert not [k for k in samples if k[0] == "hatchery_heal_actions_total" and ("agent", "h2") in k[1]]


def test_tracker_backoff_and_budget():
    tracker = Tracker(Policy(budget=3, window=60, backoff=1, grace=0))
    assert tracker.decide(0) == "restart" and tracker.restarted(0) == 1
    assert tracker.decide(0.5) == "wait" and tracker.decide(1.0) == "restart"
    tracker.restarted(1.0)
    assert tracker.decide(2.5) == "wait" and tracker.decide(3.0) == "restart"     # 2 s backoff
    tracker.restarted(3.0)
    assert tracker.decide(7.0) == "give-up" and tracker.decide(8.0) == "wait"     # left down
    assert Tracker(Policy(budget=3, window=60)).decide(0) == "restart"
