"""fleet-monitor: a snapshot of what the bus retains, and a live stream of events.

The snapshot reads every retained heartbeat and online/offline state in one
subscription and ends on a marker (see ``BusClient.retained_messages``), so it
takes milliseconds even for a thousand agents. Parsing is separate from I/O:
``build_snapshot`` takes captured messages and is tested on its own.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Optional

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.core.results import Result
from hatchery.inventory.model import Inventory

UNKNOWN = "unknown"
# The broker's uptime (retained, refreshed every sys_interval) dates its last
# start: retained state older than that was not re-announced to this broker.
BROKER_UPTIME_TOPIC = "$SYS/broker/uptime"
SNAPSHOT_FILTERS = (f"{contract.FLEET_PREFIX}/+/heartbeat", f"{contract.FLEET_PREFIX}/+/status",
                    BROKER_UPTIME_TOPIC)


@dataclass
class AgentView:
    """What the bus says about one agent."""

    agent: str
    state: str = UNKNOWN                 # online / offline / unknown (no retained state)
    heartbeat: Optional[dict] = None     # the last retained heartbeat, validated
    heartbeat_at: Optional[datetime] = None
    state_at: Optional[datetime] = None  # ts of the retained online/offline state
    in_inventory: bool = True
    invalid: int = 0                     # retained payloads that broke the contract

    def age(self, now: datetime) -> Optional[float]:
        """Seconds since the last heartbeat (never negative: clocks drift)."""
        if self.heartbeat_at is None:
            return None
        return max(0.0, (now - self.heartbeat_at).total_seconds())

    def future_by(self, now: datetime) -> float:
        """Seconds the last heartbeat is dated ahead of ``now`` beyond the allowed slack
        (0.0 when it is not): such a heartbeat is suspect, never fresh."""
        if self.heartbeat_at is None:
            return 0.0
        ahead = (self.heartbeat_at - now).total_seconds()
        return ahead if ahead > contract.FUTURE_SLACK_S else 0.0

    def last_announced(self) -> Optional[datetime]:
        """The newest ts the agent itself put on its retained topics."""
        stamps = [t for t in (self.heartbeat_at, self.state_at) if t is not None]
        return max(stamps) if stamps else None

    def beat(self, key: str):
        return (self.heartbeat or {}).get(key)

    def error_count(self) -> Optional[int]:
        errors = self.beat("errors")
        if not isinstance(errors, dict):
            return None
        return sum(v for v in errors.values() if isinstance(v, int) and not isinstance(v, bool))


@dataclass
class Snapshot(Result):
    """What the bus retains, now. ``ok``: the bus was read (judging is bus-health's job)."""

    agents: dict                          # name -> AgentView, inventory order then extras
    taken_at: datetime
    seconds: float = 0.0                  # how long reading the bus took
    broker_started: Optional[datetime] = None   # from $SYS/broker/uptime, when readable
    columns: tuple = ("agent", "state", "heartbeat_age_s", "uptime_s", "mem_kb", "cpu",
                      "errors", "version")

    @property
    def items(self) -> list:
        return self.rows()

    @property
    def ok(self) -> bool:
        return True

    def rows(self) -> list:
        return [self._row(v) for v in self.agents.values()]

    def _row(self, view: AgentView) -> dict:
        age = view.age(self.taken_at)
        return {"agent": view.agent if view.in_inventory else f"{view.agent} (not in inventory)",
                "state": view.state, "heartbeat_age_s": None if age is None else round(age, 1),
                "uptime_s": view.beat("uptime"), "mem_kb": view.beat("mem_kb"),
                "cpu": view.beat("cpu"), "errors": view.error_count(),
                "version": view.beat("version")}

    def observed_at(self) -> datetime:
        return self.taken_at

    def extras(self) -> dict:
        return {"bus_read_s": round(self.seconds, 4)}


def snapshot(inv: Inventory, bus: BusClient, *, timeout: float = 5.0) -> Snapshot:
    """Every agent's retained heartbeat and online/offline state, now."""
    started = time.perf_counter()
    messages = bus.retained_messages(SNAPSHOT_FILTERS, timeout=timeout)
    snap = build_snapshot(messages, list(inv.agents), datetime.now(timezone.utc))
    snap.seconds = time.perf_counter() - started
    return snap


def build_snapshot(messages: Iterable[Message], inventory_names: list,
                   now: datetime) -> Snapshot:
    """Pure: captured retained messages to one AgentView per agent."""
    views = {n: AgentView(n) for n in inventory_names}
    started = None
    for message in messages:
        if message.topic == BROKER_UPTIME_TOPIC:
            started = broker_start(message)
            continue
        parsed = contract.parse_topic(message.topic)
        if not parsed or not message.payload:
            continue
        name, kind = parsed
        view = views.get(name)
        if view is None:
            view = views[name] = AgentView(name, in_inventory=False)
        _apply(view, kind, message.payload)
    return Snapshot(views, now, broker_started=started)


def broker_start(message: Message) -> Optional[datetime]:
    """When the broker started, from a ``$SYS/broker/uptime`` message ("123 seconds")."""
    words = message.payload[:32].split()
    if len(words) != 2 or words[1] != b"seconds" or not words[0].isdigit():
        return None
    return datetime.fromtimestamp(message.received - int(words[0]), timezone.utc)


def _apply(view: AgentView, kind: str, data: bytes) -> None:
    try:
        payload = contract.decode(data)
        if kind == "heartbeat":
            contract.check_schema(payload, contract.HEARTBEAT_SCHEMA)
            view.heartbeat = payload
            view.heartbeat_at = contract.parse_rfc3339(payload["ts"])
        elif kind == "status" and contract.classify_status(payload) == "state":
            contract.check_schema(payload, contract.STATE_SCHEMA)
            view.state = payload["state"]
            view.state_at = contract.parse_rfc3339(payload["ts"])
    except contract.ContractError:
        view.invalid += 1


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
        if event and event.kind in kinds and (include_retained or not event.retained):
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
    return filters


def to_event(message: Message, manager: str) -> Optional[Event]:
    """A bus message to an Event; None for a topic outside the contract."""
    at = datetime.fromtimestamp(message.received, timezone.utc).isoformat(timespec="milliseconds")
    if message.topic == contract.broadcast_topic(manager):
        agent, kind = "*", "command"
    else:
        parsed = contract.parse_topic(message.topic)
        if not parsed:
            return None
        agent, kind = parsed
    if not message.payload:
        return Event(at, agent, kind, "retained message cleared", message.retain)
    try:
        payload = contract.decode(message.payload)
    except contract.ContractError as exc:
        return Event(at, agent, kind, f"dropped: {exc.reason}", message.retain, False)
    return Event(at, agent, kind, summarize(kind, payload), message.retain,
                 _is_valid(kind, payload), payload)


def summarize(kind: str, payload: dict) -> str:
    """A short human line for a payload; only contract fields, never free text."""
    if kind == "heartbeat":
        return (f"ok={payload.get('ok')} uptime={payload.get('uptime')}s "
                f"mem={payload.get('mem_kb')}kB cpu={payload.get('cpu')}")
    if kind == "command":
        return f"{payload.get('verb')} id={payload.get('id')}"
    if kind == "alert":
        return f"{payload.get('code')} count={payload.get('count', 1)}"
    status = contract.classify_status(payload)
    if status == "state":
        return f"state {payload.get('state')}"
    if status == "reply":
        outcome = "ok" if payload.get("ok") else f"error {payload.get('error')}"
        return f"reply {payload.get('verb')} id={payload.get('id')} {outcome}"
    event = payload.get("event")
    return f"event {event}" if contract.is_slug(event) else "status event"


_SCHEMAS = {"heartbeat": contract.HEARTBEAT_SCHEMA, "alert": contract.ALERT_SCHEMA,
            "command": contract.COMMAND_SCHEMA}


def _is_valid(kind: str, payload: dict) -> bool:
    if kind == "status":    # a state, a reply, or an event (bus-publish status, main-exited)
        try:
            contract.validate_status(payload)
        except contract.ContractError:
            return False
        return True
    schema = _SCHEMAS.get(kind)
    if schema is None:
        return False
    try:
        contract.check_schema(payload, schema)
    except contract.ContractError:
        return False
    return True
