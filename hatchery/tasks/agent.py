"""invoke agent.*: hatch, stop, retire, rotate credentials and list agents."""

from __future__ import annotations

from invoke import Collection

from hatchery.inventory.enrol import enrol_plan
from hatchery.provision.operations import (
    hatch_plan,
    retire_plan,
    rotate_plan,
    stop_plan,
)
from hatchery.runtime import for_runtime
from hatchery.tasks import output
from hatchery.tasks.common import load, op, run_plan


def _targets(inv, name):
    return inv.select(name=name) if name else list(inv.agents.values())


@op(render_only="write the agent's Dockerfile for review and stop (docker runtime)")
def hatch(c, name=None, inventory=None, check=False, diff=False, json=False, render_only=False):
    """Start (local) or build and run (docker) an agent's command handler; enrol it.

    Makes sure the agent's broker credentials and signing key exist first
    (the broker re-reads its files on SIGHUP) and hands them to the handler.
    """
    base = load(inventory)
    if render_only:
        inv, _ = enrol_plan(base, name)
        for path in for_runtime("docker").write_build_files(inv, _targets(inv, name)):
            output.emit(f"rendered {path}")
        return

    def plan():
        inv, changes = enrol_plan(base, name)
        return changes + hatch_plan(inv, _targets(inv, name))
    run_plan("agent.hatch", plan, lock=base.state_dir, check=check, diff=diff, json=json)


@op()
def stop(c, name=None, inventory=None, check=False, json=False):
    """Stop an agent's handler (or container); its state and enrolment are kept."""
    inv = load(inventory)
    run_plan("agent.stop", lambda: stop_plan(inv, _targets(inv, name)), lock=inv.state_dir,
             check=check, json=json)


@op(name="the agent to retire")
def retire(c, name, inventory=None, check=False, json=False):
    """Revoke an agent's credentials (SIGHUP drops its connection), then remove its handler or container and state."""
    inv = load(inventory)
    agent = inv.agent(name)
    run_plan("agent.retire", lambda: retire_plan(inv, agent), lock=inv.state_dir,
             check=check, json=json)


@op(name="the agent whose credentials to rotate")
def rotate_credentials(c, name, inventory=None, check=False, diff=False, json=False):
    """New secret and signing key for one agent; the broker reloads, only its handler restarts."""
    inv = load(inventory)
    agent = inv.agent(name)
    if not inv.broker.auth:
        output.notice("broker.auth is false in the inventory: there are no credentials to rotate")
        return
    run_plan("agent.rotate-credentials", lambda: rotate_plan(inv, agent), lock=inv.state_dir,
             check=check, diff=diff, json=json)


@op()
def list_(c, inventory=None, json=False):
    """List the inventory's agents and whether each one runs."""
    inv = load(inventory)
    rows = []
    for runtime_name in sorted({a.runtime for a in inv.agents.values()}):
        rows += for_runtime(runtime_name).agent_list(inv)
    if json:
        output.emit_json(rows)
    else:
        output.table(rows, ["agent", "runtime", "running", "pid"])


agent = Collection("agent", hatch, stop, retire, rotate_credentials)
agent.add_task(list_, name="list")
