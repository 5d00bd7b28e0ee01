"""The readers and the operator's intent, through the real CLI on a real local fleet
(Mosquitto with auth, real handlers), and retire's retained leftovers (issue 18 item 5).

- A stop the operator made is ``stopped`` in bus-health and the monitor, and
  bus-health exits 0: cron does not alert on it.
- A retired agent that an older copy of the inventory still lists is
  ``retired``, not ``missing``, and bus-health exits 0.
- Retire leaves nothing retained: not the agent's alert (the manager may not
  clear it), not its selftest message; checked with a raw subscriber. While
  something still publishes as the agent, retire fails naming what is left
  and does not revoke its credentials.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from dayops import bring_up, handlers, raw_client, retained_on, run, take_down, wait_for, write_inventory

from agent_kit import contract
from hatchery.core.intent import record_stopped
from hatchery.inventory.load import load_inventory

AGENTS = ("keep", "halt", "gone", "race")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("intent")
    inventory, state, port = bring_up(directory, AGENTS)
    assert wait_for(lambda: all(len(retained_on(state, port, f"fleet/{n}/#", 0.3)) == 2 for n in AGENTS),
                    timeout=30), "every agent's heartbeat and status before the tests"
    yield inventory, state, port
    write_inventory(directory, port, AGENTS)
    assert take_down(inventory, state) == {}


def _verdicts(inventory, *flags, rc=0) -> dict:
    report = json.loads(run("fleet.bus-health", "--json", *flags, inventory=inventory, check=rc).stdout)
    return {item["agent"]: item for item in report["items"]}


def test_a_stopped_agent_is_stopped_and_bus_health_exits_0(fleet):
    inventory, state, _ = fleet
    run("agent.stop", "--name", "halt", inventory=inventory, check=0)
    record_stopped(load_inventory(inventory, env={}), ["halt"], by="agent.stop")
    assert "halt" not in handlers(state)
    verdicts = _verdicts(inventory, rc=0)
    assert verdicts["halt"]["verdict"] == "stopped" and verdicts["halt"]["intent"] == "stopped"
    assert verdicts["keep"]["verdict"] == "online"
    text = run("fleet.bus-health", inventory=inventory, check=0)
    assert "halt: " not in text.stderr                                  # not a problem line
    assert any(line.split()[:2] == ["halt", "stopped"] for line in text.stdout.splitlines())
    snapshot = json.loads(run("fleet.monitor", "--json", inventory=inventory, check=0).stdout)
    assert {i["agent"]: i["state"] for i in snapshot["items"]}["halt"] == "stopped"


def test_retire_leaves_nothing_retained_and_an_old_inventory_copy_says_retired(fleet):
    inventory, state, port = fleet
    old_copy = inventory.with_name("fleet_inventory.before-retire.yaml")
    old_copy.write_text(inventory.read_text())
    agent, _ = raw_client(state, port, "gone")          # the agent's own login leaves more behind
    agent.publish("fleet/gone/alert", contract.encode(contract.make_alert("gone", "disk-full")),
                  qos=1, retain=True).wait_for_publish(5)
    agent.publish("hatchery/verify/gone/selftest", b"ping", qos=1, retain=True).wait_for_publish(5)
    agent.disconnect()
    agent.loop_stop()
    assert set(retained_on(state, port, "fleet/gone/#")) == {
        "fleet/gone/heartbeat", "fleet/gone/status", "fleet/gone/alert"}
    out = run("agent.retire", "--name", "gone", inventory=inventory, check=0).stdout
    assert "hatchery/verify/gone/selftest (read back: nothing retained)" in out
    assert retained_on(state, port, "fleet/gone/#") == {}                # a raw subscriber
    assert retained_on(state, port, "hatchery/verify/gone/#") == {}
    verdicts = _verdicts(old_copy, rc=0)
    assert verdicts["gone"]["verdict"] == "retired", verdicts["gone"]
    assert "gone" not in run("fleet.bus-health", inventory=old_copy, check=0).stderr


def test_retire_fails_and_keeps_the_credentials_while_something_still_publishes(fleet):
    inventory, state, port = fleet
    secret = (state / "secrets" / "race.password").read_text().strip()
    rogue, _ = raw_client(state, port, "race", password=secret)
    stop = threading.Event()

    def keep_publishing():
        while not stop.wait(0.02):
            beat = contract.encode(contract.make_heartbeat("race", True, 1))
            rogue.publish("fleet/race/heartbeat", beat, qos=1, retain=True)
    publisher = threading.Thread(target=keep_publishing, daemon=True)
    publisher.start()
    try:
        failed = run("agent.retire", "--name", "race", inventory=inventory, check=1)
    finally:
        stop.set()
        publisher.join(5)
        rogue.disconnect()
        rogue.loop_stop()
    said = failed.stdout + failed.stderr
    assert "retained messages are still on fleet/race/heartbeat" in said, said
    assert "its credentials were not revoked" in said
    assert "race:" in (state / "broker" / "passwd").read_text()          # not revoked
    assert "  race:" in inventory.read_text()                            # not commented out
    time.sleep(0.2)
    run("agent.retire", "--name", "race", inventory=inventory, check=0)  # run again: it goes through
    assert retained_on(state, port, "fleet/race/#") == {}
    assert "race:" not in (state / "broker" / "passwd").read_text()
