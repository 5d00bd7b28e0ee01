"""A standing status subscription: each agent's online/offline state, kept current.

``BusClient.standing_status`` holds ``fleet/+/status`` open for as long as a
long-running role lives and folds every state it sees into a ``StatusBoard``.
A request made meanwhile subscribes to nothing: it starts from the board
(agents known offline settle at once) and reads only the replies.
"""

from __future__ import annotations

from agent_kit import contract
from hatchery.bus.messages import Message

# A status payload that does not contain this is no state (a reply or an
# event): skipped without decoding. One that does is decoded and checked.
_STATE_MARK = b'"state"'


class StatusBoard:
    """agent -> its last retained or live state ("online" / "offline")."""

    FILTER = f"{contract.FLEET_PREFIX}/+/status"

    def __init__(self):
        self.states: dict = {}
        self.invalid = 0

    def on_message(self, message: Message) -> None:
        parts = message.topic.split("/")
        if len(parts) != 3 or parts[2] != "status":
            return
        if not message.payload:        # a cleared retained state: nothing known any more
            self.states.pop(parts[1], None)
            return
        if _STATE_MARK not in message.payload or not contract.NAME_RE.fullmatch(parts[1]):
            return
        try:
            payload = contract.decode(message.payload)
            if contract.classify_status(payload) != "state":
                return
            contract.validate_status(payload)
        except contract.ContractError:
            self.invalid += 1
            return
        if payload["agent"] == parts[1]:
            self.states[parts[1]] = payload["state"]

    def offline(self) -> set:
        return {name for name, state in list(self.states.items())
                if state == contract.STATE_OFFLINE}

    def forget(self) -> None:
        """After a reconnect: the retained states are read again from scratch."""
        self.states = {}
