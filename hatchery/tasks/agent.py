"""invoke agent.*: hatch, stop, retire, rotate credentials and list agents."""

from __future__ import annotations

from invoke import Collection

from .. import output
from ..agentconf import agent_config
from ..credentials import plan_auth
from ..enrol import enrol_plan
from ..runtime import for_runtime
from .broker import auth_files
from .common import load, op, run_plan


def _targets(inv, name):
    return inv.select(name=name) if name else list(inv.agents.values())


def _auth_plan(inv, **plan_args) -> tuple:
    """(FleetAuth or None, changes): credentials written, then the broker's files + SIGHUP."""
    if not inv.broker.auth:
        return None, []
    auth = plan_auth(inv, **plan_args)
    broker = for_runtime(inv.broker.runtime)
    return auth, [auth.change(), *broker.auth_sync_plan(inv, auth_files(auth))]


def _hatch_plan(inv, agent, auth) -> list:
    runtime = for_runtime(agent.runtime)
    files = auth.agent_files(agent.name) if auth else None
    return runtime.agent_plan(inv, agent, agent_config=agent_config(inv, agent, auth),
                              context_dir=None, secret_files=files)


@op(render_only="write the agent's Dockerfile for review and stop (docker runtime)")
def hatch(c, name=None, inventory=None, check=False, diff=False, json=False, render_only=False):
    """Start (local) or build and run (docker) an agent's command handler; enrol it.

    Makes sure the agent's broker credentials and signing key exist first
    (the broker re-reads its files on SIGHUP) and hands them to the handler.
    """
    inv, changes = enrol_plan(load(inventory), name, check=check)
    if render_only:
        from ..runtime.docker import render_only as write_dockerfiles
        for path in write_dockerfiles(inv, _targets(inv, name)):
            output.emit(f"rendered {path}")
        return
    targets = _targets(inv, name)
    auth, auth_changes = _auth_plan(inv, restore=[a.name for a in targets])
    changes += auth_changes
    for agent in targets:
        changes += _hatch_plan(inv, agent, auth)
    run_plan("agent.hatch", changes, check=check, diff=diff, json=json)


@op()
def stop(c, name=None, inventory=None, check=False, json=False):
    """Stop an agent's handler (or container); its state and enrolment are kept."""
    inv = load(inventory)
    changes = []
    for agent in _targets(inv, name):
        changes += for_runtime(agent.runtime).agent_stop_plan(inv, agent)
    run_plan("agent.stop", changes, check=check, json=json)


@op(name="the agent to retire")
def retire(c, name, inventory=None, check=False, json=False):
    """Revoke an agent's credentials (SIGHUP drops its connection), then remove its handler or container and state."""
    inv = load(inventory)
    agent = inv.agent(name)
    _, changes = _auth_plan(inv, revoke=[agent.name])
    changes += for_runtime(agent.runtime).agent_stop_plan(inv, agent, remove=True)
    run_plan("agent.retire", changes, check=check, json=json)


@op(name="the agent whose credentials to rotate")
def rotate_credentials(c, name, inventory=None, check=False, diff=False, json=False):
    """New secret and signing key for one agent; the broker reloads, only its handler restarts."""
    inv = load(inventory)
    agent = inv.agent(name)
    auth, changes = _auth_plan(inv, rotate=[agent.name], restore=[agent.name])
    if auth is None:
        output.notice("broker.auth is false in the inventory: there are no credentials to rotate")
        return
    changes += _hatch_plan(inv, agent, auth)
    run_plan("agent.rotate-credentials", changes, check=check, diff=diff, json=json)


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
