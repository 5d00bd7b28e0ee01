"""invoke fleet.capacity: per host, what the agents use, what is free, how many more fit."""

from __future__ import annotations

from hatchery.bus.connection import bus_for
from hatchery.errors import UsageError
from hatchery.observe import capacity as planning
from hatchery.observe import resources
from hatchery.tasks import output
from hatchery.tasks.common import fail_unless, load, op, show

AGENT_COLUMNS = ("agent", "host", "memory", "cpu", "source")


@op(headroom="share of each host kept free, e.g. 30% (default: the inventory's "
             "capacity.headroom, else 20%)",
    agents="also list each agent's memory and CPU, and where the figures come from",
    json="the JSON envelope: one item per host, with its agents' figures")
def capacity(c, headroom=None, agents=False, inventory=None, timeout=5.0, json=False):
    """Per host: the agents' memory and CPU, what is free, how many more agents of the
    fleet's median size fit under the headroom; exit 1 when a host is past it (for cron)."""
    inv = load(inventory)
    share = _headroom(headroom)

    def read_state():
        with bus_for(inv, connect_timeout=float(timeout), role="monitor") as bus:
            return resources.heartbeats(inv, bus, float(timeout))
    facts = resources.gather(inv, read_state)
    result = resources.report(inv, facts, share)
    if agents and not json:
        output.table(result.agent_rows(), AGENT_COLUMNS)
        output.emit()
    show(result, json)
    if not json:
        for note in facts.notes:
            output.notice(note)
    fail_unless(result.ok)


def _headroom(text):
    if text is None:
        return None
    try:
        return planning.parse_headroom(text)
    except ValueError as exc:
        raise UsageError(f"--headroom: {exc}", "e.g. --headroom 20%") from None


def register(collection) -> None:
    collection.add_task(capacity, name="capacity")
