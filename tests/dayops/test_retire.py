"""Retire is for good; agent.logs. A real broker with auth, real handlers, raw paho clients."""

from __future__ import annotations

import json
import threading

import pytest
from dayops import (
    bring_up,
    handlers,
    interrupt,
    raw_client,
    retained_on,
    run,
    start,
    take_down,
    wait_for,
    write_inventory,
)


AGENTS = ("r1", "r2", "r3")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("retire")
    inventory, state, port = bring_up(directory, AGENTS)
    yield inventory, state, port
    write_inventory(directory, port, AGENTS)        # a failed test may have left it half edited
    assert take_down(inventory, state) == {}


def test_retire_then_hatch_stays_retired_and_its_topics_are_gone(fleet):
    inventory, state, port = fleet
    assert wait_for(lambda: len(retained_on(state, port, "fleet/r2/#", 0.5)) == 2), \
        "r2's retained heartbeat and status should be there before the retire"
    secret = (state / "secrets" / "r2.password").read_text().strip()
    out = run("agent.retire", "--name", "r2", inventory=inventory, check=0).stdout
    assert "cleared fleet/r2/heartbeat, fleet/r2/status" in out
    assert retained_on(state, port, "fleet/r2/#") == {}          # read back with a raw client
    assert "r2" not in handlers(state)

    text = inventory.read_text()
    assert "# retired by agent.retire on" in text and "#   version_command: 'echo r2-1.0'" in text
    assert "# r1 is one of ours" in text and "# r3 is one of ours" in text

    again = run("agent.hatch", inventory=inventory, check=0)
    assert "r2" not in again.stdout and "r2" not in handlers(state)
    assert not (state / "secrets" / "r2.password").exists()
    assert "r2:" not in (state / "broker" / "passwd").read_text()
    assert _refused(state, port, "r2", secret)                 # its old secret no longer works
    assert retained_on(state, port, "fleet/r2/#") == {}
    snapshot = json.loads(run("fleet.monitor", "--json", inventory=inventory, check=0).stdout)
    assert "r2" not in json.dumps(snapshot)


def _refused(state, port, user, secret) -> bool:
    client, connected = raw_client(state, port, user, password=secret)
    client.loop_stop()
    return bool(connected) and connected[0].is_failure


def test_restored_entry_needs_an_explicit_name(fleet):
    inventory, state, port = fleet
    write_inventory(inventory.parent, port, AGENTS)      # someone puts the entry back
    plain = run("agent.hatch", inventory=inventory, check=0).stdout
    assert "retired (agent.retire)" in plain and "r2" not in handlers(state)
    named = run("agent.hatch", "--name", "r2", inventory=inventory, check=0).stdout
    assert "agent r2" in named and wait_for(lambda: "r2" in handlers(state))


def test_logs_tail_and_follow(fleet):
    inventory, state, port = fleet
    log = state / "agents" / "r1" / "handler.log"
    last = log.read_text().splitlines()[-1]
    out = run("agent.logs", "--name", "r1", "--lines", "1", inventory=inventory, check=0).stdout
    assert out.splitlines() == [last]
    assert run("agent.logs", "--name", "r1", "--lines", "0", inventory=inventory, check=0).stdout == ""
    assert run("agent.logs", "--name", "r1", "--lines", "-3", inventory=inventory, check=2)

    follow = start("agent.logs", "--name", "r1", "--follow", "--lines", "1", inventory=inventory)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: lines, timeout=30), "the follower never printed the last line"
        manager, _ = raw_client(state, port, "zephyr")
        manager.publish("fleet/r1/command", b"not json at all", qos=1).wait_for_publish(5)
        manager.disconnect()
        manager.loop_stop()
        assert wait_for(lambda: any("dropped a message on fleet/r1/command (not-json" in line
                                    for line in lines), timeout=10), lines
    finally:
        _, err = interrupt(follow, timeout=10)
    assert follow.returncode == 0, err


def test_logs_of_an_unknown_agent_is_a_usage_error(fleet):
    inventory, _, _ = fleet
    assert "nobody" in run("agent.logs", "--name", "nobody", inventory=inventory, check=2).stderr
