"""The rollout gate against a client holding one agent's password (a raw paho client that reads
the agent's command topic and answers version-report before the real handler can): the gate
takes only the instance the runtime started, reports what that handler said, fails the agent
on contradictory replies and alerts on the manager's topic."""

from __future__ import annotations

import json
import time

import pytest
from dayops import bring_up, listen, raw_client, run, take_down, wait_for, write_inventory

from agent_kit import contract

AGENTS = ("g1", "g2")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gate")
    inventory, state, port = bring_up(directory, {n: "echo 1.0" for n in AGENTS})
    alerts, monitor = listen(state, port, "monitor", "fleet/zephyr/alert")
    yield directory, port, inventory, state, alerts
    monitor.disconnect()
    monitor.loop_stop()
    take_down(inventory, state)


def _impostor(state, port, name: str, version: str):
    """Logged in with ``name``'s password: answers every version-report on its command topic
    at once, claiming ``version`` (it cannot know the instance the runtime started)."""
    client, connected = raw_client(state, port, name)
    assert connected and not connected[0].is_failure
    answered: list = []

    def on_message(c, userdata, message):
        command = json.loads(message.payload)
        if command.get("verb") == "version-report":
            reply = contract.make_reply(name, command, True, {"version": version})
            c.publish(f"fleet/{name}/status", contract.encode(reply), qos=1)
            answered.append(command["id"])
    client.on_message = on_message
    client.subscribe(f"fleet/{name}/command", qos=1)
    time.sleep(0.3)
    return client, answered


def _roll(directory, port, inventory, state, versions: dict, expect: str):
    write_inventory(directory, port, versions)
    impostor, answered = _impostor(state, port, "g1", expect)
    try:
        done = run("fleet.rollout", "--batch", "2", "--expect-version", expect, "--timeout", "8",
                   "--json", inventory=inventory, check=1)
    finally:
        impostor.disconnect()
        impostor.loop_stop()
    assert answered, "the impostor never saw a version-report to answer"
    return {r["agent"]: r for r in json.loads(done.stdout)["items"]}


def test_an_impostor_cannot_pass_a_broken_handler_through_the_gate(fleet):
    directory, port, inventory, state, alerts = fleet
    outcomes = _roll(directory, port, inventory, state,
                     {"g1": "/nonexistent/agent-4.0 --version", "g2": "echo 4.0"}, "4.0")
    assert outcomes["g1"]["outcome"] == "rolled-back"
    assert "'error" in outcomes["g1"]["detail"]         # what the real handler said, not the impostor
    assert outcomes["g2"]["outcome"] == "updated" and "from instance" in outcomes["g2"]["detail"]


def test_contradictory_replies_fail_the_agent_and_raise_an_alert_naming_it(fleet):
    directory, port, inventory, state, alerts = fleet
    before = len(alerts)
    outcomes = _roll(directory, port, inventory, state, {"g1": "echo 5.0", "g2": "echo 5.0"}, "5.0")
    assert outcomes["g1"]["outcome"] == "rolled-back"
    assert "conflicting replies to version-report" in outcomes["g1"]["detail"]
    assert "its own instance said version '5.0'" in outcomes["g1"]["detail"]
    assert outcomes["g2"]["outcome"] == "updated"
    assert wait_for(lambda: [a for a in alerts[before:] if a["code"] == "conflicting-replies"], 5)
    [alert] = [a for a in alerts[before:] if a["code"] == "conflicting-replies"]
    assert (alert["agent"], alert["reason"], alert["level"]) == ("g1", "version-report", "critical")
