"""invoke agent.restart, fleet.rollout, fleet.heal: keeping a fleet running over time."""

from __future__ import annotations

from datetime import datetime, timezone

from invoke import Exit

from hatchery.core.results import Rows
from hatchery.errors import EXIT_FAILED
from hatchery.tasks import output
from hatchery.tasks.common import how_to_stop, load, op, run_plan, show, stop_event

# The planners, the bus and the supervisor (hatchery.operate.*, bus.connection) are
# imported inside each task: `hatchery --list` and every other task register these
# three without loading them (measured with python -X importtime in docs/performance.md).
HEAL_BUDGET, HEAL_WINDOW = 5, 600.0     # operate.supervisor's DEFAULT_BUDGET and DEFAULT_WINDOW


def _selected(inv, name, group, pattern) -> list:
    return inv.select(name=name, group=group, pattern=pattern)


@op()
def restart(c, name=None, group=None, pattern=None, inventory=None, check=False, json=False):
    """Restart agents on what they run now (same agent_kit copy and config, or same image)."""
    from hatchery.operate import intents, rollout
    from hatchery.runtime import for_runtime
    inv = load(inventory)
    agents = rollout.targets(inv, _selected(inv, name, group, pattern))
    try:
        run_plan("agent.restart",
                 lambda: [ch for a in agents for ch in for_runtime(a.runtime).agent_restart_plan(inv, a)],
                 lock=inv.state_dir, check=check, json=json)
    finally:
        if not check:
            intents.started(inv, agents)        # started again: no longer 'stopped'


ROLLOUT_COLUMNS = ["agent", "batch", "outcome", "before", "after", "detail"]


@op(batch="agents per batch: a number, or a percentage of the agents that change, such as 25%",
    max_failed="stop once more than this many agents have failed",
    expect_version="healthy only when version-report answers exactly this",
    timeout="seconds each batch has to become healthy")
def rollout_(c, batch="25%", max_failed=0, expect_version=None, timeout=15.0, name=None, group=None,
             pattern=None, inventory=None, check=False, json=False):
    """Rolling update in batches; each batch must come back healthy over the bus, failed agents are rolled back.

    Only agents that change take a batch slot (current ones are reported
    current, ones stopped with agent.stop are left down). An agent is healthy
    after its restart when its birth message, a health-check answer and, with
    --expect-version, that version-report have arrived, all from the instance
    its runtime started. fleet.heal leaves a batch's agents alone while it
    runs (a lease, released after the batch or on Ctrl-C). Exit 1 on abort.
    """
    from hatchery.bus.connection import bus_for
    from hatchery.core.state import state_lock
    from hatchery.operate import rollout
    inv = load(inventory)
    agents = rollout.targets(inv, _selected(inv, name, group, pattern))
    rollout.batch_size(batch, max(1, len(agents)))      # a bad --batch is refused before any planning
    limit = int(max_failed)         # bounded by tasks/flags.py BOUNDS, like every numeric flag
    if check:
        rows = rollout.plan_rows(inv, agents, batch)
        changing = sum(1 for r in rows if r["batch"] is not None)
        if not json:
            output.emit(f"fleet.rollout (check): {changing} of {output.plural(len(agents), 'agent')} "
                        f"{'changes' if changing == 1 else 'change'}; "
                        f"batches of {rollout.batch_size(batch, max(1, changing))}")
        show(Rows(rows, ("batch", "agent", "action", "reason"), extras={"check": True}), json)
        return
    with state_lock(inv.state_dir), bus_for(inv, connect_timeout=float(timeout)) as bus:
        report = rollout.rollout(inv, agents, bus, size=batch, max_failed=limit,
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


@op(types={"stale": float}, watch="keep running: the supervisor (acts within seconds of a Last Will)",
    budget="restarts allowed per agent within --window before it is left down",
    window="seconds over which --budget counts restarts",
    stale="seconds without a heartbeat after which an agent counts as stale "
          "(default: twice its heartbeat interval)",
    grace="--watch: seconds a restarted agent has to come back online before it counts as down again",
    hung_after="seconds a running agent may take to answer the confirming health-check before it "
               "counts as hung",
    duration="--watch: stop after this many seconds (default: until Ctrl-C)")
def heal_(c, watch=False, budget=HEAL_BUDGET, window=HEAL_WINDOW, stale=None,
          grace=5.0, hung_after=3.0, duration=None, inventory=None, check=False, json=False):
    """Restart agents that are down, once their runtime confirms it (gone, unhealthy or hung).

    The bus only raises the suspicion (offline, stale, unknown); the agent's
    runtime must confirm it before anything is restarted, and a bus state the
    runtime contradicts is alerted as telemetry-mismatch. Agents stopped with
    agent.stop, retired ones and those a rollout holds are left alone. One pass
    (for cron) by default; --watch is the supervisor. Every action is published
    as an alert on the bus and counted by fleet.exporter (hatchery_heal_actions_total).
    """
    from hatchery.bus.connection import bus_for
    from hatchery.operate import heal
    inv = load(inventory)
    policy = heal.Policy(budget=int(budget), window=float(window), stale=float(stale) if stale else None,
                         grace=float(grace), hung_after=float(hung_after))
    with bus_for(inv, connect_timeout=5.0) as bus:
        if watch:
            output.log_line(f"fleet.heal --watch: supervising {output.plural(len(inv.agents), 'agent')}; "
                            f"{how_to_stop()}", err=True)
            heal.watch(inv, bus, policy, stop=stop_event(duration),
                       on_action=lambda a: _show_action(a, json))
            return
        actions = heal.heal_once(inv, bus, policy, check=check)
    problems = [f"{a.agent}: {a.reason}: {a.action}: {a.detail}" for a in actions
                if a.action in (heal.FAILED, heal.LEFT_DOWN, heal.CONFLICT, heal.UNPLACEABLE, heal.DUEL)]
    if not actions and not json:
        output.emit("fleet.heal: nothing to do: no agent meant to run is down")
    show(Rows([a.as_dict() for a in actions], ("agent", "reason", "finding", "action", "detail"),
              problems=problems, extras={"check": check}), json, table=bool(actions))
    if problems:
        raise Exit(code=EXIT_FAILED)


def _show_action(action, json: bool) -> None:
    if json:
        output.emit_json_line(action.as_dict())
    else:
        finding = f" ({action.finding})" if action.finding else ""
        output.log_line(f"{action.agent}: {action.reason}{finding}: {action.action} {action.detail}".rstrip(),
                        at=datetime.fromtimestamp(action.at, timezone.utc))


def register(fleet, agent) -> None:
    """Add agent.restart, fleet.rollout and fleet.heal to the collections."""
    agent.add_task(restart, name="restart")
    fleet.add_task(rollout_, name="rollout")
    fleet.add_task(heal_, name="heal")
