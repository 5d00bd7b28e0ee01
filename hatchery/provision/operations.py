"""The plans behind the tasks: what broker.deploy, agent.hatch, agent.retire
and agent.rotate-credentials change, composed from the runtimes, credentials,
TLS and DNS planners. Tasks (and benchmarks) call these and apply the result.
"""

from __future__ import annotations

from agent_kit import contract
from hatchery.bus.connection import bus_for, connection_target
from hatchery.configs.agent import agent_config
from hatchery.configs.broker import ACL_FILE, PASSWORD_FILE, render_conf
from hatchery.core.hosts import by_host, host_of
from hatchery.core.plan import Change
from hatchery.core.ports import listening
from hatchery.errors import BusError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.inventory.retire import retire_change
from hatchery.provision.authcheck import check_auth_files
from hatchery.provision.credentials import plan_auth, retired_agents
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


def hatch_plan(inv: Inventory, agents: list, *, named: bool = False, orphans: bool = False) -> list:
    """Make sure each agent's credentials exist, then start or update it (all hosts, in turn)."""
    return flatten(*hatch_plans(inv, agents, named=named, orphans=orphans))


def flatten(common: list, per_host: dict) -> list:
    """(common, {host: () -> changes}) as one list, every host planned in turn (benchmarks, tests)."""
    return common + [c for plan in per_host.values() for c in plan()]


def hatch_plans(inv: Inventory, agents: list, *, named: bool = False, orphans: bool = False) -> tuple:
    """(changes made first: credentials and the broker's files; {host: () -> its agents' changes}).

    Each host's plan is a function: planning talks to that host's engine, so it runs
    in that host's thread (core.hosts.apply_per_host) and an unreachable host fails alone.

    A retired agent is brought back only when named (``agent.hatch --name X``):
    a plain hatch reports it and leaves it retired. With ``orphans``, handlers
    running for names no longer in the inventory are stopped too (first, in their
    host's thread). A broker that cannot be reached stops the whole plan before
    anything is changed.
    """
    require_broker(inv)
    retired = set() if named else retired_agents(inv)
    wanted = [a for a in agents if a.name not in retired]
    auth, common = _auth_plan(inv, restore=[a.name for a in wanted])
    common += [_still_retired(a) for a in agents if a.name in retired]

    def plan_for(group: list):
        return lambda: [c for agent in group for c in _agent_plan(inv, agent, auth)]
    per_host = {host: plan_for(group) for host, group in by_host(inv, wanted).items()}
    return common, with_orphans(inv, per_host) if orphans else per_host


def _still_retired(agent: AgentSpec) -> Change:
    return Change(f"agent {agent.name}", "none",
                  f"retired (agent.retire); to bring it back: agent.hatch --name {agent.name}")


def require_broker(inv: Inventory) -> None:
    """BusError (exit 3) naming the fix when nothing answers on the broker's address."""
    host, port, _ = connection_target(inv)
    if not listening(host, port):
        raise BusError(f"the broker at {host}:{port} is not running or cannot be reached; "
                       "no agent was started",
                       "start it with: invoke broker.deploy (or check broker.host and broker.port "
                       "in the inventory), then hatch again")


def with_orphans(inv: Inventory, per_host: dict) -> dict:
    """``per_host`` with each host's orphans (handlers and containers of this fleet whose
    names are not in the inventory) stopped first, in that host's own thread."""
    runtimes = {inv.broker.runtime, *(a.runtime for a in inv.agents.values())}
    merged = dict(per_host)
    for name in sorted(runtimes):
        for host, orphans in for_runtime(name).orphan_stop_plans(inv).items():
            then = merged.get(host, list)
            merged[host] = lambda first=orphans, then=then: first() + then()
    return merged


def stop_plans(inv: Inventory, agents: list, *, orphans: bool = False) -> tuple:
    """([], {host: () -> changes that stop its agents}); with ``orphans`` its orphans too."""
    def plan_for(group: list):
        return lambda: [c for a in group for c in for_runtime(a.runtime).agent_stop_plan(inv, a)]
    per_host = {host: plan_for(group) for host, group in by_host(inv, agents).items()}
    return [], with_orphans(inv, per_host) if orphans else per_host


def stop_plan(inv: Inventory, agents: list, *, orphans: bool = False) -> list:
    return flatten(*stop_plans(inv, agents, orphans=orphans))


def retire_plans(inv: Inventory, agent: AgentSpec) -> tuple:
    """([], {its host: () -> retire_plan}): planned in the host's thread, so a host that
    cannot be reached is one failed item and nothing is retired (run it again later)."""
    return [], {host_of(inv, agent): lambda: retire_plan(inv, agent)}


def retire_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Retire for good: stop and remove it, clear its retained topics, revoke, then the inventory.

    The order matters. The handler stops first (a clean stop, no Last Will),
    then the retained heartbeat and status are cleared *as the agent itself*
    (the only user the ACL lets write them), then its credentials are revoked
    (SIGHUP), and last its inventory entry is commented out, so an interrupted
    retire can simply be run again.
    """
    auth, changes = _auth_plan(inv, revoke=[agent.name])
    stop = for_runtime(agent.runtime).agent_stop_plan(inv, agent, remove=True)
    return stop + [clear_retained_change(inv, agent)] + changes + [retire_change(inv, agent.name)]


RETAINED_KINDS = ("heartbeat", "status")


def clear_retained_change(inv: Inventory, agent: AgentSpec) -> Change:
    """Publish empty retained payloads on the agent's heartbeat and status topics.

    An empty retained message deletes the retained one (MQTT 3.1.1 and 5), so
    fleet.monitor, bus-health and the exporter no longer see the agent at all.
    """
    topics = [contract.topic(agent.name, kind) for kind in RETAINED_KINDS]

    def apply() -> str:
        if inv.broker.auth and agent.name in retired_agents(inv):
            raise BusError(f"agent {agent.name}'s credentials are already revoked: "
                           "its retained topics cannot be cleared as the agent",
                           f"run: invoke agent.hatch --name {agent.name}, then agent.retire again")
        with bus_for(inv, role=agent.name) as bus:
            for topic in topics:
                bus.publish(topic, b"", retain=True, timeout=5.0)
        return "cleared " + ", ".join(topics)
    return Change(f"bus fleet/{agent.name} retained", "clear",
                  "retained heartbeat and status of a retired agent", apply=apply)


def rotate_plan(inv: Inventory, agent: AgentSpec) -> list | None:
    """A new secret and key for one agent; None when the broker has no auth."""
    auth, changes = _auth_plan(inv, rotate=[agent.name], restore=[agent.name])
    if auth is None:
        return None
    return changes + _agent_plan(inv, agent, auth)
