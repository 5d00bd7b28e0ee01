"""fleet.rollout: a rolling update in batches, gated on what the agents say over the bus.

Each batch is brought in line with the inventory (the same plan as agent.hatch:
a new agent_kit, a new rendered config, a new image), then counts as healthy
only when every replaced agent has, over the bus:

1. a birth message: its retained status ``online`` with a timestamp newer than
   the restart (the old handler's retained ``online`` does not count);
2. an answer to health-check;
3. with ``expect_version``, a version-report answering exactly that version.

An agent that does not get there within ``timeout`` has failed: it is put back
at once on what it ran before (``Runtime.agent_restore_plan``: the previous
agent_kit copy and config, or the previous image and config). When failures
exceed ``max_failed`` the rollout stops; agents in later batches are untouched.

Where a "new version" of a local agent comes from: its rendered config (the
inventory's version_command, reload, interval...) and the agent_kit code of this
checkout, kept per code hash under the state dir (``kits/<hash>/``). A docker
agent's is its image (tagged by its build context's digest) and its config.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.bus.messages import ANSWERED
from hatchery.core.plan import apply_plan
from hatchery.errors import UsageError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.provision.credentials import retired_agents
from hatchery.provision.operations import agent_plan, auth_plan, require_broker
from hatchery.runtime import for_runtime
from hatchery.runtime.base import Provenance

UPDATED, CURRENT, ROLLED_BACK, ROLLBACK_FAILED, UNTOUCHED = (
    "updated", "current", "rolled-back", "rollback-failed", "untouched")
MAX_BATCHES = 10_000


def batch_size(text, total: int) -> int:
    """``--batch 3`` or ``--batch 25%`` (of ``total``, rounded up) as a count of at least 1."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            percent = float(raw[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, math.ceil(total * percent / 100))
        count = int(raw)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise UsageError(f"--batch must be a whole number of agents (at least 1) or a percentage "
                         f"from 1% to 100%, got {text!r}", "e.g. --batch 3 or --batch 25%") from None


def split(names: list, size: int) -> list:
    return [names[i:i + size] for i in range(0, len(names), size)]


@dataclass
class AgentOutcome:
    agent: str
    batch: int
    outcome: str = UNTOUCHED
    before: str = ""
    after: str = ""
    detail: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RolloutReport:
    batches: list                           # [[names]]
    outcomes: dict = field(default_factory=dict)     # name -> AgentOutcome
    aborted: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list:
        return [o.agent for o in self.outcomes.values() if o.outcome in (ROLLED_BACK, ROLLBACK_FAILED)]

    @property
    def ok(self) -> bool:
        return not self.aborted and not self.failed

    def rows(self) -> list:
        return [o.as_dict() for o in self.outcomes.values()]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "aborted": self.aborted, "seconds": round(self.seconds, 3),
                "batches": self.batches, "failed": self.failed, "agents": self.rows()}


def targets(inv: Inventory, agents: list) -> list:
    """The agents a rollout may touch: the selection minus retired ones."""
    retired = retired_agents(inv)
    return [a for a in agents if a.name not in retired]


def plan_rows(inv: Inventory, agents: list, size: int) -> list:
    """--check: for each batch and agent, what agent.hatch would do and why."""
    auth, _ = auth_plan(inv, restore=[a.name for a in agents])
    rows = []
    for index, group in enumerate(split(agents, size), 1):
        for agent in group:
            changes = agent_plan(inv, agent, auth)
            action = next((c.action for c in changes if c.needed), "none")
            reason = "; ".join(c.reason for c in changes if c.needed) or "current"
            rows.append({"batch": index, "agent": agent.name, "action": action, "reason": reason})
    return rows


def describe(provenance: Optional[Provenance]) -> str:
    """A short 'what it runs' for the table: agent_kit or image, and config hash."""
    return provenance.describe() if provenance else "-"


def rollout(inv: Inventory, agents: list, bus: BusClient, *, size: int, max_failed: int = 0,
            expect_version: Optional[str] = None, timeout: float = 15.0,
            on_batch: Optional[Callable] = None) -> RolloutReport:
    """Replace ``agents`` batch by batch; see the module's docstring."""
    require_broker(inv)
    started = time.monotonic()
    groups = split(agents, size)
    report = RolloutReport([[a.name for a in g] for g in groups])
    report.outcomes = {a.name: AgentOutcome(a.name, i) for i, g in enumerate(groups, 1) for a in g}
    auth, auth_changes = auth_plan(inv, restore=[a.name for a in agents])
    apply_plan("fleet.rollout credentials", auth_changes)
    for index, group in enumerate(groups, 1):
        _run_batch(inv, group, bus, auth, report, expect_version, timeout)
        if on_batch:
            on_batch(index, len(groups), [report.outcomes[a.name] for a in group])
        if len(report.failed) > max_failed:
            report.aborted = True
            break
    report.seconds = time.monotonic() - started
    return report


def _run_batch(inv: Inventory, group: list, bus: BusClient, auth, report: RolloutReport,
               expect_version: Optional[str], timeout: float) -> None:
    replaced, since = [], time.time()
    for agent in group:
        outcome = report.outcomes[agent.name]
        runtime = for_runtime(agent.runtime)
        outcome.before = describe(runtime.agent_provenance(inv, agent))
        changes = agent_plan(inv, agent, auth)
        if not any(c.needed for c in changes):
            outcome.outcome, outcome.after, outcome.detail = CURRENT, outcome.before, "already current"
            continue
        result = apply_plan(f"rollout {agent.name}", changes)
        outcome.after = describe(runtime.agent_provenance(inv, agent))
        failed = result.failed
        if failed:
            outcome.detail = f"did not start: {failed[0].error}"[:300]
            _roll_back(inv, agent, bus, outcome)
        else:
            replaced.append(agent)
    problems = wait_healthy(inv, bus, [a.name for a in replaced], since=since,
                            expect_version=expect_version, timeout=timeout)
    for agent in replaced:
        outcome = report.outcomes[agent.name]
        if problems.get(agent.name):
            outcome.detail = problems[agent.name]
            _roll_back(inv, agent, bus, outcome)
        else:
            outcome.outcome = UPDATED
            outcome.detail = "birth, health-check" + (f", version {expect_version}" if expect_version else "")


def _roll_back(inv: Inventory, agent: AgentSpec, bus: BusClient, outcome: AgentOutcome) -> None:
    runtime = for_runtime(agent.runtime)
    since = time.time()
    result = apply_plan(f"rollback {agent.name}", runtime.agent_restore_plan(inv, agent))
    healthy = result.ok and not wait_healthy(inv, bus, [agent.name], since=since, timeout=10.0)
    outcome.outcome = ROLLED_BACK if healthy else ROLLBACK_FAILED
    outcome.after = describe(runtime.agent_provenance(inv, agent))
    if not result.ok:
        outcome.detail += "; rollback failed: " + "; ".join(r.error for r in result.failed)[:200]


# --- the health gate ---------------------------------------------------------------

POLL = 0.2


def wait_healthy(inv: Inventory, bus: BusClient, names: list, *, since: float,
                 expect_version: Optional[str] = None, timeout: float = 15.0) -> dict:
    """{name: what is missing} for the agents that did not pass the gate in time; {} when all did.

    ``since``: wall-clock time of the restart; a retained ``online`` older than
    that is the previous handler's, not a birth.
    """
    if not names:
        return {}
    births: dict = {}
    lock = threading.Lock()

    def on_status(message) -> None:
        parsed = contract.parse_topic(message.topic)
        try:
            payload = contract.validate_status(contract.decode(message.payload))
        except contract.ContractError:
            return
        if parsed and contract.classify_status(payload) == "state":
            born = contract.parse_rfc3339(payload["ts"]).timestamp()
            if payload["state"] == contract.STATE_ONLINE and born >= since - 0.001:
                with lock:
                    births[parsed[0]] = born

    gate = _Gate(names, expect_version)
    deadline = time.monotonic() + timeout
    with bus.listen([contract.topic(n, "status") for n in names], on_status):
        while gate.waiting and time.monotonic() < deadline:
            with lock:
                born = [n for n in gate.waiting if n in births]
            gate.check(bus, born, min(2.0, max(0.2, deadline - time.monotonic())))
            if gate.waiting:
                time.sleep(POLL)
    with lock:
        return {n: gate.missing(n, n in births) for n in gate.waiting}


class _Gate:
    """Which agents still owe a health-check answer or the expected version."""

    def __init__(self, names: list, expect_version: Optional[str]):
        self.waiting = list(names)
        self.expect = expect_version
        self.healthy: set = set()
        self.versions: dict = {}

    def check(self, bus: BusClient, born: list, timeout: float) -> None:
        ask = [n for n in born if n not in self.healthy]
        for reply in bus.request(ask, "health-check", timeout=timeout) if ask else []:
            if reply.state == ANSWERED:
                self.healthy.add(reply.agent)
        ready = [n for n in born if n in self.healthy]
        if self.expect and ready:
            for reply in bus.request(ready, "version-report", timeout=timeout):
                self.versions[reply.agent] = reply.result.get("version") if reply.ok else \
                    f"error {reply.error or reply.state}"
            ready = [n for n in ready if self.versions.get(n) == self.expect]
        self.waiting = [n for n in self.waiting if n not in ready]

    def missing(self, name: str, born: bool) -> str:
        if not born:
            return "no birth message (retained online newer than the restart)"
        if name not in self.healthy:
            return "no health-check answer"
        return f"version-report said {self.versions.get(name)!r}, expected {self.expect!r}"
