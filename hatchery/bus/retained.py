"""Clearing a retired agent's retained topics: the bus's part of agent.retire.

``provision.operations.retire_plan`` places this Change between stopping the
agent and revoking its credentials; it is made here, where the bus is, and
handed in by the task.
"""

from __future__ import annotations

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.core.plan import Action, Change
from hatchery.errors import BusError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.provision.credentials import retired_agents

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
    return Change(f"bus fleet/{agent.name} retained", Action.CLEAR,
                  "retained heartbeat and status of a retired agent", apply=apply)
