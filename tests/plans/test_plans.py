"""Plan decisions as data: facts in, actions and reasons out (tests/plans/<runtime>/*.json).

pyinfra's operation tests, for our runtimes: each runtime reads what runs into
a small typed value, and a pure ``decide`` turns it into Changes. Here the facts
come from a file, so the whole decision table runs without a broker, an engine
or a process, in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import fields
from importlib import import_module
from pathlib import Path

import pytest

from hatchery.core.plan import FAILED, WOULD_CHANGE, Action, apply_plan

HERE = Path(__file__).parent
CASES = sorted(HERE.glob("*/*.json"))


def _value(cls, data: dict):
    """A facts or wanted value from JSON: lists become tuples where the field holds a tuple."""
    tuples = {f.name for f in fields(cls) if f.default == ()}
    return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()})


def _decide(case: Path) -> tuple:
    body = json.loads(case.read_text())
    runtime = import_module(f"hatchery.runtime.{case.parent.name}")     # the package's face
    facts_type, wanted_type, decide = runtime.DECISIONS[body["plan"]]
    return body, decide(_value(facts_type, body["facts"]), _value(wanted_type, body["wanted"]))


def test_every_runtime_has_cases_for_each_plan():
    plans = {(c.parent.name, json.loads(c.read_text())["plan"]) for c in CASES}
    assert plans >= {(r, p) for r in ("local", "docker") for p in ("agent", "broker", "restore")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.stem}")
def test_facts_in_actions_and_reasons_out(case):
    body, changes = _decide(case)
    assert [{"action": c.action.value, "reason": c.reason} for c in changes] == body["expect"], body["about"]
    assert all(isinstance(c.action, Action) and c.apply is None for c in changes)   # pure: nothing bound
    report = apply_plan(case.stem, changes, check=True)
    for result, change in zip(report.results, changes):
        if change.action is Action.FAILED:       # a failure never reads as "would change"
            assert result.status == FAILED and result.error == change.reason and not report.ok
        elif change.needed:
            assert result.status == WOULD_CHANGE


def test_a_word_that_is_not_an_action_is_refused():
    from hatchery.core.plan import Change
    with pytest.raises(ValueError):
        Change("agent a", "restrat")
