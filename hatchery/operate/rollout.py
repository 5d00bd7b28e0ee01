"""fleet.rollout: a rolling update in batches, gated on what the agents say over the bus.

Only agents whose plan changes something are batched: one already current is
reported ``current`` and takes no batch slot, and one the operator stopped
(agent.stop) is reported ``stopped`` and left down. Each batch is brought in
line with the inventory (the same plan as agent.hatch: a new agent_kit, a new
rendered config, a new image), then counts as healthy only when every
replaced agent passes the gate (``operate.gate``): a birth, a health-check
answer and, with ``expect_version``, that version, all from the instance the
runtime reports for the start it made.

While a batch runs, fleet.rollout holds a lease on its agents
(``core.intent``): fleet.heal leaves them alone, so it does not restart the
handler the rollout has just stopped. The lease is renewed before each step
(timeout plus a margin), released after the batch, on Ctrl-C too, and
expires by itself if the rollout is killed.

An agent that does not pass within ``timeout`` has failed: it is put back at
once on what it ran before (``Runtime.agent_restore_plan``: the previous
agent_kit copy and config, or the previous image and config). When failures
exceed ``max_failed`` the rollout stops; agents in later batches are untouched.

Where a "new version" of a local agent comes from: its rendered config (the
inventory's version_command, reload, interval...) and the agent_kit code of this
checkout, kept per code hash under the state dir (``kits/<hash>/``). A docker
agent's is its image (tagged by its build context's digest) and its config.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from hatchery.bus.client import BusClient
from hatchery.core.intent import Intent, owner_label, read_intent, release_lease, take_lease
from hatchery.core.plan import apply_plan
from hatchery.errors import UsageError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.operate.confirm import agent_state
from hatchery.operate.gate import publish_conflicts, wait_healthy
from hatchery.provision.credentials import retired_agents
from hatchery.provision.operations import agent_plan, auth_plan, require_broker
from hatchery.runtime import for_runtime
from hatchery.runtime.base import Provenance

UPDATED, CURRENT, STOPPED, ROLLED_BACK, ROLLBACK_FAILED, UNTOUCHED = (
    "updated", "current", "stopped", "rolled-back", "rollback-failed", "untouched")
MAX_BATCHES = 10_000
LEASE_MARGIN_S = 30.0           # on top of the batch's timeout, for each step of a batch
LEASE_WAIT_S = 15.0             # how long to wait for fleet.heal's short lease on an agent
ROLLBACK_WAIT_S = 10.0          # how long a rolled-back agent has to pass the gate again


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
    batch: Optional[int]                    # None: no batch slot (current, stopped)
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


@dataclass
class Selection:
    """The selection sorted by what a rollout does with each agent."""

    changing: list                          # AgentSpec, in selection order: these get batches
    current: list                           # AgentSpec already as the inventory wants
    stopped: list                           # AgentSpec the operator stopped (agent.stop)
    reasons: dict = field(default_factory=dict)      # name -> (action, reason) of its plan
    auth: object = None
    auth_changes: list = field(default_factory=list)


def select(inv: Inventory, agents: list) -> Selection:
    """Plan every agent once: which change, which are current, which the operator stopped."""
    auth, auth_changes = auth_plan(inv, restore=[a.name for a in agents])
    book = read_intent(inv)
    chosen = Selection([], [], [], auth=auth, auth_changes=auth_changes)
    for agent in agents:
        if book.of(agent.name) is Intent.STOPPED:
            chosen.stopped.append(agent)
            continue
        changes = [c for c in agent_plan(inv, agent, auth) if c.needed]
        chosen.reasons[agent.name] = (changes[0].action if changes else "none",
                                      "; ".join(c.reason for c in changes) or "current")
        (chosen.changing if changes else chosen.current).append(agent)
    return chosen


def plan_rows(inv: Inventory, agents: list, size) -> list:
    """--check: for each agent, its batch and what agent.hatch would do and why."""
    chosen = select(inv, agents)
    count = batch_size(size, max(1, len(chosen.changing)))
    batch_of = {a.name: i for i, g in enumerate(split(chosen.changing, count), 1) for a in g}
    rows = []
    for agent in agents:
        if agent in chosen.stopped:
            rows.append({"batch": None, "agent": agent.name, "action": "none",
                         "reason": "stopped by the operator (agent.stop): left down"})
            continue
        action, reason = chosen.reasons[agent.name]
        rows.append({"batch": batch_of.get(agent.name), "agent": agent.name, "action": action,
                     "reason": reason})
    return rows


def describe(provenance: Optional[Provenance]) -> str:
    """A short 'what it runs' for the table: agent_kit or image, and config hash."""
    return provenance.describe() if provenance else "-"


class BatchLease:
    """fleet.rollout's hold on one batch's agents: renewed before each step, always released."""

    def __init__(self, inv: Inventory, names: list, timeout: float):
        self.inv, self.names, self.owner = inv, names, owner_label("fleet.rollout")
        self.seconds = timeout + LEASE_MARGIN_S

    def renew(self) -> None:
        deadline = time.monotonic() + LEASE_WAIT_S
        while True:
            try:
                take_lease(self.inv, self.names, self.owner, self.seconds)
                return
            except UsageError:
                if time.monotonic() > deadline:
                    raise           # another rollout holds them (heal's own lease is short)
                time.sleep(0.2)

    def __enter__(self) -> "BatchLease":
        self.renew()
        return self

    def __exit__(self, *exc) -> None:
        release_lease(self.inv, self.names, self.owner)


def rollout(inv: Inventory, agents: list, bus: BusClient, *, size, max_failed: int = 0,
            expect_version: Optional[str] = None, timeout: float = 15.0,
            on_batch: Optional[Callable] = None) -> RolloutReport:
    """Replace the agents of ``agents`` that change, batch by batch (``size``: a count or
    a percentage of the changing agents); see the module's docstring."""
    require_broker(inv)
    started = time.monotonic()
    chosen = select(inv, agents)
    _not_leased(inv, chosen.changing)
    groups = split(chosen.changing, batch_size(size, max(1, len(chosen.changing))))
    report = RolloutReport([[a.name for a in g] for g in groups])
    batch_of = {a.name: i for i, g in enumerate(groups, 1) for a in g}
    for agent in agents:
        report.outcomes[agent.name] = AgentOutcome(agent.name, batch_of.get(agent.name))
    for agent in chosen.current:
        _unchanged(inv, agent, report.outcomes[agent.name], CURRENT, "already current")
    for agent in chosen.stopped:
        _unchanged(inv, agent, report.outcomes[agent.name], STOPPED, "stopped by the operator: left down")
    apply_plan("fleet.rollout credentials", chosen.auth_changes)
    for index, group in enumerate(groups, 1):
        with BatchLease(inv, [a.name for a in group], timeout) as lease:
            _run_batch(inv, group, bus, chosen.auth, report, lease, expect_version, timeout)
        if on_batch:
            on_batch(index, len(groups), [report.outcomes[a.name] for a in group])
        if len(report.failed) > max_failed:
            report.aborted = True
            break
    report.seconds = time.monotonic() - started
    return report


def _not_leased(inv: Inventory, agents: list) -> None:
    """UsageError before anything changes when another rollout holds one of ``agents``."""
    book = read_intent(inv)
    for agent in agents:
        lease = book.lease(agent.name)
        if lease and not lease.owner.startswith("fleet.heal "):     # heal's is short: waited for
            raise UsageError(f"agent {agent.name} is leased to {lease.owner} until "
                             f"{time.strftime('%H:%M:%S', time.localtime(lease.expires))}",
                             "wait for that rollout to finish (an expired lease is ignored)")


def _unchanged(inv: Inventory, agent: AgentSpec, outcome: AgentOutcome, what: str, detail: str) -> None:
    outcome.outcome, outcome.detail = what, detail
    outcome.before = outcome.after = describe(for_runtime(agent.runtime).agent_provenance(inv, agent))


def _run_batch(inv: Inventory, group: list, bus: BusClient, auth, report: RolloutReport,
               lease: BatchLease, expect_version: Optional[str], timeout: float) -> None:
    replaced, instances, since = [], {}, time.time()
    for agent in group:
        lease.renew()
        outcome = report.outcomes[agent.name]
        runtime = for_runtime(agent.runtime)
        outcome.before = describe(runtime.agent_provenance(inv, agent))
        changes = agent_plan(inv, agent, auth)
        if not any(c.needed for c in changes):      # brought in line since it was planned
            outcome.outcome, outcome.after, outcome.detail = CURRENT, outcome.before, "already current"
            continue
        result = apply_plan(f"rollout {agent.name}", changes)
        outcome.after = describe(runtime.agent_provenance(inv, agent))
        if result.failed:
            outcome.detail = f"did not start: {result.failed[0].error}"[:300]
            _roll_back(inv, agent, bus, outcome, lease)
        else:
            replaced.append(agent)
            instances[agent.name] = agent_state(inv, agent.name).instance
    lease.renew()
    gate = wait_healthy(bus, instances, since=since, expect_version=expect_version, timeout=timeout)
    publish_conflicts(bus, inv, gate.conflicts)
    for agent in replaced:
        outcome = report.outcomes[agent.name]
        if agent.name in gate.problems:
            outcome.detail = gate.problems[agent.name]
            _roll_back(inv, agent, bus, outcome, lease)
        else:
            outcome.outcome = UPDATED
            outcome.detail = "birth, health-check" + (f", version {expect_version}" if expect_version else "") \
                + (f" from instance {instances[agent.name]}" if instances[agent.name] else "")


def _roll_back(inv: Inventory, agent: AgentSpec, bus: BusClient, outcome: AgentOutcome,
               lease: BatchLease) -> None:
    lease.renew()
    runtime = for_runtime(agent.runtime)
    since = time.time()
    result = apply_plan(f"rollback {agent.name}", runtime.agent_restore_plan(inv, agent))
    healthy = result.ok and not wait_healthy(
        bus, {agent.name: agent_state(inv, agent.name).instance}, since=since,
        timeout=ROLLBACK_WAIT_S).problems
    outcome.outcome = ROLLED_BACK if healthy else ROLLBACK_FAILED
    outcome.after = describe(runtime.agent_provenance(inv, agent))
    if not result.ok:
        outcome.detail += "; rollback failed: " + "; ".join(r.error for r in result.failed)[:200]
