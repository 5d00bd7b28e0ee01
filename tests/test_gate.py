"""The rollout gate bound to the runtime's instance, and the request path that hands it every
reply: pure, with fixture messages and replies (no broker)."""

from __future__ import annotations

import json
import time

from agent_kit import contract, messages
from hatchery.bus.messages import ANSWERED, OFFLINE, SILENT, Message, Reply
from hatchery.bus.requests import Pending
from hatchery.operate.gate import Gate

REAL, FORGED = "1111aaaa2222bbbb", "9999ffff8888eeee"
SINCE = 1_800_000_000.0


def birth(name: str, instance=None, at: float = SINCE + 1) -> messages.State:
    return messages.State(name, at, True, instance)


def reply(name: str, verb="health-check", instance=REAL, ok=True, result=None, others=()) -> Reply:
    return Reply(name, ok, verb, "c0ffee", 1.0, result or {}, None, ANSWERED if ok else "failed",
                 instance, list(others))


def other(instance=FORGED, ok=True, result=None) -> dict:
    return {"instance": instance, "ok": ok, "result": result or {}, "error": None}


def test_only_a_birth_from_the_started_instance_after_the_restart_counts():
    gate = Gate({"a": REAL}, None, SINCE)
    gate.birth(birth("a", FORGED))
    assert gate.result().problems["a"].endswith("; 1 birth naming another instance ignored")
    gate.birth(birth("a", None))
    gate.birth(birth("a", REAL, at=SINCE - 5))          # the previous handler's retained online
    assert gate.born() == []
    assert "2 births naming another instance ignored" in gate.result().problems["a"]
    gate.birth(birth("a", REAL))
    assert gate.born() == ["a"]


def test_a_reply_from_another_instance_is_not_the_agents_answer():
    gate = Gate({"a": REAL}, "4.0", SINCE)
    gate.birth(birth("a", REAL))
    gate.health([reply("a", instance=FORGED)])
    assert gate.healthy == set()
    gate.health([reply("a")])
    gate.version([reply("a", "version-report", result={"version": "3.9"})])
    gate.settle()
    assert gate.result().problems == {"a": "version-report said '3.9', expected '4.0'"}


def test_contradictory_replies_fail_the_agent_and_name_what_its_own_instance_said():
    gate = Gate({"a": REAL, "b": REAL}, "4.0", SINCE)
    for name in ("a", "b"):
        gate.birth(birth(name, REAL))
    gate.health([reply("a"), reply("b")])
    forged = other(result={"version": "4.0"})
    gate.version([reply("a", "version-report", result={"version": "3.9"}, others=[forged]),
                  reply("b", "version-report", result={"version": "4.0"})])
    gate.settle()
    result = gate.result()
    assert result.conflicts == {"a": "version-report"} and gate.waiting == []
    assert "conflicting replies to version-report" in result.problems["a"]
    assert "'3.9'" in result.problems["a"] and "b" not in result.problems


def test_a_duplicate_of_the_same_answer_is_no_conflict():
    same = reply("a", others=[{"instance": REAL, "ok": True, "result": {}, "error": None}])
    assert not same.conflict
    assert reply("a", others=[other(instance=REAL, result={"x": 1})]).conflict


def test_a_runtime_without_instances_leaves_the_gate_unbound():
    gate = Gate({"a": None}, None, SINCE)
    gate.birth(birth("a", None))
    gate.health([reply("a", instance=None)])
    gate.settle()
    assert gate.waiting == [] and gate.result().problems == {}
    assert gate.bound(["a"]) == {}


# --- the request path: every reply kept, only the bound instance settles -----------

def _status(name: str, payload: dict, retain=False) -> Message:
    return Message(f"fleet/{name}/status", json.dumps(payload).encode(), retain, time.time())


def _reply_payload(name: str, command_id: str, instance=None, version="4.0") -> dict:
    body = contract.make_reply(name, {"id": command_id, "verb": "version-report"}, True,
                               {"version": version}, instance=instance)
    return body


def test_pending_bound_to_an_instance_keeps_the_forgery_and_settles_on_the_real_answer():
    pending = Pending(["a"], "version-report", instances={"a": REAL})
    command_id = pending.expect(["a"])
    pending.on_message(_status("a", contract.make_state("a", "offline")))          # forged, unbound
    pending.on_message(_status("a", _reply_payload("a", command_id, FORGED)))      # answers first
    assert not pending.settled()
    pending.on_message(_status("a", _reply_payload("a", command_id, REAL, version="3.9")))
    assert pending.settled()
    [got] = pending.replies()
    assert (got.state, got.instance, got.result["version"]) == (ANSWERED, REAL, "3.9")
    assert got.others[0]["instance"] == FORGED and got.conflict


def test_pending_takes_a_will_only_from_the_bound_instance():
    pending = Pending(["a"], "health-check", instances={"a": REAL})
    pending.expect(["a"])
    pending.on_message(_status("a", contract.make_state("a", "offline", FORGED)))
    assert pending.replies()[0].state == SILENT
    pending.on_message(_status("a", contract.make_state("a", "offline", REAL)))
    assert pending.replies()[0].state == OFFLINE


def test_pending_unbound_takes_the_first_answer_and_keeps_the_rest():
    pending = Pending(["a"], "version-report")
    command_id = pending.expect(["a"])
    pending.on_message(_status("a", _reply_payload("a", command_id, None, version="4.0")))
    pending.on_message(_status("a", _reply_payload("a", command_id, REAL, version="3.9")))
    [got] = pending.replies()
    assert got.result["version"] == "4.0" and got.conflict and "others" in got.as_dict()
    assert "others" not in reply("b").as_dict()


def test_pending_answers_only_is_not_settled_by_a_retained_forged_offline():
    pending = Pending(["a"], "health-check", answers_only=True)
    command_id = pending.expect(["a"])
    pending.on_message(_status("a", contract.make_state("a", "offline"), retain=True))
    assert not pending.settled() and pending.replies()[0].state == SILENT
    pending.on_message(_status("a", _reply_payload("a", command_id)))
    assert pending.settled() and pending.replies()[0].state == ANSWERED
