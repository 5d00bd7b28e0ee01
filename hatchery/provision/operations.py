"""The plans behind the tasks: what broker.deploy, agent.hatch, agent.retire
and agent.rotate-credentials change, composed from the runtimes, credentials,
TLS and DNS planners. Tasks (and benchmarks) call these and apply the result.
"""

from __future__ import annotations

import time
from dataclasses import replace

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
from hatchery.security.acl import selftest_topic


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
    then every retained topic the agent may write (heartbeat, status, alert,
    its selftest topic) is cleared *as the agent itself* (the only user the ACL
    lets write them) and read back empty by a fresh subscriber; only then are
    its credentials revoked (SIGHUP), its inventory entry commented out, and
    last the topics are read once more: a copy of the handler still running
    somewhere could publish between the read-back and the revoke. If the clear
    cannot be confirmed nothing is revoked, so an interrupted retire can simply
    be run again.
    """
    auth, changes = _auth_plan(inv, revoke=[agent.name])
    stop = for_runtime(agent.runtime).agent_stop_plan(inv, agent, remove=True)
    clear, after = only_after(clear_retained_change(inv, agent),
                              changes + [retire_change(inv, agent.name), still_clear_change(inv, agent)])
    return stop + [clear] + after


RETAINED_KINDS = ("heartbeat", "status", "alert")       # the fleet topics an agent may write
CLEAR_RETRIES_S = (0.5, 1.0, 2.0)                       # waits before clearing again
QUIET_S = 0.5       # a read-back also listens this long: a publisher still at work shows up


def retained_topics(name: str) -> list:
    """Every topic on which agent ``name`` can leave a retained message (acl.agent_grants)."""
    return [contract.topic(name, kind) for kind in RETAINED_KINDS] + [selftest_topic(name)]


def clear_retained_change(inv: Inventory, agent: AgentSpec) -> Change:
    """Publish empty retained payloads on every topic the agent may write, as the agent,
    until a fresh subscriber reads none of them back.

    An empty retained message deletes the retained one (MQTT 3.1.1 and 5), so
    fleet.monitor, bus-health and the exporter no longer see the agent at all.
    A message can arrive after a clear (a handler's last heartbeat or Will racing
    the stop), so the clear is checked, and repeated a few times before the item
    fails naming what is left.
    """
    topics = retained_topics(agent.name)

    def apply() -> str:
        if inv.broker.auth and agent.name in retired_agents(inv):
            raise BusError(f"agent {agent.name}'s credentials are already revoked: "
                           "its retained topics cannot be cleared as the agent",
                           f"run: invoke agent.hatch --name {agent.name}, then agent.retire again")
        for wait in (0.0, *CLEAR_RETRIES_S):
            time.sleep(wait)
            _publish_empty(inv, agent.name, topics)
            left = retained_left(inv, topics)
            if not left:
                return "cleared " + ", ".join(topics) + " (read back: nothing retained)"
        raise BusError(f"agent {agent.name}: retained messages are still on {', '.join(left)} after "
                       f"{1 + len(CLEAR_RETRIES_S)} clears: something still publishes as {agent.name}; "
                       "its credentials were not revoked",
                       f"stop what still runs as {agent.name} (invoke agent.stop --name {agent.name}; "
                       f"agent.list shows a copy elsewhere), then run agent.retire --name {agent.name} again")
    return Change(f"bus fleet/{agent.name} retained", "clear",
                  "every retained topic of a retired agent (heartbeat, status, alert, selftest)",
                  apply=apply)


def _publish_empty(inv: Inventory, name: str, topics: list) -> None:
    with bus_for(inv, role=name) as bus:
        for topic in topics:
            bus.publish(topic, b"", retain=True, timeout=5.0)


def retained_left(inv: Inventory, topics: list, quiet: float = QUIET_S) -> list:
    """The topics among ``topics`` that still hold a retained message, or on which anything
    is published while we listen for ``quiet`` seconds, read by a fresh subscriber (the
    manager's login, which may read them all)."""
    heard: set = set()

    def on_message(message) -> None:
        if message.payload:
            heard.add(message.topic)
    with bus_for(inv) as bus, bus.listen(topics, on_message, qos=0):
        left = {m.topic for m in bus.retained_messages(topics) if m.payload}
        time.sleep(quiet)
    return sorted(left | heard)


def still_clear_change(inv: Inventory, agent: AgentSpec) -> Change:
    """After the revoke: nothing was published on the agent's topics since the read-back."""
    topics = retained_topics(agent.name)

    def apply() -> str:
        left = retained_left(inv, topics)
        if left:
            raise BusError(f"retired agent {agent.name}: {', '.join(left)} got a retained message "
                           "after the clear (a copy of its handler still ran until the revoke, or "
                           "its Last Will)",
                           f"only {agent.name}'s login can clear it: invoke agent.hatch --name "
                           f"{agent.name}, stop what else runs as {agent.name}, then agent.retire "
                           f"--name {agent.name} again")
        return "nothing retained on " + ", ".join(topics)
    return Change(f"bus fleet/{agent.name} retained", "check",
                  "nothing came back between the clear and the revoke", apply=apply)


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
    auth, changes = _auth_plan(inv, rotate=[agent.name], restore=[agent.name])
    if auth is None:
        return None
    return changes + _agent_plan(inv, agent, auth)
