"""invoke agent.*: hatch, stop, retire, rotate credentials and list agents."""

from __future__ import annotations

from invoke import Collection

from hatchery.core.results import Rows
from hatchery.errors import UsageError
from hatchery.inventory.enrol import enrol_plan
from hatchery.provision.operations import (
    hatch_plans,
    retire_plans,
    rotate_plan,
    stop_plans,
)
from hatchery.runtime import for_runtime
from hatchery.tasks import output
from hatchery.tasks.common import load, op, run_host_plans, run_plan, show


def _targets(inv, name, group=None, pattern=None, host=None):
    return inv.select(name=name, group=group, pattern=pattern, host=host)


def _enrolling(base, name, group, pattern, host=None):
    """A single --name not in the inventory yet is enrolled by hatch; anything else selects."""
    return name if name and "," not in name and name not in base.agents \
        and not (group or pattern or host) else None


@op(render_only="write the agent's Dockerfile for review and stop (docker runtime)",
    name="agents by name, comma-separated; one new name is enrolled into the inventory")
def hatch(c, name=None, group=None, pattern=None, host=None, inventory=None, check=False,
          diff=False, json=False, render_only=False):
    """Start (local) or build and run (docker) an agent's command handler; enrol it.

    Makes sure the agent's broker credentials and signing key exist first
    (the broker re-reads its files on SIGHUP) and hands them to the handler.
    Agents on several hosts are hatched in parallel, one thread per host; a host
    that cannot be reached is reported and the others go on.
    """
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
    run_host_plans("agent.hatch", plans, lock=base.state_dir, check=check, diff=diff, json=json)


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
    inv = load(inventory)
    targets = _targets(inv, name, group, pattern)
    orphans = not (name or group or pattern)
    run_host_plans("agent.stop", lambda: stop_plans(inv, targets, orphans=orphans), lock=inv.state_dir,
                   check=check, json=json)


@op(name="the agent to retire")
def retire(c, name, inventory=None, check=False, json=False):
    """Retire an agent for good: stop and remove it, clear its retained topics, revoke its credentials, comment it out of the inventory."""
    inv = load(inventory)
    agent = inv.agent(name)
    run_host_plans("agent.retire", lambda: retire_plans(inv, agent), lock=inv.state_dir,
                   check=check, json=json)


@op(name="the agent whose credentials to rotate")
def rotate_credentials(c, name, inventory=None, check=False, diff=False, json=False):
    """New secret and signing key for one agent; the broker reloads, only its handler restarts."""
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
    order = list(inv.agents)
    listed = sorted((s for s in states if s.agent in chosen), key=lambda s: order.index(s.agent))
    if not (name or group or pattern or host):     # orphans: running, but no longer in the inventory
        listed += [s for s in states if s.agent not in inv.agents]
    show(Rows([s.as_row() for s in listed], ("agent", "host", "runtime", "running", "pid", "problem")), json)


MAX_LOG_LINES = 100_000


@op(name="the agent whose log to show", lines="how many lines from the end",
    follow="keep printing new lines as they come, until Ctrl-C (with --json: one JSON object a line)")
def logs(c, name, lines=50, follow=False, inventory=None, json=False):
    """Show an agent's handler log (local) or container output (docker)."""
    inv = load(inventory)
    agent = inv.agent(name)
    count = _log_lines(lines)
    found = for_runtime(agent.runtime).agent_logs(inv, agent, lines=count, follow=follow)
    if json and not follow:
        show(Rows([{"line": output.clean(line, limit=4096)} for line in found], ("line",)), json)
        return
    try:
        for line in found:
            if json:
                output.emit_json_line({"agent": agent.name, "line": output.clean(line, limit=4096)})
            else:
                output.emit_untrusted(line)
    except KeyboardInterrupt:   # the way to end --follow: not an error
        return


def _log_lines(lines) -> int:
    try:
        count = int(lines)
    except (TypeError, ValueError):
        count = -1
    if not 0 <= count <= MAX_LOG_LINES:
        raise UsageError(f"--lines must be a whole number from 0 to {MAX_LOG_LINES}, got {lines!r}",
                         "e.g. --lines 200")
    return count


agent = Collection("agent", hatch, stop, retire, rotate_credentials, logs)
agent.add_task(list_, name="list")
