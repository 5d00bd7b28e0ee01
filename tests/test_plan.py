"""Plan/apply, the state lock and what a diff may show (pure logic, no services)."""

import threading
import time

from hatchery.core.plan import CHANGED, FAILED, OK, WOULD_CHANGE, Action, Change, apply_plan, bind
from hatchery.core.state import state_lock
from hatchery.errors import RuntimeFailure
from hatchery.runtime.docker import shown_env


def _boom():
    raise PermissionError(1, "Operation not permitted", "/run/x.pid")


def test_every_item_is_reported_even_after_a_failure():
    made = []
    changes = [Change("a", "create", apply=lambda: made.append("a")),
               Change("b", "create", apply=_boom),
               Change("c", "none"),
               Change("d", "update", apply=lambda: (_ for _ in ()).throw(RuntimeFailure("no"))),
               Change("e", "create", apply=lambda: made.append("e"))]
    report = apply_plan("t", changes)
    assert [r.status for r in report.results] == [CHANGED, FAILED, OK, FAILED, CHANGED]
    assert made == ["a", "e"] and not report.ok
    assert report.results[1].error == "Operation not permitted (/run/x.pid)"


def test_check_mode_applies_nothing():
    made = []
    report = apply_plan("t", [Change("a", "create", apply=lambda: made.append(1)), Change("b")],
                        check=True)
    assert made == [] and [r.status for r in report.results] == [WOULD_CHANGE, OK]


def test_a_planned_failure_fails_in_check_mode_and_when_applied():
    """A planner's FAILED (nothing to roll back to) is never "would change"; applied, its
    bound step says the fix; without a step it still fails (never "changed")."""
    failed = Change("agent a", Action.FAILED, "nothing to roll back to")
    checked = apply_plan("t", [failed], check=True)
    assert checked.results[0].status == FAILED and not checked.ok and checked.changed == []
    bound = bind(failed, "", {}, fix="hatch it again")
    applied = apply_plan("t", [bound]).results[0]
    assert applied.status == FAILED and applied.error == "nothing to roll back to\n  fix: hatch it again"
    assert apply_plan("t", [failed]).results[0].status == FAILED
    assert Change("b", "restart").action is Action.RESTART and f"{Action.RESTART}" == "restart"


def test_diffs_show_our_variables_but_never_the_operators_values():
    shown = shown_env({"HATCHERY_AGENT_NAME": "a", "OPENAI_KEY": "sk-live-123"})
    assert shown["HATCHERY_AGENT_NAME"] == "a"
    assert "sk-live-123" not in str(shown) and shown["OPENAI_KEY"].startswith("sha256:")
    assert shown_env({"X": "1"}) != shown_env({"X": "2"})  # a change is still seen


def test_the_state_lock_lets_one_task_in_at_a_time(tmp_path):
    inside, overlaps = [], []

    def task():
        with state_lock(tmp_path):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.2)
            inside.pop()
    threads = [threading.Thread(target=task) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert overlaps == [1, 1, 1]
