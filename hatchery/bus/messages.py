"""What the bus hands the control side: a received message, and one agent's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Optional

NO_PROPERTIES: Mapping = MappingProxyType({})
ANSWERED, FAILED, OFFLINE, SILENT = "answered", "failed", "offline", "silent"


@dataclass
class Reply:
    """One agent's outcome for one command."""

    agent: str
    ok: bool
    verb: str
    id: str
    rtt_ms: Optional[float] = None
    result: dict = field(default_factory=dict)
    error: Optional[str] = None
    state: str = SILENT   # answered / failed / offline / silent

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Message:
    """A received message, as ``bus.wire`` decoded it."""

    topic: str
    payload: bytes
    retain: bool
    received: float       # time.time() at arrival
    # MQTT 5 properties by paho's names (``MessageExpiryInterval``, ``UserProperty``:
    # a tuple of (key, value) pairs, ...); empty for 3.1.1 and for most messages
    properties: Mapping = field(default_factory=lambda: NO_PROPERTIES, compare=False)
