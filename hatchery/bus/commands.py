"""Fleet operations over the bus: a verb to one agent, a group, or everyone.

Every function returns a result object; nothing prints. A fleet-wide call
reports every agent (answered, failed, offline or silent) and ``.ok`` is true
only when all answered ok — the caller turns that into the exit status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.bus.connection import open_bus
from hatchery.bus.messages import ANSWERED, FAILED, OFFLINE, SILENT, Reply
from hatchery.core.results import Result
from hatchery.errors import UsageError
from hatchery.inventory.model import Inventory
from hatchery.inventory.select import select_names

DIRECT, BROADCAST = "direct", "broadcast"

_WHY = {
    OFFLINE: "offline: its retained state says so (stopped, or its Last Will fired)",
    SILENT: "silent: no answer in time and not known offline (down, slow, or never started)",
    FAILED: "answered with an error",
}


@dataclass
class CommandResult(Result):
    verb: str
    replies: list                       # Reply, one per target, inventory order
    mode: str = DIRECT                  # direct (one command each) or broadcast
    timeout: float = 5.0
    columns: tuple = ("agent", "state", "answer", "rtt_ms")

    @property
    def items(self) -> list:
        return self.replies

    @property
    def ok(self) -> bool:
        return all(r.state == ANSWERED for r in self.replies)

    @property
    def answered(self) -> list:
        return [r.agent for r in self.replies if r.state in (ANSWERED, FAILED)]

    @property
    def missing(self) -> list:
        """Targets that did not answer: [{'agent', 'state'}] with offline or silent."""
        return [{"agent": r.agent, "state": r.state} for r in self.replies
                if r.state in (OFFLINE, SILENT)]

    def rows(self) -> list:
        return [{"agent": r.agent, "state": r.state, "answer": answer_text(r),
                 "rtt_ms": r.rtt_ms} for r in self.replies]

    @property
    def problems(self) -> list:
        """One line per agent that did not answer ok."""
        lines = []
        for r in self.replies:
            if r.state == FAILED:
                lines.append(f"{r.agent}: {_WHY[FAILED]}: {r.error or 'no detail'}")
            elif r.state == OFFLINE:  # known at once from the retained Will: no wait
                lines.append(f"{r.agent}: {_WHY[OFFLINE]}")
            elif r.state == SILENT:
                lines.append(f"{r.agent}: {_WHY[SILENT]} (waited {self.timeout:g}s)")
        return lines

    def extras(self) -> dict:
        return {"verb": self.verb, "mode": self.mode, "timeout": self.timeout,
                "missing": self.missing}


def answer_text(reply: Reply) -> str:
    """The short answer for a table cell: the version, 'ok', or the error."""
    if reply.state == FAILED:
        return f"error: {reply.error or 'failed'}"
    if reply.state != ANSWERED:
        return "-"
    result = reply.result if isinstance(reply.result, dict) else {}
    if result.get("version"):
        return str(result["version"])
    if result.get("reloaded"):
        return f"reloaded ({result.get('method', '?')})"
    return "ok"


def run_command(inv: Inventory, verb: str, *, names: Optional[list] = None,
                group: Optional[str] = None, pattern: Optional[str] = None,
                host: Optional[str] = None, timeout: float = 5.0,
                bus: Optional[BusClient] = None) -> CommandResult:
    """Send ``verb`` to each selected agent (see ``inventory.select``) on its command topic."""
    _check_verb(verb)
    targets = select_names(inv, names=names, group=group, pattern=pattern, host=host)
    with open_bus(inv, bus, connect_timeout=timeout) as client:
        replies = client.request(targets, verb, timeout=timeout)
    return CommandResult(verb, replies, DIRECT, timeout)


def collect(inv: Inventory, timeout: float = 5.0, *,
            bus: Optional[BusClient] = None) -> CommandResult:
    """The heartbeat collector: one broadcast health-check; who answered in time."""
    return _broadcast_to(inv, "health-check", list(inv.agents), timeout, bus)


@dataclass
class BroadcastPlan(Result):
    """Who would receive a broadcast and how it would be sent."""

    verb: str
    recipients: list
    mode: str                 # broadcast (whole fleet) or direct (a subset)
    topics: list
    columns: tuple = ("agent", "topic")

    @property
    def items(self) -> list:
        return self.rows()

    def extras(self) -> dict:
        return {"verb": self.verb, "mode": self.mode, "recipients": self.recipients,
                "topics": self.topics, "dry_run": True}

    def rows(self) -> list:
        return [{"agent": n, "topic": t} for n, t in zip(self.recipients, self._topic_per_agent())]

    def _topic_per_agent(self) -> list:
        return self.topics * len(self.recipients) if self.mode == BROADCAST else self.topics


def plan_broadcast(inv: Inventory, verb: str, *, names: Optional[list] = None,
                   group: Optional[str] = None, pattern: Optional[str] = None) -> BroadcastPlan:
    """The recipients: selected agents whose name matches the glob ``pattern``.

    The whole fleet gets ONE message on ``{manager}/broadcast``; a subset gets
    one command each, because every agent listens to the broadcast topic.
    """
    _check_verb(verb)
    recipients = select_names(inv, names=names, group=group, pattern=pattern)
    if set(recipients) == set(inv.agents) and recipients:
        return BroadcastPlan(verb, recipients, BROADCAST, [contract.broadcast_topic(inv.manager)])
    return BroadcastPlan(verb, recipients, DIRECT,
                         [contract.topic(n, "command") for n in recipients])


def broadcast(inv: Inventory, verb: str, *, names: Optional[list] = None,
              group: Optional[str] = None, pattern: Optional[str] = None,
              dry_run: bool = False, timeout: float = 5.0,
              bus: Optional[BusClient] = None):
    """Send ``verb`` fleet-wide (or to a matching subset); with ``dry_run`` only the plan."""
    plan = plan_broadcast(inv, verb, names=names, group=group, pattern=pattern)
    if dry_run:
        return plan
    if plan.mode == BROADCAST:
        return _broadcast_to(inv, verb, plan.recipients, timeout, bus)
    return run_command(inv, verb, names=plan.recipients, timeout=timeout, bus=bus)


def _broadcast_to(inv: Inventory, verb: str, names: list, timeout: float,
                  bus: Optional[BusClient]) -> CommandResult:
    with open_bus(inv, bus, connect_timeout=timeout) as client:
        replies = client.request(names, verb, timeout=timeout, broadcast_manager=inv.manager)
    return CommandResult(verb, replies, BROADCAST, timeout)


def _check_verb(verb: str) -> None:
    if verb not in contract.VERBS:
        raise UsageError(f"unknown verb {verb!r}", f"use one of: {', '.join(contract.VERBS)}")
