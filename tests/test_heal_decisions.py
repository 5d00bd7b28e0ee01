"""fleet.heal's decisions with fixture facts: a FleetState fed fixture messages, the runtime's
word and the operator's intent as fixtures, a fixed clock. No broker, no runtime."""

from __future__ import annotations

import json

from agent_kit import contract
from hatchery.core.intent import IntentBook, Lease, Stopped
from hatchery.observe.fleetstate import FleetState
from hatchery.operate.confirm import ALIVE, GONE, HUNG, UNASKED, UNHEALTHY, Confirmation
from hatchery.operate.heal import heal_alert
from hatchery.operate.supervisor import (
    CONFLICT,
    LEFT_DOWN,
    MISMATCH,
    RESTARTED,
    UNCONFIRMED,
    UNHEALTHY_RUNTIME,
    Policy,
    Supervisor,
)
from test_fleetstate import NOW, Msg, beat, state, ts

INSTANCE = "abcdef0123456789"


class World:
    """One supervisor and everything it is handed, as plain values a test sets."""

    def __init__(self, *names, restarts_itself=False, **policy):
        self.now = NOW
        self.state = FleetState({n: 30.0 for n in names}, "zephyr", clock=lambda: self.now)
        self.book = IntentBook()
        self.findings: dict = {}            # name -> finding, or a Confirmation
        self.asked: list = []
        self.state_only: list = []
        self.restarted: list = []
        self.actions: list = []
        self.unhealthy: set = set()
        self.restart_result = (True, "started")
        self.supervisor = Supervisor(
            self.state, Policy(**{"grace": 5.0, "backoff": 1.0, **policy}), read_book=lambda: self.book,
            confirm=self.confirm, restart=self.restart, record=self.actions.append,
            restarts_itself=lambda name: restarts_itself, runtime_unhealthy=lambda: self.unhealthy)

    def confirm(self, names: list, state_only: list) -> dict:
        self.asked.append(list(names))
        self.state_only.append(list(state_only))
        found = {}
        for name in names:
            value = self.findings[name]
            found[name] = value if isinstance(value, Confirmation) else Confirmation(name, value)
        return found

    def restart(self, name: str) -> tuple:
        self.restarted.append(name)
        return self.restart_result

    def see(self, *messages) -> "World":
        for message in messages:
            self.state.observe(Msg(message.topic, message.payload, message.retain, self.now))
        return self

    def tick(self, after: float = 0.0) -> "World":
        self.now += after
        self.supervisor.tick(self.now)
        return self

    def did(self, name: str) -> list:
        return [a.action for a in self.actions if a.agent == name]


def online(name: str, at: float) -> list:
    return [beat(name, at=at), state(name, at=at, instance=INSTANCE)]


def offline(name: str, at: float, instance=None) -> Msg:
    return state(name, online=False, at=at, instance=instance)


def test_an_online_agent_is_never_asked_about():
    world = World("a").see(*online("a", NOW)).tick().tick(10)
    assert world.asked == [] and world.actions == []


def test_a_will_confirmed_gone_is_restarted_and_the_alert_names_agent_and_finding():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW, INSTANCE))
    world.findings["a"] = Confirmation("a", GONE, "the runtime says exited")
    world.tick()
    assert world.restarted == ["a"] and world.did("a") == [RESTARTED]
    alert = heal_alert(world.actions[0])
    assert (alert["agent"], alert["code"], alert["reason"], alert["count"]) == ("a", "heal-restart", "gone", 1)


def test_a_forged_offline_the_runtime_contradicts_is_a_mismatch_and_spends_no_budget():
    world = World("a", budget=3).see(*online("a", NOW - 5))
    world.findings["a"] = ALIVE
    for forged in range(3):                         # three forged offlines, each a new message
        world.see(offline("a", world.now)).tick(2.0)
    assert world.restarted == [] and world.did("a") == [MISMATCH] * 3
    assert world.supervisor.tracker("a").recent(world.now) == 0
    alert = heal_alert(world.actions[0])
    assert (alert["agent"], alert["code"], alert["reason"]) == ("a", "telemetry-mismatch", "offline")
    world.findings["a"] = GONE                      # then a real kill -9: its Will, the runtime agrees
    world.see(offline("a", world.now, INSTANCE)).tick(2.0)
    assert world.restarted == ["a"] and world.did("a")[-1] == RESTARTED


def test_a_contradicted_suspicion_is_asked_again_only_on_news_or_after_recheck():
    world = World("a", recheck=30.0).see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = ALIVE
    world.tick()
    for _ in range(10):
        world.tick(1.0)                             # nothing new on the bus: not asked again
    assert len(world.asked) == 1
    world.tick(25.0)
    assert len(world.asked) == 2


def test_stopped_and_retired_agents_are_never_asked_nor_restarted():
    world = World("s", "r").see(offline("s", NOW), offline("r", NOW))
    world.book = IntentBook(stopped={"s": Stopped(NOW - 1, "agent.stop")}, retired=frozenset({"r"}))
    world.findings = {"s": GONE, "r": GONE}
    world.tick().tick(10)
    assert world.asked == [] and world.actions == []


def test_a_valid_lease_holds_heal_off_and_an_expired_one_does_not():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW, INSTANCE))
    world.findings["a"] = GONE
    world.book = IntentBook(leases={"a": Lease("fleet.rollout pid 1 on h", NOW + 10, NOW - 1)})
    world.tick().tick(5.0)
    assert world.asked == [] and world.restarted == []
    world.tick(6.0)                                 # the lease has expired (a killed rollout)
    assert world.restarted == ["a"]


def test_intent_is_read_again_before_acting():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW))
    books = iter([IntentBook(), IntentBook(stopped={"a": Stopped(NOW, "agent.stop")})])
    world.supervisor.read_book = lambda: next(books, IntentBook(stopped={"a": Stopped(NOW, "x")}))
    world.findings["a"] = GONE
    world.tick()                                    # stopped while the runtime was asked
    assert world.asked == [["a"]] and world.restarted == []


def test_unknown_after_a_broker_restart_gets_time_to_re_announce():
    world = World("a", settle=5.0).see(*online("a", NOW - 60))
    world.state.observe(Msg("$SYS/broker/uptime", b"10 seconds", True, NOW))
    world.findings["a"] = ALIVE
    world.tick().tick(2.0)
    assert world.asked == []
    world.see(*online("a", world.now)).tick(4.0)    # it re-announced: never a suspect after all
    assert world.asked == [] and world.actions == []


def test_a_runtime_that_restarts_crashed_agents_goes_first():
    world = World("a", restarts_itself=True, runtime_first=3.0, grace=5.0, runtime_poll=0.25)
    world.see(*online("a", NOW - 5), offline("a", NOW, INSTANCE))
    world.findings["a"] = GONE                      # exited, its restart policy about to act
    world.tick().tick(0.1)
    assert world.asked == []
    for _ in range(8):
        world.tick(0.25)
    assert len(world.asked) == 8 and world.restarted == []                # its state read, left to it
    assert all(only == ["a"] for only in world.state_only)               # no probe: no wait on a reply
    world.findings["a"] = Confirmation("a", HUNG, started_at=NOW + 2.0)    # the runtime restarted it
    world.tick(1.0)
    assert world.restarted == []                                           # still starting: left to it
    world.see(*online("a", world.now)).tick(0.5)
    assert world.actions == []


def test_a_runtime_waiting_out_its_own_restart_backoff_is_overtaken_after_a_second():
    world = World("a", restarts_itself=True, runtime_first=3.0, restarting_after=1.0, runtime_poll=0.25)
    world.see(*online("a", NOW - 5), offline("a", NOW, INSTANCE))
    world.findings["a"] = Confirmation("a", GONE, "the runtime says restarting", restarting=True)
    world.tick()
    for _ in range(3):
        world.tick(0.25)                            # restarting by itself: its turn for a second
    assert world.restarted == [] and len(world.asked) == 3
    world.tick(0.25)                                # then its backoff is skipped by a restart of ours
    assert world.restarted == ["a"] and world.did("a") == [RESTARTED]


def test_a_hung_agent_is_restarted_but_not_while_it_is_starting():
    world = World("a", grace=5.0).see(*online("a", NOW - 100), offline("a", NOW, INSTANCE))
    world.findings["a"] = HUNG
    world.tick()
    assert world.restarted == ["a"]
    world.see(offline("a", world.now)).tick(1.5)    # news within its grace, still silent: starting
    assert world.restarted == ["a"]


def test_a_crash_loop_is_restarted_within_budget_then_left_down_once():
    world = World("a", budget=3, grace=2.0).see(*online("a", NOW - 5), offline("a", NOW, INSTANCE))
    world.findings["a"] = GONE
    for _ in range(40):
        world.tick(0.5)
    assert world.did("a") == [RESTARTED, RESTARTED, RESTARTED, LEFT_DOWN]
    left = heal_alert(world.actions[-1])
    assert left["level"] == "critical" and left["count"] == 3


def test_unasked_runtime_is_alerted_once_and_nothing_is_restarted():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = Confirmation("a", UNASKED, "the engine did not answer")
    world.tick().tick(40.0).tick(40.0)
    assert world.did("a") == [UNCONFIRMED] and world.restarted == []


def test_conflicting_replies_are_alerted_beside_the_finding():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = Confirmation("a", ALIVE, "answered", conflict=True)
    world.tick()
    assert world.did("a") == [CONFLICT, MISMATCH]
    assert heal_alert(world.actions[0])["code"] == "conflicting-replies"


def test_a_lease_taken_by_a_rollout_at_the_last_moment_spends_no_budget():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = GONE
    world.restart_result = (None, "agent a is leased to fleet.rollout")
    world.tick()
    assert world.restarted == ["a"] and world.actions == []
    assert world.supervisor.tracker("a").recent(world.now) == 0


def test_stale_heartbeat_and_runtime_unhealthy_are_suspects_too():
    world = World("old", "sick").see(beat("old", at=NOW - 300), state("old", at=NOW - 300),
                                      *online("sick", NOW))
    world.unhealthy = {"sick"}
    world.findings = {"old": GONE, "sick": UNHEALTHY}
    world.tick()
    assert sorted(world.restarted) == ["old", "sick"]
    assert {a.agent: a.reason for a in world.actions} == {"old": "stale", "sick": UNHEALTHY_RUNTIME}


def test_back_online_ends_the_episode_and_a_later_crash_is_healed():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW, INSTANCE))
    world.findings["a"] = GONE
    world.tick()
    world.see(*online("a", world.now + 1)).tick(1.0)
    assert world.supervisor.episodes == {}
    world.see(offline("a", world.now + 10, INSTANCE)).tick(10.0)
    assert world.did("a") == [RESTARTED, RESTARTED]


def test_every_alert_is_a_valid_contract_alert():
    world = World("a").see(*online("a", NOW - 5), offline("a", NOW))
    world.findings["a"] = Confirmation("a", ALIVE, "answered", conflict=True)
    world.tick()
    for action in world.actions:
        decoded = contract.validate_alert(json.loads(contract.encode(heal_alert(action))))
        assert decoded["agent"] == "a"


def test_fixture_timestamps_round_trip():
    assert contract.parse_rfc3339(ts(NOW)).timestamp() == NOW


def test_every_watch_log_line_carries_a_timestamp(capsys):
    import re

    from hatchery.operate.supervisor import HealAction
    from hatchery.tasks.dayops import _show_action
    _show_action(HealAction("a", "offline", RESTARTED, "gone: exited", 1, "gone", at=NOW + 0.25), json=False)
    _show_action(HealAction("a", "offline", MISMATCH, "not restarted", finding=ALIVE, at=NOW), json=True)
    out, _ = capsys.readouterr()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    text, line = out.splitlines()
    assert re.fullmatch(rf"{stamp} a: offline \(gone\): restarted gone: exited", text)
    assert text.startswith("2027-01-15T08:00:00.250Z")       # when heal acted, not when it was printed
    assert re.fullmatch(stamp, json.loads(line)["ts"])


def test_the_runtimes_word_as_a_finding():
    from hatchery.bus.messages import Reply
    from hatchery.operate.confirm import RUNNING, finding
    from hatchery.runtime.base import AgentState

    def st(**kw):
        return AgentState("a", "local", **{"running": True, "instance": INSTANCE, **kw})
    answered = Reply("a", True, "health-check", "c1", 1.0, {}, None, "answered", INSTANCE)
    foreign = Reply("a", False, "health-check", "c1", others=[{"instance": None, "ok": True}])
    assert finding(st(running=False, status="exited"), None, 3).finding == GONE
    restarting = finding(st(restarting=True, status="restarting"), None, 3)     # docker's own backoff
    assert restarting.finding == GONE and restarting.restarting
    assert finding(st(running=None, problem="engine down"), None, 3).finding == UNASKED
    assert finding(st(health="unhealthy"), None, 3).finding == UNHEALTHY
    assert finding(st(), answered, 3).finding == ALIVE
    hung = finding(st(), foreign, 3)
    assert hung.finding == HUNG and "1 reply(ies) from another instance ignored" in hung.detail
    assert finding(st(), None, 3, probed=False).finding == RUNNING
