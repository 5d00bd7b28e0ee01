"""What the bus hands the control side: a received message, and one agent's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

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
    """A received message, detached from paho."""

    topic: str
    payload: bytes
    retain: bool
    received: float       # time.time() at arrival
    properties: Optional[dict] = None   # the MQTT v5 properties it carried (paho names); None: none
    properties_ok: bool = True          # False: properties its topic may not carry
                                        # (agent_kit.contract.ALLOWED_PROPERTIES): readers drop it
