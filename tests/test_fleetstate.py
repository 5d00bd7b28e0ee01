"""The one fleet state: folding and judging, with no broker (pure fixtures)."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, dataclass, replace

import pytest

from agent_kit import contract
from hatchery.core.intent import IntentBook, Lease, Stopped
from hatchery.observe.fleetstate import (
    BROKER_UPTIME_TOPIC,
    MAX_EXTRA_AGENTS,
    FleetState,
    Judgement,
    Verdict,
)

NOW = 1_800_000_000.0


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool = True
    received: float = NOW


def ts(at: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def beat(name, at=NOW - 5, ok=True, **extra) -> Msg:
    body = {"v": 1, "ts": ts(at), "agent": name, "ok": ok, "uptime": 10, **extra}
    return Msg(f"fleet/{name}/heartbeat", json.dumps(body).encode())


def state(name, online=True, at=NOW - 5, instance=None, received=NOW) -> Msg:
    body = {"v": 1, "ts": ts(at), "agent": name, "kind": "state",
            "state": "online" if online else "offline"}
    if instance:
        body["instance"] = instance
    return Msg(f"fleet/{name}/status", json.dumps(body).encode(), received=received)


def fleet(*names, interval=60.0) -> FleetState:
    return FleetState({n: interval for n in names}, "zephyr", clock=lambda: NOW)


def verdict(fs: FleetState, name: str, book=IntentBook(), **kw) -> Verdict:
    return fs.judge(name, book, now=NOW, **kw).verdict


def test_online_stale_offline_missing_unhealthy():
    fs = fleet("a", "b", "c", "d", "e")
    fs.observe_all([beat("a"), state("a"), beat("b", at=NOW - 500), state("b"),
                    beat("c"), state("c", online=False), beat("e", ok=False), state("e")])
    assert [j.verdict for j in fs.judge_all(IntentBook(), now=NOW)] == [
        Verdict.ONLINE, Verdict.STALE, Verdict.OFFLINE, Verdict.MISSING, Verdict.UNHEALTHY]


def test_threshold_overrides_the_interval():
    fs = fleet("a").observe_all([beat("a", at=NOW - 30), state("a")])
    assert verdict(fs, "a") is Verdict.ONLINE
    assert verdict(fs, "a", threshold=10) is Verdict.STALE


def test_a_future_heartbeat_is_never_fresh():
    fs = fleet("a").observe_all([beat("a", at=NOW + 3600), state("a")])
    judgement = fs.judge("a", IntentBook(), now=NOW)
    assert judgement.verdict is Verdict.STALE and "future" in judgement.reason


def test_online_older_than_the_broker_start_is_unconfirmed():
    fs = fleet("a").observe_all([beat("a", at=NOW - 40), state("a", at=NOW - 40),
                                 Msg(BROKER_UPTIME_TOPIC, b"20 seconds")])
    judgement = fs.judge("a", IntentBook(), now=NOW)
    assert judgement.verdict is Verdict.UNKNOWN and judgement.problem
    fs.observe(beat("a", at=NOW - 1))
    assert verdict(fs, "a") is Verdict.ONLINE


def test_stopped_and_retired_are_never_problems():
    fs = fleet("a", "b", "c").observe_all([state("a", online=False)])
    book = IntentBook(stopped={"a": Stopped(NOW - 60, "agent.stop")}, retired=frozenset({"b"}))
    judged = {j.agent: j for j in fs.judge_all(book, now=NOW)}
    assert judged["a"].verdict is Verdict.STOPPED and not judged["a"].problem
    assert judged["b"].verdict is Verdict.RETIRED and not judged["b"].problem
    assert judged["c"].verdict is Verdict.MISSING and judged["c"].problem


def test_a_leased_agent_keeps_its_verdict_but_is_no_problem_until_the_lease_expires():
    fs = fleet("a").observe_all([state("a", online=False)])
    held = IntentBook(leases={"a": Lease("fleet.rollout pid 1", NOW + 30, NOW)})
    judgement = fs.judge("a", held, now=NOW)
    assert judgement.verdict is Verdict.OFFLINE and not judgement.problem and "rollout" in judgement.reason
    expired = IntentBook(leases={"a": Lease("fleet.rollout pid 1", NOW - 1, NOW - 60)})
    assert fs.judge("a", expired, now=NOW).problem


def test_a_will_of_an_old_instance_does_not_take_down_its_successor():
    fs = fleet("a").observe_all([beat("a"), state("a", instance="new00001")])
    fs.observe(state("a", online=False, instance="old00001"))
    assert verdict(fs, "a") is Verdict.ONLINE
    fs.observe(state("a", online=False, instance="new00001"))
    assert verdict(fs, "a") is Verdict.OFFLINE


def test_a_payload_naming_another_agent_is_invalid():
    fs = fleet("a", "b")
    fs.observe(Msg("fleet/a/heartbeat", beat("b").payload))
    assert fs.facts("a").invalid == 1 and fs.facts("a").beat is None
    assert verdict(fs, "b") is Verdict.MISSING


def test_cleared_retained_topics_forget_the_agent():
    fs = fleet("a").observe_all([beat("a"), state("a")])
    fs.observe_all([Msg("fleet/a/heartbeat", b""), Msg("fleet/a/status", b"")])
    assert verdict(fs, "a") is Verdict.MISSING


def test_agents_outside_the_inventory_are_capped():
    fs = fleet("a")
    for i in range(MAX_EXTRA_AGENTS + 5):
        fs.observe(beat(f"x{i}"))
    assert len(fs.agents) == 1 + MAX_EXTRA_AGENTS and fs.dropped_extra == 5
    assert not fs.facts("x0").in_inventory


def test_two_instances_taking_turns_are_seen():
    fs = fleet("a")
    for i, instance in enumerate(["aaaaaaaa", "bbbbbbbb", "aaaaaaaa", "bbbbbbbb"]):
        fs.observe(state("a", instance=instance, received=NOW - 10 + i))
    assert fs.facts("a").duelling(NOW) == ("aaaaaaaa", "bbbbbbbb")
    assert fleet("b").observe_all([state("b", instance="aaaaaaaa")]).facts("b").duelling(NOW) == ()


def test_the_instance_the_runtime_confirms_is_the_one_shown_during_a_duel():
    fs = fleet("a")
    fs.confirm("a", "bbbbbbbb")          # e.g. the swarm's running task; aaaaaaaa was left behind
    for i, instance in enumerate(["aaaaaaaa", "bbbbbbbb", "aaaaaaaa", "bbbbbbbb", "aaaaaaaa"]):
        fs.observe(state("a", instance=instance, received=NOW - 10 + i))
        fs.observe(beat("a", instance=instance, ok=instance == "bbbbbbbb"))
    facts = fs.facts("a")
    assert facts.instance == "bbbbbbbb" and facts.online and facts.beat.ok
    assert facts.duelling(NOW) == ("aaaaaaaa", "bbbbbbbb")       # still seen
    fs.observe(state("a", online=False, instance="aaaaaaaa"))    # the left-over one's Will
    assert fs.facts("a").online
    fs.confirm("a", None)
    fs.observe(state("a", instance="aaaaaaaa"))
    assert fs.facts("a").instance == "aaaaaaaa"


def test_versions_come_from_replies_as_printable_text():
    fs = fleet("a")
    reply = {"v": 1, "ts": ts(NOW), "agent": "a", "kind": "reply", "id": "c1",
             "verb": "version-report", "ok": True, "result": {"version": "Python 3.11.7\x1b[2J"}}
    fs.observe(Msg("fleet/a/status", json.dumps(reply).encode(), retain=False))
    assert fs.facts("a").version == "Python 3.11.7?[2J"


def test_heal_alerts_on_the_manager_topic_land_on_the_agent_they_name():
    fs = fleet("a")
    alert = contract.make_alert("a", "heal-restart", reason="offline", count=1, level="warning")
    fs.observe(Msg("fleet/zephyr/alert", contract.encode(alert), retain=False))
    assert fs.facts("a").last_alert == "heal-restart"
    assert fs.manager_alerts[-1].agent == "a"


@pytest.mark.parametrize("payload", [b"not json", b"{}", b'{"v":1}', b"[" * 5000])
def test_bad_payloads_are_counted_not_folded(payload):
    fs = fleet("a")
    assert fs.observe(Msg("fleet/a/heartbeat", payload))
    assert fs.facts("a").invalid == 1 and fs.invalid_by_kind == {"heartbeat": 1}


def _round_trip(fs: FleetState, name: str, command_id: str, sent: float, answered: float,
                instance=None) -> None:
    command = contract.make_command("health-check", command_id)
    fs.observe(Msg(f"fleet/{name}/command", contract.encode(command), retain=False, received=sent))
    reply = {"v": 1, "ts": ts(answered), "agent": name, "kind": "reply", "id": command_id,
             "verb": "health-check", "ok": True, "result": {}}
    if instance:
        reply["instance"] = instance
    fs.observe(Msg(f"fleet/{name}/status", json.dumps(reply).encode(), retain=False,
                   received=answered))


def test_a_round_trip_is_dropped_when_a_new_instance_is_born():
    """heal restarted it: the 499 ms of the old handler says nothing about the new one."""
    fs = fleet("a").observe_all([beat("a"), state("a", instance="old00001")])
    _round_trip(fs, "a", "c1", NOW - 2, NOW - 1.501, instance="old00001")
    assert fs.facts("a").rtt_ms == pytest.approx(499, abs=0.01)
    fs.observe(state("a", instance="old00001"))        # the same instance again (a reconnect)
    assert fs.facts("a").rtt_ms == pytest.approx(499, abs=0.01)
    fs.observe(state("a", online=False, instance="old00001"))   # its Will: still its last answer
    assert fs.facts("a").rtt_ms is not None
    fs.observe(state("a", instance="new00001"))        # a new start
    assert fs.facts("a").rtt_ms is None
    _round_trip(fs, "a", "c2", NOW - 1, NOW - 0.996, instance="new00001")
    assert fs.facts("a").rtt_ms == pytest.approx(4, abs=0.01)


def _every_verdict() -> tuple:
    """A fleet with one agent per verdict (and reason), and a book that stops, retires and leases."""
    names = ("on", "stale", "future", "off", "missing", "sick", "old", "stopped", "retired", "leased")
    fs = fleet(*names).observe_all([
        Msg(BROKER_UPTIME_TOPIC, b"100 seconds"), beat("on"), state("on"),
        beat("stale", at=NOW - 500), state("stale"), beat("future", at=NOW + 300), state("future"),
        beat("off"), state("off", online=False), beat("sick", ok=False), state("sick"),
        beat("old", at=NOW - 900), state("old", at=NOW - 900), beat("stopped"), beat("retired"),
        beat("leased", at=NOW - 500), state("leased")])
    book = IntentBook(stopped={"stopped": Stopped(NOW - 60, "agent.stop")}, retired=frozenset({"retired"}),
                      leases={"leased": Lease("fleet.rollout pid 1", NOW + 60, NOW - 10)})
    return fs, book


def test_judge_every_copies_or_not_judges_alike_and_copies_are_independent():
    fs, book = _every_verdict()
    copied, judged = fs.judge_every(book, now=NOW)
    live, judged_live = fs.judge_every(book, now=NOW, live=True)
    assert judged == judged_live == {n: fs.judge(n, book, now=NOW) for n in fs.agents}
    assert {j.verdict for j in judged.values()} == set(Verdict)
    assert live["on"] is fs.agents["on"] and copied["on"] is not fs.agents["on"]
    copied["on"].alerts["x"] = 1
    copied["on"].births.append((NOW, "zzzzzzzz"))
    assert fs.agents["on"].alerts == {} and len(fs.agents["on"].births) == 1


def test_a_judgement_is_the_dataclass_it_always_was():
    fs, book = _every_verdict()
    for judgement in fs.judge_every(book, now=NOW)[1].values():
        rebuilt = Judgement(judgement.agent, judgement.verdict, judgement.reason, judgement.age_s,
                            judgement.threshold_s, judgement.intent)
        assert judgement == rebuilt and repr(judgement) == repr(rebuilt)
        assert replace(judgement, reason="x").reason == "x"
        with pytest.raises(FrozenInstanceError):
            judgement.reason = "changed"


def test_observe_all_wakes_waiters_once_with_every_change_counted():
    fs = fleet("a", "b")
    fs.observe_all(iter([beat("a"), state("a"), beat("b"), Msg("fleet/b/heartbeat", b"{")]))
    assert fs.version == 4 and fs.facts("b").invalid == 1
    assert fs.changes_since(0)[0] == 4 and not fs.wait_for_change(4, 0.01)
