"""The plans behind the tasks: what broker.deploy, agent.hatch, agent.retire
and agent.rotate-credentials change, composed from the runtimes, credentials,
TLS and DNS planners. Tasks (and benchmarks) call these and apply the result.

Configs are rendered here, laid out by the runtime that runs them
(``Runtime.broker_layout``, ``Runtime.agent_layout``). Nothing here talks to the
bus: what a plan needs from it (retire's clearing of retained topics) is a
Change the caller hands in.
"""

from __future__ import annotations

from dataclasses import replace

from hatchery.configs.agent import agent_config
from hatchery.configs.broker import broker_candidates, broker_endpoint, render_conf
from hatchery.configs.layout import ACL_FILE, PASSWORD_FILE
from hatchery.core.plan import Action, Change
from hatchery.core.ports import first_listening
from hatchery.errors import BusError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.inventory.placement import by_host, host_of
from hatchery.inventory.retire import retire_change
from hatchery.provision.authcheck import check_auth_files
from hatchery.provision.credentials import plan_auth, retired_agents
from hatchery.provision.dns import dns_register_plan, dns_unregister_plan
from hatchery.provision.firewall import firewall_change
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


def broker_conf(inv: Inventory, **auth) -> str:
    """mosquitto.conf for the inventory's broker, laid out by the runtime that runs it."""
    return render_conf(inv, for_runtime(inv.broker.runtime).broker_layout(inv), **auth)


def agent_conf(inv: Inventory, agent: AgentSpec, auth=None) -> dict:
    """The agent's handler config, laid out by its runtime (``auth``: the FleetAuth plan)."""
    return agent_config(inv, agent, for_runtime(agent.runtime).agent_layout(inv, agent), auth)


def deploy_plan(inv: Inventory) -> list:
    """Credentials and ACL, TLS material, the broker itself, its DNS name."""
    changes, files = [], None
    if inv.broker.auth:
        auth = plan_auth(inv)
        changes.append(auth.change())
        files = auth_files(auth)
    changes += tls_change(inv)
    changes += for_runtime(inv.broker.runtime).broker_plan(
        inv, conf_text=broker_conf(inv), auth_files=files)
    return changes + firewall_change(inv) + dns_register_plan(inv)


def stop_broker_plan(inv: Inventory) -> list:
    """Stop the broker (its data kept) and unregister its DNS name."""
    return for_runtime(inv.broker.runtime).broker_stop_plan(inv) + dns_unregister_plan(inv)


def auth_plan(inv: Inventory, **plan_args) -> tuple:
    """(FleetAuth or None, changes): credentials written, then the broker's files + SIGHUP.
    ``plan_args`` go to ``credentials.plan_auth`` (rotate, revoke, restore)."""
    if not inv.broker.auth:
        return None, []
    auth = plan_auth(inv, **plan_args)
    broker = for_runtime(inv.broker.runtime)
    return auth, [auth.change(), *broker.auth_sync_plan(inv, auth_files(auth))]


def agent_plan(inv: Inventory, agent: AgentSpec, auth) -> list:
    """What agent.hatch changes for one agent, given the credentials plan (``auth_plan``)."""
    files = auth.agent_files(agent.name) if auth else None
    return for_runtime(agent.runtime).agent_plan(
        inv, agent, agent_config=agent_conf(inv, agent, auth), context_dir=None,
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
    auth, common = auth_plan(inv, restore=[a.name for a in wanted])
    common += [_still_retired(a) for a in agents if a.name in retired]

    def plan_for(group: list):
        return lambda: [c for agent in group for c in agent_plan(inv, agent, auth)]
    per_host = {host: plan_for(group) for host, group in by_host(inv, wanted).items()}
    return common, with_orphans(inv, per_host) if orphans else per_host


def _still_retired(agent: AgentSpec) -> Change:
    return Change(f"agent {agent.name}", Action.NONE,
                  f"retired (agent.retire); to bring it back: agent.hatch --name {agent.name}")


def require_broker(inv: Inventory) -> None:
    """BusError (exit 3) naming the fix when nothing answers on the broker's address."""
    host, port = broker_endpoint(inv)
    if not first_listening(broker_candidates(inv), port):
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


def retire_plans(inv: Inventory, agent: AgentSpec, **bus_changes) -> tuple:
    """([], {its host: () -> retire_plan}): planned in the host's thread, so a host that
    cannot be reached is one failed item and nothing is retired (run it again later)."""
    return [], {host_of(inv, agent): lambda: retire_plan(inv, agent, **bus_changes)}


def retire_plan(inv: Inventory, agent: AgentSpec, *, clear_retained: Change, still_clear: Change) -> list:
    """Retire for good: stop and remove it, clear its retained topics, revoke, then the inventory.

    The order matters. The handler stops first (a clean stop, no Last Will),
    then every retained topic the agent may write (heartbeat, status, alert,
    its selftest topic) is cleared *as the agent itself* (the only user the ACL
    lets write them) and read back empty by a fresh subscriber; only then are
    its credentials revoked (SIGHUP), its inventory entry commented out, and
    last the topics are read once more: a copy of the handler still running
    somewhere could publish between the read-back and the revoke. If the clear
    cannot be confirmed nothing is revoked, so an interrupted retire can simply
    be run again.

    The two bus items are the bus's (``bus.retained``: ``clear_retained_change``,
    ``still_clear_change``), made and handed in by the task: planning here never
    talks to the bus.
    """
    auth, changes = auth_plan(inv, revoke=[agent.name])
    stop = for_runtime(agent.runtime).agent_stop_plan(inv, agent, remove=True)
    clear, after = only_after(clear_retained, changes + [retire_change(inv, agent.name), still_clear])
    return stop + [clear] + after


def only_after(first: Change, changes: list) -> tuple:
    """(first, changes) where each of ``changes`` applies only once ``first`` has applied:
    apply_plan goes on after a failed item, and retire must not revoke an agent whose
    retained messages are still on the bus (nobody could clear them afterwards)."""
    done = []

    def apply_first():
        detail = first.apply() if first.apply else None
        done.append(True)
        return detail

    def gated(change: Change) -> Change:
        def apply():
            if not done:
                raise BusError(f"not done: {first.item} failed first",
                               "fix what that item names, then run the task again")
            return change.apply() if change.apply else None
        return replace(change, apply=apply)
    return replace(first, apply=apply_first), [gated(c) if c.needed else c for c in changes]


def rotate_plan(inv: Inventory, agent: AgentSpec) -> list | None:
    """A new secret and key for one agent; None when the broker has no auth."""
    auth, changes = auth_plan(inv, rotate=[agent.name], restore=[agent.name])
    if auth is None:
        return None
    return changes + agent_plan(inv, agent, auth)
