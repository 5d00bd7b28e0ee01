"""What the bus hands the control side: a received message, and one agent's outcome."""

from __future__ import annotations

import json
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
    instance: Optional[str] = None      # the handler instance the answer names
    # Every other reply to the same command id (a QoS 1 duplicate, or someone else
    # logged in as the agent answering for it): {instance, ok, result, error}, at most MAX_OTHERS.
    others: list = field(default_factory=list)

    @property
    def conflict(self) -> bool:
        """Replies to this one command id that disagree (another instance, another answer)."""
        answers = {_answer(o) for o in self.others}
        if self.state in (ANSWERED, FAILED):
            answers.add(_answer(vars(self)))
        return len(answers) > 1

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        if not self.others:
            del data["others"]
        return data


MAX_OTHERS = 8


def _answer(reply: dict) -> tuple:
    result = json.dumps(reply.get("result") or {}, sort_keys=True, default=str)
    return (reply.get("instance"), reply.get("ok"), result, reply.get("error"))


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
