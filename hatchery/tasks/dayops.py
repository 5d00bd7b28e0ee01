"""invoke agent.restart, fleet.rollout, fleet.heal: keeping a fleet running over time."""

from __future__ import annotations

from invoke import Exit

from hatchery.bus.connection import bus_for
from hatchery.core.results import Rows
from hatchery.core.state import state_lock
from hatchery.errors import EXIT_FAILED
from hatchery.operate import heal, rollout
from hatchery.runtime import for_runtime
from hatchery.tasks import output
from hatchery.tasks.common import load, op, run_plan, show, stop_event


def _selected(inv, name, group, pattern) -> list:
    return inv.select(name=name, group=group, pattern=pattern)


@op()
def restart(c, name=None, group=None, pattern=None, inventory=None, check=False, json=False):
    """Restart agents on what they run now (same agent_kit copy and config, or same image)."""
    inv = load(inventory)
    agents = rollout.targets(inv, _selected(inv, name, group, pattern))
    run_plan("agent.restart",
             lambda: [ch for a in agents for ch in for_runtime(a.runtime).agent_restart_plan(inv, a)],
             lock=inv.state_dir, check=check, json=json)


ROLLOUT_COLUMNS = ["agent", "batch", "outcome", "before", "after", "detail"]


@op(batch="agents per batch: a number, or a percentage of the selection such as 25%",
    max_failed="stop once more than this many agents have failed",
    expect_version="healthy only when version-report answers exactly this",
    timeout="seconds each batch has to become healthy")
def rollout_(c, batch="25%", max_failed=0, expect_version=None, timeout=15.0, name=None, group=None,
             pattern=None, inventory=None, check=False, json=False):
    """Rolling update in batches; each batch must come back healthy over the bus, failed agents are rolled back.

    An agent is healthy after its restart when its birth message (retained
    online, newer than the restart), a health-check answer and, with
    --expect-version, that version-report have arrived. Exit 1 on abort.
    """
    inv = load(inventory)
    agents = rollout.targets(inv, _selected(inv, name, group, pattern))
    size = rollout.batch_size(batch, len(agents))
    limit = int(max_failed)         # bounded by tasks/flags.py BOUNDS, like every numeric flag
    if check:
        rows = rollout.plan_rows(inv, agents, size)
        if not json:
            output.emit(f"fleet.rollout (check): {len(agents)} agent(s) in batches of {size}")
        show(Rows(rows, ("batch", "agent", "action", "reason"), extras={"check": True, "batch_size": size}),
             json)
        return
    with state_lock(inv.state_dir), bus_for(inv, connect_timeout=float(timeout)) as bus:
        report = rollout.rollout(inv, agents, bus, size=size, max_failed=limit,
                                 expect_version=expect_version, timeout=float(timeout),
                                 on_batch=None if json else _show_batch)
    problems = [f"{o.agent}: {o.outcome}: {o.detail}" for o in report.outcomes.values()
                if o.agent in report.failed]
    if report.aborted:
        problems.append(f"rollout aborted: {len(report.failed)} failed (allowed {limit}); failed agents "
                        "were put back on what they ran before, later batches untouched")
    extras = {k: v for k, v in report.as_dict().items() if k not in ("ok", "agents")}
    show(Rows(report.rows(), ROLLOUT_COLUMNS, ok=report.ok, problems=problems, extras=extras), json)
    if not report.ok:
        raise Exit(code=EXIT_FAILED)


def _show_batch(index: int, total: int, outcomes: list) -> None:
    counts: dict = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    output.emit(f"batch {index}/{total}: {summary}")


@op(types={"stale": float}, watch="keep running: the supervisor (restarts within seconds of a Last Will)",
    budget="restarts allowed per agent within --window before it is left down",
    window="seconds over which --budget counts restarts",
    stale="seconds without a heartbeat after which an agent counts as stale "
          "(default: twice its heartbeat interval)",
    grace="--watch: seconds a restarted agent has to come back online before it counts as down again",
    duration="--watch: stop after this many seconds (default: until Ctrl-C)")
def heal_(c, watch=False, budget=heal.DEFAULT_BUDGET, window=heal.DEFAULT_WINDOW, stale=None,
          grace=5.0, duration=None, inventory=None, check=False, json=False):
    """Restart agents the bus shows offline or stale and docker agents whose container is unhealthy.

    One pass (for cron) by default; --watch is the supervisor. Every action is
    published as an alert on the bus and counted by fleet.exporter
    (hatchery_heal_actions_total).
    """
    inv = load(inventory)
    policy = heal.Policy(budget=int(budget), window=float(window),
                         stale=float(stale) if stale else None, grace=float(grace))
    with bus_for(inv, connect_timeout=5.0) as bus:
        if watch:
            output.notice(f"fleet.heal --watch: supervising {len(inv.agents)} agent(s); Ctrl-C stops")
            heal.watch(inv, bus, policy, stop=stop_event(duration),
                       on_action=lambda a: _show_action(a, json))
            return
        actions = heal.heal_once(inv, bus, policy, check=check)
    problems = [f"{a.agent}: {a.reason}: restart failed: {a.detail}" for a in actions
                if a.action == heal.FAILED]
    if not actions and not json:
        output.emit("fleet.heal: every agent online and fresh")
    show(Rows([a.as_dict() for a in actions], ("agent", "reason", "action", "detail"),
              problems=problems, extras={"check": check}), json, table=bool(actions))
    if problems:
        raise Exit(code=EXIT_FAILED)


def _show_action(action, json: bool) -> None:
    if json:
        output.emit_json_line(action.as_dict())
    else:
        output.emit_untrusted(f"{action.agent}: {action.reason}: {action.action} {action.detail}".rstrip())


def register(fleet, agent) -> None:
    """Add agent.restart, fleet.rollout and fleet.heal to the collections."""
    agent.add_task(restart, name="restart")
    fleet.add_task(rollout_, name="rollout")
    fleet.add_task(heal_, name="heal")
