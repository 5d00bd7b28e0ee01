"""The dashboard's hour of history: bounded rings, the timeline, and the model's time context
(pure: captured messages and a clock of our own, no broker)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent_kit import contract
from hatchery.bus.client import Message
from hatchery.core.intent import IntentBook, Lease, Stopped
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import history, live

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _inv(*names):
    return Inventory(Path("/nonexistent.yaml"), manager="mgr",
                     agents={n: AgentSpec(n, heartbeat_interval=10) for n in names},
                     state_dir=Path("/nonexistent/.hatchery"))


def _ts(at: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _msg(name, kind, body, at):
    return Message(f"fleet/{name}/{kind}", json.dumps(body).encode(), False, at)


def beat(name, at, mem_kb=20000, cpu=0.01, **extra):
    return _msg(name, "heartbeat", {"v": 1, "ts": _ts(at), "agent": name, "ok": True,
                                    "uptime": 5, "mem_kb": mem_kb, "cpu": cpu, **extra}, at)


def state(name, online, at, instance=None):
    body = {"v": 1, "ts": _ts(at), "agent": name, "kind": "state",
            "state": "online" if online else "offline"}
    if instance:
        body["instance"] = instance
    return _msg(name, "status", body, at)


# --- the stores ---------------------------------------------------------------------------

def test_a_ring_is_fixed_size_and_keeps_exactly_the_last_hour():
    ring = history.Ring()
    assert ring.nbytes() == history.SPARK_BYTES == 2880
    # the whole object, arrays included: what one agent's hour costs the dashboard
    whole = sys.getsizeof(ring) + sys.getsizeof(ring.stamps) + sys.getsizeof(ring.values)
    assert whole <= 3200, whole                  # 3,144 bytes on CPython 3.11
    step = history.SPARK_STEP
    for i in range(2 * history.SPARK_SLOTS):                 # two hours, one sample a slot
        ring.put(T0 + i * step, (1000 + i, 0.5, None))
    assert whole == sys.getsizeof(ring) + sys.getsizeof(ring.stamps) + sys.getsizeof(ring.values)
    last = int((T0 + (2 * history.SPARK_SLOTS - 1) * step) // step)
    series = ring.series(last - history.SPARK_SLOTS + 1, last)
    assert series["mem_kb"][0] == 1000 + history.SPARK_SLOTS and series["mem_kb"][-1] == 1000 + 2 * history.SPARK_SLOTS - 1
    assert set(series["rtt_ms"]) == {None} and series["cpu"][5] == 0.5
    older = ring.series(last - 2 * history.SPARK_SLOTS + 1, last - history.SPARK_SLOTS)
    assert set(older["mem_kb"]) == {None}, "an overwritten slot never answers for an older one"


def test_sparks_hand_out_only_what_a_reader_lacks():
    sparks = history.Sparks()
    sparks.put("a", T0, 100, 0.1, 5.0)
    sparks.put("b", T0 - 3000, 100, 0.1, None)
    answer = sparks.since(T0 + 30)
    assert set(answer["agents"]) == {"a", "b"} and answer["last"] - answer["first"] == history.SPARK_SLOTS - 1
    recent = sparks.since(T0 + 30, first=int(T0 // history.SPARK_STEP))
    assert set(recent["agents"]) == {"a"}
    assert recent["agents"]["a"]["rtt_ms"][0] == 5.0 and len(recent["agents"]["a"]["cpu"]) == 2


def test_fleet_counts_keep_a_short_dip():
    counts = history.FleetCounts()
    counts.put(T0, {"online": 10})
    counts.put(T0 + 1, {"online": 9, "offline": 1})      # a dip inside the same slot
    counts.put(T0 + 2, {"online": 10})
    answer = counts.since(T0 + 2)
    assert answer["counts"]["online"][-1] == 9 and answer["counts"]["offline"][-1] == 1
    assert answer["counts"]["stale"][0] is None           # an hour ago: nothing recorded


def test_the_timeline_is_bounded_and_numbered():
    timeline = history.Timeline(kept=5)
    for i in range(8):
        timeline.add(T0 + i, "state", "a", f"e{i}")
    assert [e.text for e in timeline.after(0)] == ["e3", "e4", "e5", "e6", "e7"]
    assert [e.seq for e in timeline.after(6)] == [7, 8]


# --- the model's time context -------------------------------------------------------------

def test_since_at_start_comes_from_the_facts_and_later_from_the_change():
    clock = Clock(T0)
    model = live.FleetModel(_inv("up", "quiet", "down", "never"), clock=clock)
    model.state.observe_all([state("up", True, T0 - 100), beat("up", T0 - 2),
                             state("quiet", True, T0 - 500), beat("quiet", T0 - 40),
                             state("down", True, T0 - 900), beat("down", T0 - 300),
                             state("down", False, T0 - 900)])     # a Will carries the birth's ts
    version, first = model.changes_since(-1)
    rows = {r["agent"]: r for r in first}
    assert (rows["up"]["state"], rows["up"]["since"]) == ("online", T0 - 100)    # its birth
    assert (rows["quiet"]["state"], rows["quiet"]["since"]) == ("stale", T0 - 40 + 20)   # crossed 2 x 10 s
    assert (rows["down"]["state"], rows["down"]["since"]) == ("offline", T0 - 300)   # its last word
    assert rows["never"]["since"] is None
    assert rows["up"]["since_exact"] and not rows["down"]["since_exact"]
    clock.now = T0 + 5
    model.observe(state("up", False, T0 + 5))
    version, changed = model.changes_since(version)
    assert [(r["agent"], r["state"], r["since"], r["since_exact"]) for r in changed] == \
        [("up", "offline", T0 + 5, True)]
    assert [(e.kind, e.agent, e.text) for e in model.history.timeline.after(0)] == \
        [("state", "up", "online → offline")]


def test_alerts_and_heal_actions_go_on_the_timeline_with_their_time():
    clock = Clock(T0)
    model = live.FleetModel(_inv("a"), clock=clock)
    model.observe(state("a", True, T0))
    model.refresh()
    alert = contract.make_alert("a", "dropped-message", count=3)
    model.observe(Message("fleet/a/alert", contract.encode(alert), False, T0 + 1))
    heal = contract.make_alert("a", "heal-restart", reason="offline", count=1)
    heal["ts"] = _ts(T0 + 2)
    model.observe(Message("fleet/mgr/alert", contract.encode(heal), False, T0 + 2.5))
    clock.now = T0 + 1
    model.refresh()
    model.refresh()
    events = [(e.kind, e.agent, e.text, e.at) for e in model.history.timeline.after(0)]
    assert ("heal", "a", "heal-restart", T0 + 2) in events
    [row] = model.changes_since(-1)[1]
    assert row["last_alert"] == "heal-restart" and row["last_alert_at"] == T0 + 2


def test_rollout_batches_come_from_the_leases():
    clock, book = Clock(T0), [IntentBook()]
    model = live.FleetModel(_inv("a", "b", "c", "d"), clock=clock, intent=lambda: book[0])
    owner = "fleet.rollout pid 42 on manager"
    steps = [({"a", "b"}, T0 + 1), (set(), None), ({"c", "d"}, T0 + 9), ({"c", "d"}, T0 + 12), (set(), None)]
    for names, taken in steps:
        book[0] = IntentBook(leases={n: Lease(owner, T0 + 600, taken) for n in names})
        clock.now += live.INTENT_EVERY + 1
        model.refresh()
    texts = [(e.kind, e.text) for e in model.history.timeline.after(0)]
    assert texts == [("rollout", f"rollout batch 1 started: a, b ({owner})"),
                     ("rollout", f"rollout batch 1 done: a, b ({owner})"),
                     ("rollout", f"rollout batch 2 started: c, d ({owner})"),
                     ("rollout", f"rollout batch 2 done: c, d ({owner})")]
    assert model.history.timeline.after(0)[0].at == T0 + 1      # when the lease was taken


def test_a_retirement_is_an_event_and_its_history_is_dropped():
    clock, book = Clock(T0), [IntentBook()]
    model = live.FleetModel(_inv("a", "b"), clock=clock, intent=lambda: book[0])
    model.state.observe_all([state("a", True, T0), beat("a", T0)])
    model.refresh()
    assert len(model.history.sparks) == 1
    book[0] = IntentBook(retired=frozenset({"a"}), stopped={"b": Stopped(T0 + 1, "agent.stop")})
    clock.now += live.INTENT_EVERY
    model.refresh()
    kinds = {(e.kind, e.agent, e.text) for e in model.history.timeline.after(0)}
    assert kinds == {("retired", "a", "online → retired"), ("state", "b", "missing → stopped")}
    assert len(model.history.sparks) == 0
    stopped = next(r for r in model.snapshot() if r["agent"] == "b")
    assert stopped["since"] == T0 + 1             # when agent.stop recorded it


def test_figures_are_kept_while_online_and_a_gap_while_offline():
    clock = Clock(T0)
    model = live.FleetModel(_inv("a"), clock=clock)
    for i in range(3):
        clock.now = T0 + i * history.SPARK_STEP
        model.observe(state("a", True, T0))
        model.observe(beat("a", clock.now, mem_kb=1000 * (i + 1), cpu=0.1 * i))
        model.refresh()
    clock.now += history.SPARK_STEP
    model.observe(state("a", False, clock.now))
    model.refresh()
    spark = model.history.sparks.since(clock.now)["agents"]["a"]
    assert spark["mem_kb"][-4:] == [1000, 2000, 3000, None]
    fleet = model.history.fleet.since(clock.now)["counts"]
    assert fleet["online"][-1] == 0 and fleet["offline"][-1] == 1


def test_the_history_is_kept_while_no_page_is_open():
    import threading
    import time as clock_time
    model = live.FleetModel(_inv("a"))
    now = clock_time.time()
    model.observe(state("a", True, now))
    model.observe(beat("a", now))
    stop = threading.Event()
    thread = model.keep_time(stop)
    try:
        deadline = clock_time.monotonic() + 5
        while not model.history.sparks.since(clock_time.time())["agents"] and clock_time.monotonic() < deadline:
            clock_time.sleep(0.1)
        assert "a" in model.history.sparks.since(clock_time.time())["agents"]
        assert model.history.fleet.since(clock_time.time())["counts"]["online"][-1] == 1
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
