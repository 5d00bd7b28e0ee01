"""fleet-monitor: a snapshot of what the bus retains, and a live stream of events.

The snapshot reads every retained heartbeat and online/offline state (and the
broker's uptime) in one subscription that ends on a marker (see
``BusClient.retained_messages``), folds them into the one ``FleetState`` and
judges every agent with the one rule and the operator's intent: its state
column is the verdict (online, stale, offline, missing, unknown, unhealthy,
stopped, retired). Reading is separate from judging: ``build_snapshot`` takes
a fleet state and an intent book and is tested on its own.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from agent_kit import contract, messages
from hatchery.bus.client import BusClient, Message
from hatchery.core.intent import IntentBook, read_intent
from hatchery.core.results import Result
from hatchery.inventory.model import Inventory
from hatchery.observe.fleetstate import FleetState, retained_filters


@dataclass
class Snapshot(Result):
    """What the bus retains, judged. ``ok``: the bus was read (failing on verdicts is
    bus-health's job). ``agents``: name -> AgentFacts, inventory order then the agents
    seen on the bus but not listed; ``judgements``: name -> Judgement."""

    state: FleetState
    agents: dict
    judgements: dict
    taken_at: float                       # epoch seconds
    seconds: float = 0.0                  # how long reading the bus took
    columns: tuple = ("agent", "state", "heartbeat_age_s", "uptime_s", "mem_kb", "cpu",
                      "errors", "version")

    @property
    def items(self) -> list:
        return self.rows()

    @property
    def ok(self) -> bool:
        return True

    @property
    def broker_started(self) -> Optional[float]:
        return self.state.broker_started

    def rows(self) -> list:
        return [self._row(facts, self.judgements[name]) for name, facts in self.agents.items()]

    @staticmethod
    def _row(facts, judgement) -> dict:
        beat = facts.beat
        return {"agent": facts.name if facts.in_inventory else f"{facts.name} (not in inventory)",
                "state": str(judgement.verdict), "heartbeat_age_s": judgement.age_s,
                "uptime_s": beat.uptime if beat else None,
                "mem_kb": beat.mem_kb if beat else None, "cpu": beat.cpu if beat else None,
                "errors": beat.error_total if beat else None,
                "version": messages.printable(facts.version) if facts.version else None,
                "intent": str(judgement.intent), "instance": facts.instance,
                "reason": judgement.reason}

    def observed_at(self) -> datetime:
        return datetime.fromtimestamp(self.taken_at, timezone.utc)

    def extras(self) -> dict:
        return {"bus_read_s": round(self.seconds, 4)}


def snapshot(inv: Inventory, bus: BusClient, *, timeout: float = 5.0,
             threshold: Optional[float] = None) -> Snapshot:
    """Every agent's retained heartbeat and online/offline state, now, judged."""
    started = time.perf_counter()
    state = FleetState.for_inventory(inv).observe_all(
        bus.retained_messages(retained_filters(), timeout=timeout))
    snap = build_snapshot(state, read_intent(inv), time.time(), threshold=threshold)
    snap.seconds = time.perf_counter() - started
    return snap


def build_snapshot(state: FleetState, book: IntentBook, now: float, *,
                   threshold: Optional[float] = None) -> Snapshot:
    """Pure: a folded fleet state and the operator's intent to one judged Snapshot."""
    facts = {f.name: f for f in state.snapshot()}
    judged = {name: state.judge_facts(f, book, threshold=threshold, now=now) for name, f in facts.items()}
    return Snapshot(state, facts, judged, now)


# --- stream -------------------------------------------------------------------------

@dataclass
class Event:
    """One message seen on the bus, summarised without its free-form content."""

    at: str                    # when we received it, RFC 3339
    agent: str                 # the agent, or "*" for a broadcast
    kind: str                  # heartbeat / status / alert / command
    summary: str
    retained: bool = False
    valid: bool = True
    payload: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def line(self) -> str:
        flag = " (retained)" if self.retained else ""
        bad = " INVALID" if not self.valid else ""
        return f"{self.at}  {self.agent:<20} {self.kind:<9} {self.summary}{bad}{flag}"


def stream(inv: Inventory, bus: BusClient, *, on_event: Callable[[Event], None],
           agents: Optional[list] = None, kinds: Optional[list] = None,
           duration: Optional[float] = None, stop: Optional[threading.Event] = None,
           include_retained: bool = True) -> int:
    """Follow the bus live; call ``on_event`` once per message until stopped.

    Runs until ``stop`` is set or ``duration`` seconds pass (forever when
    neither is given; Ctrl-C ends it). ``on_event`` runs on the caller's
    thread, so a slow terminal never stalls the network loop. Returns the
    number of events delivered.
    """
    kinds = list(kinds or contract.KINDS)
    events: "queue.Queue[Event]" = queue.Queue()

    def on_message(message: Message) -> None:
        event = to_event(message, inv.manager)
        if event and event.kind in kinds and (include_retained or not event.retained) \
                and _about_chosen(event, inv.manager, agents):
            events.put(event)

    deadline = time.monotonic() + duration if duration is not None else None
    count = 0
    with bus.listen(stream_filters(inv.manager, agents, kinds), on_message, qos=0):
        while not (stop and stop.is_set()):
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                on_event(events.get(timeout=wait))
                count += 1
            except queue.Empty:
                continue
    return count


def stream_filters(manager: str, agents: Optional[list], kinds: list) -> list:
    """Topic filters for the chosen agents and kinds (wildcards when all)."""
    names = [contract.check_name(a) for a in agents] if agents else ["+"]
    kind_parts = ["+"] if set(kinds) == set(contract.KINDS) else kinds
    filters = [f"{contract.FLEET_PREFIX}/{n}/{k}" for n in names for k in kind_parts]
    if "command" in kinds and not agents:
        filters.append(contract.broadcast_topic(manager))
    if "alert" in kinds and agents:     # fleet.heal's alerts about the chosen agents
        filters.append(contract.topic(manager, "alert"))
    return filters


def _about_chosen(event: "Event", manager: str, agents: Optional[list]) -> bool:
    """With chosen agents, the manager's alerts count only when about one of them."""
    if not agents or event.agent != manager or event.agent in agents:
        return True
    return event.payload.get("agent") in agents


def to_event(message: Message, manager: str) -> Optional[Event]:
    """A bus message to an Event, through the typed decode; None for a topic outside
    the contract. A payload that breaks the contract is shown as dropped, never as text."""
    at = datetime.fromtimestamp(message.received, timezone.utc).isoformat(timespec="milliseconds")
    try:
        read = messages.read(message.topic, message.payload, manager=manager)
    except contract.ContractError as exc:
        agent, kind = _where(message.topic, manager)
        return Event(at, agent, kind, f"dropped: {exc.reason}", message.retain, False)
    if read is None:
        return None
    agent, kind, typed = read
    if isinstance(typed, messages.Cleared):
        return Event(at, agent, kind, "retained message cleared", message.retain)
    return Event(at, agent, kind, summarize(typed, agent), message.retain, True,
                 json.loads(message.payload))


def _where(topic: str, manager: str) -> tuple:
    """(agent, kind) of a contract topic ("*" for the manager's broadcast)."""
    if topic == contract.broadcast_topic(manager):
        return "*", "command"
    return contract.parse_topic(topic)


def summarize(message, publisher: str = "") -> str:
    """A short human line for a typed message: only contract fields, never free text
    (a version-report's answer is reduced to printable text, at most 64 characters)."""
    if isinstance(message, messages.Heartbeat):
        return f"ok={message.ok} uptime={message.uptime}s mem={message.mem_kb}kB cpu={message.cpu}"
    if isinstance(message, messages.Command):
        return f"{message.verb} id={message.id}"
    if isinstance(message, messages.Alert):
        about = f" for {message.agent}" if message.agent != publisher else ""   # fleet.heal's
        return f"{message.code}{about} count={message.count or 1}"
    if isinstance(message, messages.State):
        return f"state {'online' if message.online else 'offline'}"
    if isinstance(message, messages.Reply):
        outcome = "ok" if message.ok else f"error {message.error}"
        version = f" version={message.version}" if message.version else ""
        return f"reply {message.verb} id={message.id} {outcome}{version}"
    return f"event {message.event}"
