"""The contract's messages as typed values: one decode, one place that validates.

``read(topic, payload)`` turns what arrives on a fleet topic into a
``Heartbeat``, ``State``, ``Reply``, ``Event``, ``Alert``, ``Command`` or
``Cleared`` (an empty retained payload), or raises ``ContractError`` naming
why. Every reader on the control side (the fleet state, the monitor, the
exporter, heal, rollout) takes these instead of re-checking dicts, so a
payload is validated once, by the same rules everywhere, and a timestamp is
parsed once (``ts`` is epoch seconds here).

Standard library only, like the rest of agent_kit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Union

from . import contract, fastdecode

# The most printable characters shown of a version an agent reported
# (version-report's answer is the output of the agent's version command).
MAX_VERSION_TEXT = 64


@dataclass(frozen=True)
class Heartbeat:
    agent: str
    ts: float
    ok: bool
    uptime: float
    mem_kb: Optional[int] = None
    cpu: Optional[float] = None
    errors: dict = field(default_factory=dict)       # slug -> count
    interval: Optional[float] = None
    version: Optional[str] = None                    # a slug, when the agent sends one
    instance: Optional[str] = None

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class State:
    """A retained online/offline state: a birth message, a Will, or a clean goodbye."""

    agent: str
    ts: float
    online: bool
    instance: Optional[str] = None


@dataclass(frozen=True)
class Reply:
    agent: str
    ts: float
    id: str
    verb: str
    ok: bool
    result: dict = field(default_factory=dict)
    error: Optional[str] = None
    instance: Optional[str] = None

    @property
    def version(self) -> Optional[str]:
        """The version a version-report answered: printable text, at most MAX_VERSION_TEXT."""
        value = self.result.get("version") if self.verb == "version-report" and self.ok else None
        return printable(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Event:
    agent: str
    ts: float
    event: str
    fields: dict = field(default_factory=dict)       # slug keys -> number, bool or slug


@dataclass(frozen=True)
class Alert:
    agent: str
    ts: float
    code: str
    reason: Optional[str] = None
    level: Optional[str] = None
    count: Optional[int] = None


@dataclass(frozen=True)
class Command:
    id: str
    verb: str
    ts: float
    signed: bool = False


@dataclass(frozen=True)
class Cleared:
    """An empty payload: on a retained topic it deletes the retained message."""

    agent: str
    kind: str


Message = Union[Heartbeat, State, Reply, Event, Alert, Command, Cleared]


def printable(text: str, limit: int = MAX_VERSION_TEXT) -> str:
    """``text`` with control and format characters replaced, cut to ``limit``."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text.strip())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def read(topic: str, payload: bytes, *, manager: Optional[str] = None):
    """(agent, kind, message) for a fleet topic; None for a topic outside the contract.

    ``manager``: also accept ``{manager}/broadcast`` (agent ``"*"``, kind
    ``command``). Raises ContractError when the payload breaks the contract.
    """
    if manager is not None and topic == contract.broadcast_topic(manager):
        return "*", "command", _command(contract.decode(payload)) if payload else Cleared("*", "command")
    parsed = contract.parse_topic(topic)
    if parsed is None:
        return None
    name, kind = parsed
    if not payload:
        return name, kind, Cleared(name, kind)
    return name, kind, decode(name, kind, payload, about_others=name == manager)


def decode(name: str, kind: str, payload: bytes, *, about_others: bool = False) -> Message:
    """The typed message ``payload`` carries on ``fleet/{name}/{kind}``.

    An agent speaks for itself only: a payload naming another agent is refused
    (``wrong-agent``), except with ``about_others`` (the manager's own alert topic,
    where fleet.heal reports on the agents it acted on).
    """
    canonical = _CANONICAL.get(kind)     # (reader, class, field names): heartbeat and state
    values = canonical[0](payload) if canonical else None
    if values is not None:
        message = _new(canonical[1])
        message.__dict__.update(zip(canonical[2], values))    # as _built, inline: per message
    else:
        data = contract.decode(payload)
        message = _fast(kind, data)
        if message is None:     # anything unusual, and every refusal, takes the full validators
            message = _DECODERS[kind](data)
    if not about_others and getattr(message, "agent", name) != name:
        raise contract.ContractError("wrong-agent")
    return message


def _fast(kind: str, data: dict) -> Optional[Message]:
    """The message by fastdecode's one pass, or None (see agent_kit.fastdecode)."""
    if kind == "heartbeat":
        fields = fastdecode.heartbeat(data)
        return None if fields is None else _built(Heartbeat, _HEARTBEAT_FIELDS, fields)
    if kind != "status":
        return None
    said = data.get("kind")
    if said == "state":
        fields = fastdecode.state(data)
        return None if fields is None else _built(State, _STATE_FIELDS, fields)
    if said == "reply":
        fields = fastdecode.reply(data)
        return None if fields is None else _built(Reply, _REPLY_FIELDS, fields)
    return None


def _built(cls, names: tuple, values: tuple):
    """``cls(*values)`` for a frozen dataclass without its __init__, which sets each field
    through object.__setattr__ (about half of a heartbeat's fold). Equal to ``cls(*values)``."""
    message = _new(cls)
    message.__dict__.update(zip(names, values))
    return message


_new = object.__new__


def _ts(data: dict) -> float:
    return contract.parse_rfc3339(data["ts"]).timestamp()


def _heartbeat(data: dict) -> Heartbeat:
    beat = contract.validate_heartbeat(data)
    return Heartbeat(beat["agent"], _ts(beat), beat["ok"], beat["uptime"], beat.get("mem_kb"),
                     beat.get("cpu"), dict(beat.get("errors") or {}), beat.get("interval"),
                     beat.get("version"), beat.get("instance"))


def _status(data: dict) -> Union[State, Reply, Event]:
    payload = contract.validate_status(data)
    kind = contract.classify_status(payload)
    if kind == "state":
        return State(payload["agent"], _ts(payload), payload["state"] == contract.STATE_ONLINE,
                     payload.get("instance"))
    if kind == "reply":
        return Reply(payload["agent"], _ts(payload), payload["id"], payload["verb"], payload["ok"],
                     dict(payload.get("result") or {}), payload.get("error"), payload.get("instance"))
    fields = {k: v for k, v in payload.items() if k not in contract.EVENT_ENVELOPE}
    return Event(payload["agent"], _ts(payload), payload["event"], fields)


def _alert(data: dict) -> Alert:
    alert = contract.validate_alert(data)
    return Alert(alert["agent"], _ts(alert), alert["code"], alert.get("reason"),
                 alert.get("level"), alert.get("count"))


def _command(data: dict) -> Command:
    command = contract.validate_command(data)
    return Command(command["id"], command["verb"], _ts(command), "sig" in command)


_DECODERS = {"heartbeat": _heartbeat, "status": _status, "alert": _alert, "command": _command}


def _field_names(cls) -> tuple:
    return tuple(f.name for f in fields(cls))


_HEARTBEAT_FIELDS, _STATE_FIELDS, _REPLY_FIELDS = (_field_names(c) for c in (Heartbeat, State, Reply))
# A heartbeat or state exactly as agent_kit writes it, read by one match (fastdecode).
_CANONICAL = {"heartbeat": (fastdecode.canonical_heartbeat, Heartbeat, _HEARTBEAT_FIELDS),
              "status": (fastdecode.canonical_state, State, _STATE_FIELDS)}
