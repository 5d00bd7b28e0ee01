"""invoke agent.*: hatch, stop, retire, rotate credentials and list agents.

The planners are imported inside the tasks that use them: every command loads
this module, and ``provision.operations`` (with the bus, the credentials and
the inventory editor behind it) is needed by few (bench/startup_bench.py).
"""

from __future__ import annotations

from invoke import Collection

from agent_kit.contract import name_problem
from hatchery.bus.retained import clear_retained_change, still_clear_change
from hatchery.core.results import Rows
from hatchery.errors import UsageError
from hatchery.inventory.select import entries, suggest, unknown
from hatchery.observe import logs as agentlogs
from hatchery.runtime import for_runtime
from hatchery.tasks import output
from hatchery.tasks.common import (
    fail_unless,
    load,
    op,
    run_host_plans,
    run_plan,
    show,
    stop_event,
)


def _targets(inv, name, group=None, pattern=None, host=None):
    return inv.select(name=name, group=group, pattern=pattern, host=host)


def _enrolling(base, name, group, pattern, host=None) -> list:
    """--name entries not in the inventory yet are enrolled by hatch, unless another
    selector narrows the choice (then every name must exist, and a typo gets did-you-mean)."""
    if group or pattern or host:
        return []
    new = [n for n in entries(name) if n not in base.agents]
    for word in new:       # 'Client-A' can never be a name: a typo of client-a, not a new agent
        if name_problem(word) and suggest(word, base.agents):
            raise unknown("agent", word, base.agents, base.path)
    return new


@op(render_only="write the agent's Dockerfile for review and stop (docker runtime)",
    name="agents by name, comma-separated; names not in the inventory yet are enrolled into it")
def hatch(c, name=None, group=None, pattern=None, host=None, inventory=None, check=False,
          diff=False, json=False, render_only=False):
    """Start (local) or build and run (docker) an agent's command handler; enrol it.

    Makes sure the agent's broker credentials and signing key exist first
    (the broker re-reads its files on SIGHUP) and hands them to the handler.
    Agents on several hosts are hatched in parallel, one thread per host; a host
    that cannot be reached is reported and the others go on.
    """
    from hatchery.inventory.enrol import enrol_plan
    from hatchery.operate import intents
    from hatchery.provision.operations import hatch_plans
    base = load(inventory)
    new = _enrolling(base, name, group, pattern, host)
    if render_only:
        inv, _ = enrol_plan(base, new)
        paths = _write_build_files(inv, _targets(inv, name, group, pattern, host))
        if json:
            show(Rows([{"path": p} for p in paths], ("path",)), json)
        for path in [] if json else paths:
            output.emit(f"rendered {path}")
        return

    def plans():
        inv, changes = enrol_plan(base, new)
        common, per_host = hatch_plans(inv, _targets(inv, name, group, pattern, host), named=bool(name),
                                       orphans=not (name or group or pattern or host))
        return changes + common, per_host
    named = entries(name) or list(base.agents)
    try:
        run_host_plans("agent.hatch", plans, lock=base.state_dir, check=check, diff=diff, json=json,
                       items=[f"agent {n}" for n in named])
    finally:
        if not check:
            intents.started(base, list(base.agents.values()))     # started again: no longer 'stopped'


def _write_build_files(inv, targets: list) -> list:
    """The build files of every runtime that builds images, for its own agents."""
    paths = []
    for runtime_name in dict.fromkeys(a.runtime for a in targets):
        runtime = for_runtime(runtime_name)
        if runtime.builds_images:
            paths += [str(p) for p in runtime.write_build_files(inv, [a for a in targets if a.runtime == runtime_name])]
    return paths


@op()
def stop(c, name=None, group=None, pattern=None, inventory=None, check=False, json=False):
    """Stop agents' handlers (or containers); their state and enrolment are kept.

    Without a selector it also stops orphans: handlers or containers of this
    fleet for names that are no longer in the inventory.
    """
    from hatchery.operate import intents
    from hatchery.provision.operations import stop_plans
    inv = load(inventory)
    targets = _targets(inv, name, group, pattern)
    orphans = not (name or group or pattern)
    if not check:
        intents.stopping(inv, targets)      # first: heal must never take this stop for a crash
    run_host_plans("agent.stop", lambda: stop_plans(inv, targets, orphans=orphans), lock=inv.state_dir,
                   check=check, json=json)


@op(name="the agent to retire")
def retire(c, name, inventory=None, check=False, json=False):
    """Retire an agent for good: stop and remove it, clear its retained topics, revoke its credentials, comment it out of the inventory."""
    from hatchery.provision.operations import retire_plans
    inv = load(inventory)
    agent = inv.agent(name)
    # the bus's part: clear its retained topics, and read them back after the revoke
    bus_side = {"clear_retained": clear_retained_change(inv, agent), "still_clear": still_clear_change(inv, agent)}
    run_host_plans("agent.retire", lambda: retire_plans(inv, agent, **bus_side), lock=inv.state_dir,
                   check=check, json=json)


@op(name="the agent whose credentials to rotate")
def rotate_credentials(c, name, inventory=None, check=False, diff=False, json=False):
    """New secret and signing key for one agent; the broker reloads, only its handler restarts."""
    from hatchery.provision.operations import rotate_plan
    inv = load(inventory)
    agent = inv.agent(name)
    if not inv.broker.auth:
        raise UsageError("broker.auth is false in the inventory: there are no credentials to rotate",
                         "set broker.auth: true and run: invoke broker.deploy")
    run_plan("agent.rotate-credentials", lambda: rotate_plan(inv, agent), lock=inv.state_dir,
             check=check, diff=diff, json=json)


@op()
def list_(c, name=None, group=None, pattern=None, host=None, inventory=None, json=False):
    """List the inventory's agents, the host each one is on, and whether it runs."""
    inv = load(inventory)
    chosen = {a.name for a in _targets(inv, name, group, pattern, host)}
    states = []
    for runtime_name in sorted({a.runtime for a in inv.agents.values()}):
        states += for_runtime(runtime_name).agent_list(inv)
    order = {n: i for i, n in enumerate(inv.agents)}     # a dict: list.index made this O(n²)
    listed = sorted((s for s in states if s.agent in chosen), key=lambda s: order[s.agent])
    if not (name or group or pattern or host):     # orphans: running, but no longer in the inventory
        listed += [s for s in states if s.agent not in inv.agents]
    rows = [s.as_row() for s in listed]
    named = ("container",) if any(r.get("container") for r in rows) else ()   # its fleet's names on the engine
    show(Rows(rows, ("agent", "host", "runtime", "running", "pid", *named, "problem")), json)


@op(lines="how many lines from the end of each agent's log",
    follow="keep printing new lines as they come, until Ctrl-C or --duration "
           "(with --json: one JSON object a line)",
    duration="with --follow: stop after this many seconds (default: until Ctrl-C)")
def logs(c, name=None, group=None, pattern=None, host=None, lines=50, follow=False,
         duration=None, inventory=None, json=False):
    """Show agents' handler logs (local) or container output (docker); several agents interleaved.

    One agent's lines are printed as they are; with several, each line starts
    with its agent's name (like docker compose logs) and the tails are merged
    in time order. --follow follows them all at once.
    """
    inv = load(inventory)
    agents = _targets(inv, name, group, pattern, host)
    show_line = _log_printer(agents, json)
    if follow:
        try:
            problems = agentlogs.follow_all(inv, agents, lines, show_line, stop=stop_event(),
                                            duration=duration)
        except KeyboardInterrupt:   # the way to end --follow: not an error
            return
        fail_unless(not problems)
        return
    merged, problems = agentlogs.tail_all(inv, agents, lines)
    if json:
        show(Rows([line.as_dict() for line in merged], ("agent", "line"),
                  problems=[f"{p.agent}: {p.problem}" for p in problems]), json)
        fail_unless(not problems)
        return
    for line in merged + problems:
        show_line(line)
    fail_unless(not problems)


def _log_printer(agents: list, json: bool):
    """How one LogLine is printed: JSON lines, or text prefixed by the agent when several."""
    width = max((len(a.name) for a in agents), default=0)
    prefixed = len(agents) > 1

    def show_line(item) -> None:
        if json:
            text = output.clean(item.line or item.problem, limit=4096)
            output.emit_json_line({**item.as_dict(), ("problem" if item.problem else "line"): text})
        elif item.problem:
            output.emit_untrusted(f"{item.agent}: {item.problem}", err=True)
        else:
            head = f"{item.agent:<{width}} | " if prefixed else ""
            output.emit(head + output.clean(item.line, limit=4096))
    return show_line


agent = Collection("agent", hatch, stop, retire, rotate_credentials, logs)
agent.add_task(list_, name="list")
