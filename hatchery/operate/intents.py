"""What agent.stop, agent.hatch and agent.restart record of the operator's intent.

agent.stop records ``stopped`` BEFORE it stops anything: the offline state the
stop publishes can then never reach fleet.heal ahead of the record, so heal
never takes a stop for a crash. agent.hatch and agent.restart clear it once the
agent has started (its runtime reports it running), whatever else failed.
"""

from __future__ import annotations

from hatchery.core.intent import owner_label, read_intent, record_running, record_stopped
from hatchery.errors import HatcheryError
from hatchery.inventory.model import Inventory
from hatchery.operate.confirm import agent_state


def stopping(inv: Inventory, agents: list, task: str = "agent.stop") -> None:
    """Record that the operator stops ``agents`` (heal leaves them, bus-health says stopped)."""
    record_stopped(inv, [a.name for a in agents], by=owner_label(task))


def started(inv: Inventory, agents: list) -> list:
    """Clear ``stopped`` for those of ``agents`` their runtime reports running; their names."""
    book = read_intent(inv)
    names = [a.name for a in agents if a.name in book.stopped and a.name in inv.agents]
    try:
        running = [n for n in names if agent_state(inv, n).running]
        record_running(inv, running)
    except (HatcheryError, OSError):
        return []       # the run's own report says what failed; intent is re-read next time
    return running
