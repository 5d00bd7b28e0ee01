"""Clearing a retired agent's retained topics: the bus's part of agent.retire.

``provision.operations.retire_plan`` places these Changes around the revoke:
the clear (as the agent, read back empty) before it, and a last read-back
after it. They are made here, where the bus is, and handed in by the task.
"""

from __future__ import annotations

import time

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.core.plan import Action, Change
from hatchery.errors import BusError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.provision.credentials import retired_agents
from hatchery.security.acl import selftest_topic

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
    return Change(f"bus fleet/{agent.name} retained", Action.CLEAR,
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
    return Change(f"bus fleet/{agent.name} retained", Action.CHECK,
                  "nothing came back between the clear and the revoke", apply=apply)
