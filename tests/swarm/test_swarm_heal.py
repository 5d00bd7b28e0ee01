"""fleet.heal on a runtime that reschedules (Swarm): it reports, never restarts; it alerts
when the runtime cannot place an agent and when two instances take turns on one login.
Fixture facts (tests/test_heal_decisions.World), no broker, no runtime."""

from __future__ import annotations

import json

from hatchery.operate.confirm import ALIVE, GONE, Confirmation
from hatchery.operate.heal import CODES, heal_alert
from hatchery.operate.supervisor import DUEL, LEFT_TO_RUNTIME, RESCHEDULED, UNPLACEABLE
from test_fleetstate import NOW, state
from test_heal_decisions import World, offline, online

OLD, NEW = "oldtask000000000000000001", "newtask000000000000000002"


def swarm_world(*names, **policy) -> World:
    world = World(*names, restarts_itself=True, **policy)
    world.supervisor.reschedules = lambda name: True
    return world


def test_a_lost_agent_is_left_to_the_runtime_and_its_return_is_reported():
    world = swarm_world("a").see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = Confirmation("a", GONE, "the runtime says pending", instance=OLD, node="h3")
    world.tick().tick(1).tick(5)
    assert world.restarted == [] and world.did("a") == [LEFT_TO_RUNTIME]      # said once
    world.findings["a"] = Confirmation("a", ALIVE, "runs", instance=NEW, node="h1")
    world.see(*online("a", world.now)).tick(1)
    assert world.did("a") == [LEFT_TO_RUNTIME, RESCHEDULED] and world.restarted == []
    back = world.actions[-1]
    assert f"task {NEW} on h1" in back.detail and back.reason == "offline"
    assert json.loads(json.dumps(heal_alert(back)))["code"] == CODES[RESCHEDULED] == "heal-rescheduled"


def test_an_agent_swarm_cannot_place_is_a_critical_alert():
    world = swarm_world("a").see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = Confirmation("a", GONE, "the runtime says pending",
                                       problem="Swarm cannot place its task: no suitable node")
    world.tick().tick(2)
    assert world.did("a") == [UNPLACEABLE, LEFT_TO_RUNTIME] and world.restarted == []
    alert = heal_alert(world.actions[0])
    assert alert["code"] == "unplaceable" and alert["level"] == "critical"


def test_two_instances_taking_turns_are_alerted_and_shown_as_the_runtime_s_one():
    world = swarm_world("a").see(*online("a", NOW - 30))
    world.findings["a"] = Confirmation("a", ALIVE, "runs", instance=NEW, node="h1")
    for i, instance in enumerate([OLD, NEW, OLD, NEW, OLD]):
        world.now = NOW + i
        world.see(state("a", at=world.now, instance=instance))
    world.tick()
    assert world.did("a") == [DUEL] and world.restarted == []
    assert world.state.facts("a").instance == NEW          # not the last one to announce itself
    assert OLD in world.actions[0].detail and "on h1" in world.actions[0].detail
    world.tick(1)
    assert world.did("a") == [DUEL]                         # once per duel
    world.tick(120)                                        # the turns are long over
    assert world.state.facts("a").confirmed is None
