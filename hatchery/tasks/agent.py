"""invoke agent.*: hatch, stop, retire and list agents."""

from __future__ import annotations

from invoke import Collection

from .. import output
from ..agentconf import agent_config
from ..enrol import enrol_plan
from ..runtime import for_runtime
from .common import load, op, run_plan


def _targets(inv, name):
    return inv.select(name=name) if name else list(inv.agents.values())


@op(render_only="write the agent's Dockerfile for review and stop (docker runtime)")
def hatch(c, name=None, inventory=None, check=False, diff=False, json=False, render_only=False):
    """Start (local) or build and run (docker) an agent's command handler; enrol it."""
    inv, changes = enrol_plan(load(inventory), name, check=check)
    if render_only:
        from ..runtime.docker import render_only as write_dockerfiles
        for path in write_dockerfiles(inv, _targets(inv, name)):
            output.emit(f"rendered {path}")
        return
    for agent in _targets(inv, name):
        runtime = for_runtime(agent.runtime)
        changes += runtime.agent_plan(inv, agent, agent_config=agent_config(inv, agent),
                                      context_dir=None)
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
    """Stop and remove an agent's handler or container and its state (credentials, config)."""
    inv = load(inventory)
    agent = inv.agent(name)
    runtime = for_runtime(agent.runtime)
    changes = runtime.agent_stop_plan(inv, agent, remove=True)
    run_plan("agent.retire", changes, check=check, json=json)


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


agent = Collection("agent", hatch, stop, retire)
agent.add_task(list_, name="list")
