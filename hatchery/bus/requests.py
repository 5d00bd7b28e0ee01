"""One request/reply exchange: which topics to hear it on, and what has come back.

Filled on the network thread by ``BusClient.request``; O(1) per message.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Callable, Optional

from agent_kit import contract
from hatchery.bus.messages import ANSWERED, FAILED, MAX_OTHERS, OFFLINE, SILENT, Message, Reply
from hatchery.errors import UsageError

WILDCARD_ABOVE = 50               # more targets than this: one wildcard subscription


def status_filters(names: list, broadcast_manager: Optional[str]) -> tuple:
    """(filters, qos): each status topic at QoS 1 in ONE SUBSCRIBE, or one wildcard.

    The wildcard is subscribed at QoS 0. Measured with 1,000 simulated agents:
    at QoS 1 the broker queues what exceeds its inflight window, and the burst
    of 1,000 retained states plus 1,000 replies overflowed the default
    ``max_queued_messages 1000``: 435 replies were dropped (none with the limit
    at 5000). At QoS 0 an online client's messages go straight out; on a live
    TCP connection that loses nothing, and a lost connection loses the request
    either way.
    """
    if broadcast_manager or len(names) > WILDCARD_ABOVE:
        return [f"{contract.FLEET_PREFIX}/+/status"], 0
    return [contract.topic(n, "status") for n in names], 1


class Route:
    """Where messages for one ``listen`` block go, matched without paho's matcher.

    Exact filters are one set lookup; the wildcard filters of a route are one
    compiled regular expression (``filter_regex``), so a topic is matched
    without being split.
    """

    def __init__(self, filters: tuple, callback: Callable[[Message], None]):
        for topic_filter in filters:
            check_filter(topic_filter)
        self.exact = frozenset(f for f in filters if "+" not in f and "#" not in f)
        wild = [f for f in filters if f not in self.exact]
        self.wild = filter_regex(wild).fullmatch if wild else None
        self.callback = callback

    def matches(self, topic: str) -> bool:
        return topic in self.exact or (self.wild is not None and self.wild(topic) is not None)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_filter(topic_filter: str) -> str:
    """``topic_filter`` if the broker will take it; UsageError otherwise.

    Mosquitto drops the whole connection on a SUBSCRIBE it cannot accept
    (a control character, a ``#`` that is not the last level, a ``+`` or ``#``
    inside a level): every other listener on it would go deaf until the
    reconnect.
    """
    levels = topic_filter.split("/")
    bad = (not topic_filter or len(topic_filter.encode("utf-8")) > 0xFFFF
           or _CONTROL.search(topic_filter)
           or any(("+" in level or "#" in level) and level not in ("+", "#") for level in levels)
           or "#" in levels[:-1])
    if bad:
        raise UsageError(f"not a topic filter the broker accepts: {topic_filter[:80]!r}",
                         "use MQTT filters: + or # as whole levels, # last, no control characters")
    return topic_filter


def filter_regex(filters: list) -> "re.Pattern":
    """One pattern matching (``fullmatch``) the topic names any of ``filters`` matches.

    ``+`` is one level (possibly empty), ``#`` the rest (possibly nothing, so
    ``a/#`` matches ``a``), and a wildcard at the first level never matches a
    ``$`` topic (``$SYS/...``), as MQTT says.
    """
    return re.compile("|".join(f"(?:{_filter_pattern(f)})" for f in filters), re.DOTALL)


def _filter_pattern(topic_filter: str) -> str:
    levels = topic_filter.split("/")
    out = r"(?!\$)" if levels[0] in ("+", "#") else ""
    for index, level in enumerate(levels):
        if level == "#":
            return out + ("(?:/.*)?" if index else ".*")
        out += ("/" if index else "") + ("[^/]*" if level == "+" else re.escape(level))
    return out


def filter_matches(pattern: tuple, levels: list) -> bool:
    """MQTT matching of a split filter against a split topic name (the reference
    the compiled form is tested against)."""
    if levels[0].startswith("$") and pattern[0] in ("+", "#"):
        return False      # wildcards never match $SYS-style topics at the first level
    for index, part in enumerate(pattern):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(pattern) == len(levels)


# A retained status that does not contain this cannot be an offline state: it is
# skipped undecoded (a thousand retained "online" states arrive with each request).
_OFFLINE_MARK = contract.STATE_OFFLINE.encode()


class Pending:
    """Replies and states for one request; filled on the network thread.

    O(1) per message: ``unsettled`` holds the targets neither answered nor
    known offline, and the waiter is woken only when it becomes empty (the
    timeout wakes it otherwise). No rescan of every target per reply.
    """

    def __init__(self, names: list, verb: str, instances: Optional[dict] = None,
                 answers_only: bool = False):
        self.names, self.verb = names, verb
        # {agent: instance}: only that handler's answer (and Will) settles the agent;
        # replies naming another instance are kept in ``others``, never taken as its answer
        self.instances = instances or {}
        # only an answer settles: a retained (perhaps forged) offline does not end the wait
        self.answers_only = answers_only
        self.others: dict = {}     # agent -> other replies to its command id
        self.wanted = set(names)
        self.cond = threading.Condition()
        self.ids: dict = {}        # agent -> command id expected from it
        self.sent: dict = {}       # agent -> perf_counter at send
        self.answers: dict = {}    # agent -> (payload, perf_counter at arrival)
        self.states: dict = {}     # agent -> retained online/offline
        self.unsettled = set(names)

    def expect(self, names: list) -> str:
        command_id = secrets.token_hex(8)
        now = time.perf_counter()
        with self.cond:
            for name in names:
                self.ids[name], self.sent[name] = command_id, now
        return command_id

    def seed(self, states: dict) -> None:
        """Start from a standing subscription's states (``bus.standing``): an agent
        known offline is settled at once, as its retained Will would settle it. Not
        when only answers settle, nor for an agent bound to an instance: the board
        keeps the state, not the instance that announced it."""
        if self.answers_only:
            return
        with self.cond:
            for name in self.names:
                state = states.get(name)
                if state is None or name in self.states or name in self.instances:
                    continue     # what this request already saw is newer, or unbound
                self.states[name] = state
                if state == contract.STATE_OFFLINE and name not in self.answers:
                    self.unsettled.discard(name)

    def on_message(self, message: Message) -> None:
        # fleet/{name}/status with a name we asked: the names were checked
        # against the contract, so membership is the whole topic check
        if message.retain and _OFFLINE_MARK not in message.payload:
            return   # the retained state we start from; only "offline" settles anyone
        parts = message.topic.split("/")
        if (len(parts) != 3 or parts[2] != "status" or parts[0] != contract.FLEET_PREFIX
                or parts[1] not in self.wanted):
            return
        if not message.properties_ok:
            return   # properties the contract does not allow: never taken as an answer
        try:
            payload = contract.decode(message.payload)
        except contract.ContractError:
            return   # not ours to judge here; the monitor counts bad payloads
        with self.cond:
            self._record(parts[1], payload, time.perf_counter())
            if not self.unsettled:
                self.cond.notify()

    def _record(self, name: str, payload: dict, now: float) -> None:
        kind = contract.classify_status(payload)
        if kind == "state" and valid_payload(payload, contract.STATE_SCHEMA):
            if self.answers_only or not self._bound(name, payload):
                return      # another instance's state (or a forged one) says nothing about ours
            self.states[name] = payload["state"]
            if name in self.answers:
                return
            if payload["state"] == contract.STATE_OFFLINE:
                self.unsettled.discard(name)
            else:       # back online before answering: wait for its answer again
                self.unsettled.add(name)
        elif (kind == "reply" and name in self.ids and payload.get("id") == self.ids[name]
              and valid_payload(payload, contract.REPLY_SCHEMA)):
            if name in self.answers or not self._bound(name, payload):
                self._other(name, payload)
                return
            self.answers[name] = (payload, now)
            self.unsettled.discard(name)

    def _bound(self, name: str, payload: dict) -> bool:
        wanted = self.instances.get(name)
        return wanted is None or payload.get("instance") == wanted

    def _other(self, name: str, payload: dict) -> None:
        kept = self.others.setdefault(name, [])
        if len(kept) < MAX_OTHERS:
            kept.append({k: payload.get(k) for k in ("instance", "ok", "result", "error")})

    def settled(self) -> bool:
        return not self.unsettled

    def wait(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(self.settled, timeout)

    def replies(self) -> list:
        with self.cond:
            return [self._reply(n) for n in self.names]

    def _reply(self, name: str) -> Reply:
        command_id = self.ids.get(name, "")
        others = list(self.others.get(name, ()))
        if name in self.answers:
            payload, at = self.answers[name]
            return Reply(name, payload["ok"], self.verb, command_id,
                         round((at - self.sent[name]) * 1000, 3), payload.get("result", {}),
                         payload.get("error"), ANSWERED if payload["ok"] else FAILED,
                         payload.get("instance"), others)
        state = OFFLINE if self.states.get(name) == contract.STATE_OFFLINE else SILENT
        return Reply(name, False, self.verb, command_id, state=state, others=others)


def checked_name(name: str) -> str:
    try:
        return contract.check_name(name)
    except contract.ContractError as exc:
        raise UsageError(f"bad agent name: {exc.detail}", "agent names are DNS labels") from None


def valid_payload(payload: dict, schema: dict) -> bool:
    try:
        contract.check_schema(payload, schema)
    except contract.ContractError:
        return False
    return True
