"""The plans behind the tasks: what broker.deploy, agent.hatch, agent.retire
and agent.rotate-credentials change, composed from the runtimes, credentials,
TLS and DNS planners. Tasks (and benchmarks) call these and apply the result.
"""

from __future__ import annotations

from hatchery.configs.agent import agent_config
from hatchery.configs.broker import ACL_FILE, PASSWORD_FILE, render_conf
from hatchery.core.hosts import by_host
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.provision.authcheck import check_auth_files
from hatchery.provision.credentials import plan_auth
from hatchery.provision.dns import dns_register_plan, dns_unregister_plan
from hatchery.provision.tls import tls_change
from hatchery.runtime import for_runtime


def auth_files(auth) -> dict:
    """The files the broker reads beside its config, from a ``FleetAuth``.

    Checked here, while planning, by our grammar and by a throw-away Mosquitto:
    an invalid file raises UsageError before any plan item writes it or SIGHUPs
    the broker (on SIGHUP, 2.0.11 would drop an invalid ACL and enforce none).
    """
    files = {PASSWORD_FILE: auth.password_text(), ACL_FILE: auth.acl_text()}
    check_auth_files(files)
    return files


def deploy_plan(inv: Inventory) -> list:
    """Credentials and ACL, TLS material, the broker itself, its DNS name."""
    changes, files = [], None
    if inv.broker.auth:
        auth = plan_auth(inv)
        changes.append(auth.change())
        files = auth_files(auth)
    changes += tls_change(inv)
    changes += for_runtime(inv.broker.runtime).broker_plan(
        inv, conf_text=render_conf(inv), auth_files=files)
    return changes + dns_register_plan(inv)


def stop_broker_plan(inv: Inventory) -> list:
    """Stop the broker (its data kept) and unregister its DNS name."""
    return for_runtime(inv.broker.runtime).broker_stop_plan(inv) + dns_unregister_plan(inv)


def _auth_plan(inv: Inventory, **plan_args) -> tuple:
    """(FleetAuth or None, changes): credentials written, then the broker's files + SIGHUP."""
    if not inv.broker.auth:
        return None, []
    auth = plan_auth(inv, **plan_args)
    broker = for_runtime(inv.broker.runtime)
    return auth, [auth.change(), *broker.auth_sync_plan(inv, auth_files(auth))]


def _agent_plan(inv: Inventory, agent: AgentSpec, auth) -> list:
    files = auth.agent_files(agent.name) if auth else None
    return for_runtime(agent.runtime).agent_plan(
        inv, agent, agent_config=agent_config(inv, agent, auth), context_dir=None,
        secret_files=files)


def hatch_plan(inv: Inventory, agents: list) -> list:
    """Make sure each agent's credentials exist, then start or update it."""
    common, per_host = hatch_plans(inv, agents)
    return common + [c for plan in per_host.values() for c in plan()]


def hatch_plans(inv: Inventory, agents: list) -> tuple:
    """(changes made first: credentials and the broker's files; {host: () -> its agents' changes}).

    Each host's plan is a function: planning talks to that host's engine, so it runs
    in that host's thread (core.hosts.apply_per_host) and an unreachable host fails alone.
    """
    auth, common = _auth_plan(inv, restore=[a.name for a in agents])

    def plan_for(group: list):
        return lambda: [c for agent in group for c in _agent_plan(inv, agent, auth)]
    return common, {host: plan_for(group) for host, group in by_host(inv, agents).items()}


def stop_plan(inv: Inventory, agents: list) -> list:
    return [c for a in agents for c in for_runtime(a.runtime).agent_stop_plan(inv, a)]


def retire_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Revoke first (SIGHUP drops its connection), then remove its handler or container."""
    _, changes = _auth_plan(inv, revoke=[agent.name])
    return changes + for_runtime(agent.runtime).agent_stop_plan(inv, agent, remove=True)


def rotate_plan(inv: Inventory, agent: AgentSpec) -> list | None:
    """A new secret and key for one agent; None when the broker has no auth."""
    auth, changes = _auth_plan(inv, rotate=[agent.name], restore=[agent.name])
    if auth is None:
        return None
    return changes + _agent_plan(inv, agent, auth)
