"""Guards against a quadratic settle on the request/reply path, by counting work.

10,000 synthetic replies are fed to the pending request the way the network
thread feeds them. A trace function counts every Python line and call that
runs while they are fed; a settle that rescans every target per reply runs
~50 million steps, a linear one a few hundred per reply. The budget is per
reply, so the test fails on O(N^2) whatever the machine's speed, and stops
counting (fails fast) as soon as the budget is spent.
"""

from __future__ import annotations

import sys
import time

import pytest

from agent_kit import contract
from hatchery.bus.messages import Message
from hatchery.bus.requests import Pending, Route, filter_matches, filter_regex

AGENTS = 10_000
STEPS_PER_REPLY = 400     # measured ~150 (json, schema and ts checks included)


class BudgetSpent(Exception):
    pass


class StepCounter:
    """sys.settrace hook: counts call and line events, raises past the budget."""

    def __init__(self, budget: int):
        self.budget, self.steps = budget, 0

    def __call__(self, frame, event, arg):
        self.steps += 1
        if self.steps > self.budget:
            raise BudgetSpent(f"more than {self.budget} steps")
        return self

    def __enter__(self):
        sys.settrace(self)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)


def reply_message(name: str, command: dict) -> Message:
    payload = contract.encode(contract.make_reply(name, command, True, result={}))
    return Message(contract.topic(name, "status"), payload, False, time.time())


def state_message(name: str, state: str, retained: bool = False) -> Message:
    payload = contract.encode(contract.make_state(name, state))
    return Message(contract.topic(name, "status"), payload, retained, time.time())


def broadcast_fixture(count: int) -> tuple:
    names = [f"sim-{i:05d}" for i in range(count)]
    pending = Pending(names, "health-check")
    command_id = pending.expect(names)
    command = contract.make_command("health-check", command_id)
    return names, pending, command


def test_settling_10000_replies_costs_linear_work():
    names, pending, command = broadcast_fixture(AGENTS)
    messages = [reply_message(n, command) for n in names]
    route = Route((f"{contract.FLEET_PREFIX}/+/status",), pending.on_message)
    budget = STEPS_PER_REPLY * AGENTS
    try:
        with StepCounter(budget) as counter:
            for index, message in enumerate(messages):
                assert not pending.settled(), f"settled early, after {index} replies"
                if route.matches(message.topic):
                    route.callback(message)
    except BudgetSpent:
        pytest.fail(f"settling {AGENTS} replies took more than {STEPS_PER_REPLY} "
                    "steps per reply: a rescan per reply (quadratic) is back")
    assert pending.settled()
    assert counter.steps > AGENTS, "the counter saw the work"
    replies = pending.replies()
    assert len(replies) == AGENTS and all(r.state == "answered" for r in replies)


def test_wait_wakes_once_all_settled_and_not_per_reply():
    names, pending, command = broadcast_fixture(1000)
    wakes = []

    class CountingCondition(type(pending.cond)):
        def notify(self, n=1):
            wakes.append(n)
            super().notify(n)

        def notify_all(self):
            wakes.append("all")
            super().notify_all()

    pending.cond = CountingCondition()
    for name in names[:-1]:
        pending.on_message(reply_message(name, command))
    assert wakes == [], "no wake-up before the last reply"
    pending.on_message(state_message(names[-1], contract.STATE_OFFLINE))
    assert wakes == [1] and pending.settled()
    started = time.monotonic()
    pending.wait(5)     # returns at once: nothing outstanding
    assert time.monotonic() - started < 1


def test_offline_then_online_again_is_waited_for():
    names, pending, command = broadcast_fixture(2)
    pending.on_message(reply_message(names[0], command))
    pending.on_message(state_message(names[1], contract.STATE_OFFLINE))
    assert pending.settled()
    pending.on_message(state_message(names[1], contract.STATE_ONLINE))
    assert not pending.settled(), "back online: its answer is due again"
    pending.on_message(reply_message(names[1], command))
    assert pending.settled()
    assert [r.state for r in pending.replies()] == ["answered", "answered"]


def test_retained_states_at_subscribe_settle_only_the_offline():
    names, pending, command = broadcast_fixture(3)
    pending.on_message(state_message(names[0], contract.STATE_ONLINE, retained=True))
    pending.on_message(state_message(names[1], contract.STATE_OFFLINE, retained=True))
    assert pending.unsettled == {names[0], names[2]}
    assert [r.state for r in pending.replies()] == ["silent", "offline", "silent"]


def test_replies_with_a_wrong_id_or_from_strangers_settle_nothing():
    names, pending, command = broadcast_fixture(2)
    forged = dict(command, id="not-the-one")
    pending.on_message(reply_message(names[0], forged))
    pending.on_message(reply_message("stranger", command))
    assert pending.unsettled == set(names)


@pytest.mark.parametrize("pattern, topic, expected", [
    ("fleet/+/status", "fleet/a/status", True),
    ("fleet/+/status", "fleet/a/heartbeat", False),
    ("fleet/+/status", "fleet/a/b/status", False),
    ("fleet/#", "fleet", True),
    ("fleet/#", "fleet/a/status", True),
    ("#", "$SYS/broker/uptime", False),
    ("+/broadcast", "$SYS/broadcast", False),
    ("+/broadcast", "zephyr/broadcast", True),
    ("fleet/+", "fleet/", True),
    ("fleet/+/+", "fleet/a", False),
    ("#", "fleet/a/status", True),
    ("#", "/", True),
    ("+", "", True),
    ("+/+", "/", True),
    ("a.b/+", "aXb/c", False),
    ("fleet/+/status", "fleet/a/status\n", False),
    ("fleet/#", "fleet/a\nb", True),
    ("hatchery/probe/x", "hatchery/probe/x", True),
])
def test_filter_matching_follows_mqtt(pattern, topic, expected):
    import paho.mqtt.client as mqtt
    assert filter_matches(tuple(pattern.split("/")), topic.split("/")) is expected
    assert (filter_regex([pattern]).fullmatch(topic) is not None) is expected
    assert Route((pattern,), print).matches(topic) is expected
    assert mqtt.topic_matches_sub(pattern, topic) is expected, "same answer as paho"
