"""A live model of the fleet, folded from bus messages: what the dashboard and fleet.top show.

``FleetModel.observe`` takes one bus message at a time (from the network
thread) and keeps, per agent, only what the contract allows on the bus:
state, heartbeat time, ok flag, version slug, error counts, alert codes and
the last command round trip. Every payload is validated first; one that
breaks the contract is counted against its agent and otherwise ignored, so a
compromised agent can make a counter grow but can never put text on a screen.

Each change bumps a version number, so a reader asks "what changed since
version N" (``changes_since``) and waits for the next change with
``wait_for_change`` instead of polling.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

from agent_kit import contract
from hatchery.bus.client import Message
from hatchery.inventory.model import Inventory

UNKNOWN, STALE = "unknown", "stale"
STALE_FACTOR = 2.0          # a heartbeat older than this many intervals is stale
MAX_EXTRA_AGENTS = 1000     # agents on the bus but not in the inventory we track, at most
MAX_ALERT_CODES = 32        # distinct alert codes remembered per agent
MAX_PENDING = 10000         # commands awaiting a reply we remember, at most
LOCAL_HOST = "localhost"


@dataclass
class AgentLive:
    """What the bus says about one agent, now."""

    name: str
    groups: tuple = ()
    host: str = LOCAL_HOST
    interval: Optional[float] = None      # expected heartbeat interval, seconds
    in_inventory: bool = True
    state: str = UNKNOWN                  # online / offline / unknown
    beat_ts: Optional[float] = None       # the heartbeat's own ts, epoch seconds
    ok: Optional[bool] = None
    version: Optional[str] = None
    errors: Optional[int] = None          # sum of the heartbeat's error counters
    rtt_ms: Optional[float] = None        # last command round trip seen
    alerts: dict = field(default_factory=dict)   # alert code -> count
    last_alert: Optional[str] = None
    invalid: int = 0                      # payloads from it that broke the contract
    changed: int = 0                      # model version of its last change

    def age(self, now: float) -> Optional[float]:
        """Seconds since its last heartbeat (never negative: clocks drift)."""
        return None if self.beat_ts is None else max(0.0, now - self.beat_ts)

    def shown_state(self, now: float) -> str:
        """online / offline / unknown, or stale: online but silent too long."""
        age = self.age(now)
        if (self.state == contract.STATE_ONLINE and age is not None and self.interval
                and age > STALE_FACTOR * self.interval):
            return STALE
        return self.state

    def as_dict(self) -> dict:
        return {"agent": self.name, "groups": list(self.groups), "host": self.host,
                "interval": self.interval, "in_inventory": self.in_inventory,
                "state": self.state, "beat_ts": self.beat_ts, "ok": self.ok,
                "version": self.version, "errors": self.errors, "rtt_ms": self.rtt_ms,
                "alerts": sum(self.alerts.values()), "last_alert": self.last_alert,
                "invalid": self.invalid}


def host_of(docker_host: Optional[str]) -> str:
    """The machine an agent runs on, as a short label: ``ssh://root@h2`` -> ``h2``."""
    if not docker_host:
        return LOCAL_HOST
    parts = urlsplit(docker_host)
    return parts.hostname or parts.path or docker_host


def agents_from(inv: Inventory) -> dict:
    """One AgentLive per inventory agent, in file order, with its groups and host."""
    groups: dict = {}
    for group, members in inv.groups.items():
        for name in members:
            groups.setdefault(name, []).append(group)
    return {name: AgentLive(name, tuple(sorted(set(groups.get(name, ())) | set(spec.groups))),
                            host_of(spec.docker_host), spec.heartbeat_interval)
            for name, spec in inv.agents.items()}


class FleetModel:
    """Bus messages in, per-agent rows out; thread-safe, with change notification."""

    def __init__(self, inv: Inventory, clock=time.time):
        self.clock = clock
        self.agents: dict = agents_from(inv)
        self.manager = inv.manager
        self.version = 0
        self.dropped_extra = 0            # messages from untracked agents past the cap
        self._commands: dict = {}         # command id -> wall time it was seen
        self._cond = threading.Condition()

    # --- input (network thread) ---------------------------------------------------

    def observe(self, message: Message) -> None:
        parsed = contract.parse_topic(message.topic)
        if parsed is None or not message.payload:
            return
        name, kind = parsed
        if name == self.manager:    # fleet.heal's alerts: shown on the agent they name
            name = self._healed(kind, message.payload)
            if name is None:
                return
        with self._cond:
            agent = self._agent(name)
            if agent is None:
                return
            try:
                changed = self._fold(agent, kind, contract.decode(message.payload),
                                     message.received)
            except contract.ContractError:
                agent.invalid += 1
                changed = True
            if changed:
                self.version += 1
                agent.changed = self.version
                self._cond.notify_all()

    def _healed(self, kind: str, payload: bytes) -> Optional[str]:
        try:
            alert = contract.validate_alert(contract.decode(payload)) if kind == "alert" else None
        except contract.ContractError:
            return None
        known = alert and self.agents.get(alert["agent"])
        return alert["agent"] if known and known.in_inventory else None

    def _agent(self, name: str) -> Optional[AgentLive]:
        agent = self.agents.get(name)
        if agent is None:
            if len(self.agents) - self._known() >= MAX_EXTRA_AGENTS:
                self.dropped_extra += 1
                return None
            agent = self.agents[name] = AgentLive(name, in_inventory=False, host="?")
        return agent

    def _known(self) -> int:
        return sum(1 for a in self.agents.values() if a.in_inventory)

    def _fold(self, agent: AgentLive, kind: str, payload: dict, at: float) -> bool:
        if kind == "heartbeat":
            self._heartbeat(agent, contract.validate_heartbeat(payload))
        elif kind == "alert":
            self._alert(agent, contract.validate_alert(payload))
        elif kind == "command":
            self._remember(contract.validate_command(payload)["id"], at)
            return False
        else:
            return self._status(agent, contract.validate_status(payload), at)
        return True

    def _heartbeat(self, agent: AgentLive, beat: dict) -> None:
        agent.beat_ts = contract.parse_rfc3339(beat["ts"]).timestamp()
        agent.ok = beat["ok"]
        agent.version = beat.get("version", agent.version)
        errors = beat.get("errors")
        agent.errors = sum(errors.values()) if errors is not None else None
        if "interval" in beat and not agent.in_inventory:
            agent.interval = float(beat["interval"])

    def _alert(self, agent: AgentLive, alert: dict) -> None:
        code = alert["code"]
        if code in agent.alerts or len(agent.alerts) < MAX_ALERT_CODES:
            agent.alerts[code] = agent.alerts.get(code, 0) + 1
        agent.last_alert = code

    def _status(self, agent: AgentLive, payload: dict, at: float) -> bool:
        kind = contract.classify_status(payload)
        if kind == "state":
            agent.state = payload["state"]
            return True
        if kind == "reply":
            return self._reply(agent, payload, at)
        return False

    def _reply(self, agent: AgentLive, reply: dict, at: float) -> bool:
        changed = False
        version = (reply.get("result") or {}).get("version")
        if reply["verb"] == "version-report" and reply["ok"] and contract.is_slug(version):
            agent.version, changed = version, True    # only a slug: never free text
        sent = self._commands.pop(reply["id"], None)
        if sent is not None:
            agent.rtt_ms, changed = round(max(0.0, at - sent) * 1000, 2), True
        return changed

    def _remember(self, command_id: str, at: float) -> None:
        if len(self._commands) >= MAX_PENDING:      # forget the oldest half
            for key in list(self._commands)[: MAX_PENDING // 2]:
                del self._commands[key]
        self._commands.setdefault(command_id, at)

    # --- output (any thread) ------------------------------------------------------

    def changes_since(self, version: int) -> tuple:
        """(current version, rows of the agents changed after ``version``)."""
        with self._cond:
            rows = [a.as_dict() for a in self.agents.values() if a.changed > version]
            return self.version, rows

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Block until the model is newer than ``version`` (True) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: self.version > version, timeout)

    def snapshot(self) -> list:
        """Copies of every agent, for a reader that sorts and draws them."""
        with self._cond:
            return [AgentLive(**{**a.__dict__, "alerts": dict(a.alerts)})
                    for a in self.agents.values()]


def live_filters() -> list:
    """Everything under fleet/ (states, heartbeats, alerts, replies and commands)."""
    return [f"{contract.FLEET_PREFIX}/+/+"]
