"""fleet.rollout's health gate, bound to the start the runtime made.

An agent just replaced passes the gate when, over the bus, it has sent:

1. a birth: its retained status ``online``, dated after the restart, naming
   the instance the runtime reports for the start it made;
2. an answer to health-check from that instance;
3. with ``expect_version``, a version-report from that instance answering
   exactly that version.

A reply or birth naming another instance (or none) is not taken as the
agent's: anyone holding the agent's password can publish on its status
topic, but only the handler the runtime started knows its instance (handed
over in its environment, never on the bus before its own birth). Replies to
one command id that disagree (another instance, another answer) fail the
gate for that agent and are alerted as ``conflicting-replies`` on the
manager's alert topic: something else answers as that agent. A runtime that
reports no instance leaves the gate unbound (any reply counts, as before).

``Gate`` is the pure part (births and replies in, verdicts out);
``wait_healthy`` feeds it from the bus.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from agent_kit import contract, messages
from hatchery.bus.client import BusClient
from hatchery.bus.messages import ANSWERED, Reply
from hatchery.core.words import plural
from hatchery.errors import HatcheryError
from hatchery.inventory.model import Inventory

POLL = 0.2
CONFLICT_CODE = "conflicting-replies"


@dataclass
class GateResult:
    problems: dict = field(default_factory=dict)     # name -> what is missing or wrong
    conflicts: dict = field(default_factory=dict)    # name -> verb whose replies disagreed
    versions: dict = field(default_factory=dict)     # name -> what its own instance reported


class Gate:
    """Which agents still owe a bound birth, health-check answer or the expected version."""

    def __init__(self, instances: dict, expect_version: Optional[str], since: float):
        self.instances = dict(instances)             # name -> instance the runtime started (or None)
        self.expect, self.since = expect_version, since
        self.waiting = list(instances)
        self.births: dict = {}
        self.foreign_births: dict = {}
        self.healthy: set = set()
        self.versions: dict = {}
        self.conflicts: dict = {}
        self._lock = threading.Lock()

    def bound(self, names: list) -> dict:
        """{name: instance} for the request path: only these instances' replies settle a name."""
        return {n: self.instances[n] for n in names if self.instances.get(n)}

    def birth(self, state: messages.State) -> None:
        """A retained state seen on the agent's status topic (network thread)."""
        if state.agent not in self.instances or not state.online or state.ts < self.since - 0.001:
            return
        wanted = self.instances[state.agent]
        with self._lock:
            if wanted and state.instance != wanted:
                self.foreign_births[state.agent] = self.foreign_births.get(state.agent, 0) + 1
            else:
                self.births[state.agent] = state.ts

    def born(self) -> list:
        with self._lock:
            return [n for n in self.waiting if n in self.births]

    def health(self, replies: list) -> None:
        for reply in replies:
            self._note_conflict(reply)
            if reply.state == ANSWERED and self._ours(reply):
                self.healthy.add(reply.agent)

    def version(self, replies: list) -> None:
        for reply in replies:
            self._note_conflict(reply)
            if not self._ours(reply):
                continue    # what its own instance said is reported, even beside a conflict
            self.versions[reply.agent] = reply.result.get("version") if reply.ok else \
                f"error {reply.error or reply.state}"

    def _ours(self, reply: Reply) -> bool:
        wanted = self.instances.get(reply.agent)
        return reply.state != "silent" and (not wanted or reply.instance == wanted)

    def _note_conflict(self, reply: Reply) -> None:
        if reply.conflict:
            self.conflicts.setdefault(reply.agent, reply.verb)

    def ready_for_version(self) -> list:
        return [n for n in self.born() if n in self.healthy and n not in self.conflicts]

    def settle(self) -> None:
        """Drop from ``waiting`` the agents that passed, and those that failed for good (conflicts)."""
        self.waiting = [n for n in self.waiting if n not in self.conflicts and not self._passed(n)]

    def _passed(self, name: str) -> bool:
        if name not in self.births or name not in self.healthy:
            return False
        return not self.expect or self.versions.get(name) == self.expect

    def result(self) -> GateResult:
        problems = {n: self.missing(n) for n in self.waiting}
        problems.update({n: f"conflicting replies to {verb}: something else answers as this agent "
                            f"(its own instance said {self._said(n)})" for n, verb in self.conflicts.items()})
        return GateResult(problems, dict(self.conflicts), dict(self.versions))

    def _said(self, name: str) -> str:
        if name in self.versions:
            return f"version {self.versions[name]!r}"
        return "healthy" if name in self.healthy else "nothing"

    def missing(self, name: str) -> str:
        if name not in self.births:
            foreign = self.foreign_births.get(name)
            extra = f"; {plural(foreign, 'birth')} naming another instance ignored" if foreign else ""
            return f"no birth message from the instance the runtime started{extra}"
        if name not in self.healthy:
            return "no health-check answer from the instance the runtime started"
        return f"version-report said {self.versions.get(name)!r}, expected {self.expect!r}"


def wait_healthy(bus: BusClient, instances: dict, *, since: float, expect_version: Optional[str] = None,
                 timeout: float = 15.0) -> GateResult:
    """Gate ``instances`` ({name: instance the runtime started, or None}) until all pass or
    ``timeout``; ``since`` is the wall-clock time of the restart (an older retained online is
    the previous handler's, not a birth)."""
    gate = Gate(instances, expect_version, since)
    if not instances:
        return gate.result()

    def on_status(message) -> None:
        try:
            found = messages.read(message.topic, message.payload)
        except contract.ContractError:
            return
        if found and isinstance(found[2], messages.State):
            gate.birth(found[2])

    deadline = time.monotonic() + timeout
    with bus.listen([contract.topic(n, "status") for n in instances], on_status):
        while gate.waiting and time.monotonic() < deadline:
            _ask(bus, gate, min(2.0, max(0.2, deadline - time.monotonic())))
            gate.settle()
            if gate.waiting:
                time.sleep(POLL)
    return gate.result()


def _ask(bus: BusClient, gate: Gate, timeout: float) -> None:
    ask = [n for n in gate.born() if n not in gate.healthy and n not in gate.conflicts]
    if ask:
        gate.health(bus.request(ask, "health-check", timeout=timeout, instances=gate.bound(ask),
                                answers_only=True))
    ready = gate.ready_for_version()
    if gate.expect and ready:
        gate.version(bus.request(ready, "version-report", timeout=timeout, instances=gate.bound(ready),
                                 answers_only=True))


def publish_conflicts(bus: BusClient, inv: Inventory, conflicts: dict) -> None:
    """One ``conflicting-replies`` alert per agent on the manager's alert topic."""
    for name, verb in conflicts.items():
        alert = contract.make_alert(name, CONFLICT_CODE, reason=verb, level="critical")
        try:
            bus.publish(contract.topic(inv.manager, "alert"), contract.encode(alert), timeout=5.0)
        except HatcheryError:
            pass    # the rollout's own report names the agent too
