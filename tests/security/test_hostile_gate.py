"""Round 3: the rollout gate as a weapon. With alpha's password an attacker can make alpha's
own gate fail (answer its health-check as another instance: a conflict), so alpha is rolled
back and a rollout with max_failed 0 stops before its next batch. Pure (the Gate, fixture
births and replies, as tests/test_gate.py; the real broker and handlers for the conflict are
in tests/dayops/test_rollout_gate.py). Fails if alpha's conflict fails or holds beta, in the
same batch, or anything but alpha is named."""

from __future__ import annotations

from agent_kit import messages
from hatchery.bus.messages import ANSWERED, Reply
from hatchery.operate.gate import Gate

SINCE = 1_800_000_000.0
INSTANCES = {"alpha": "aaaa1111aaaa1111", "beta": "bbbb2222bbbb2222"}
FORGED = "ffff9999ffff9999"


def _reply(name: str, verb: str, result=None, others=()) -> Reply:
    return Reply(name, True, verb, "c0ffee", 1.0, result or {}, None, ANSWERED, INSTANCES[name],
                 list(others))


def test_one_agents_conflict_fails_only_that_agent():
    gate = Gate(INSTANCES, "4.0", SINCE)
    for name, instance in INSTANCES.items():
        gate.birth(messages.State(name, SINCE + 1, True, instance))
        gate.birth(messages.State(name, SINCE + 2, True, FORGED))       # forged births: ignored
    forged = {"instance": FORGED, "ok": True, "result": {}, "error": None}
    gate.health([_reply("alpha", "health-check", others=[forged]), _reply("beta", "health-check")])
    gate.version([_reply(n, "version-report", {"version": "4.0"}) for n in gate.ready_for_version()])
    gate.settle()
    result = gate.result()
    assert list(result.conflicts) == ["alpha"] and list(result.problems) == ["alpha"]
    assert result.versions == {"beta": "4.0"} and gate.waiting == []
