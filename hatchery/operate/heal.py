"""fleet.heal: restart agents that the bus shows down, through each agent's runtime.

One pass (``heal_once``, for cron) restarts every agent whose retained state is
offline (its Last Will) or whose heartbeat is stale, and every docker agent
whose container Docker reports unhealthy. Agents stopped on purpose
(agent.stop: no pid file, or a stopped container) and retired agents are left
alone.

``watch`` is the supervisor: it listens to ``fleet/+/status``, so a Last Will
(the broker publishes it as soon as the handler's connection drops, which a
kill -9 does at once) triggers a restart within a tick; every few seconds it
also runs the one-pass survey for stale heartbeats and unhealthy containers.
Per agent it keeps a backoff (1 s, 2 s, 4 s ... up to 60 s between restarts) and
a budget (``budget`` restarts within ``window`` seconds): a crash-looping agent
is then left down and alerted on, not restarted forever.

Every action is published as an alert (the contract's alert schema) on the
manager's own topic ``fleet/{manager}/alert``, which only the manager may write
(its one extra ACL grant) and which names the agent in the payload;
fleet.exporter counts these as ``hatchery_heal_actions_total{agent, action}``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.core.plan import apply_plan
from hatchery.errors import HatcheryError
from hatchery.inventory.model import Inventory
from hatchery.observe import health
from hatchery.provision.credentials import retired_agents
from hatchery.runtime import for_runtime

DEFAULT_BUDGET = 5
DEFAULT_WINDOW = 600.0
RESTARTED, FAILED, LEFT_DOWN, WOULD_RESTART = "restarted", "failed", "left-down", "would-restart"
# alert codes (slugs) per action: what fleet.exporter counts
CODES = {RESTARTED: "heal-restart", FAILED: "heal-failed", LEFT_DOWN: "heal-gave-up"}
HEAL_CODE_PREFIX = "heal-"
UNHEALTHY_CONTAINER = "unhealthy-container"


@dataclass
class Policy:
    budget: int = DEFAULT_BUDGET            # restarts per agent within window
    window: float = DEFAULT_WINDOW
    stale: Optional[float] = None           # None: twice each agent's heartbeat interval
    backoff: float = 1.0                    # first wait between restarts; doubles
    backoff_max: float = 60.0
    survey_every: float = 5.0               # watch: seconds between stale/unhealthy surveys
    grace: float = 5.0                      # watch: seconds a restarted agent has to come online
    docker_first: float = 3.0               # watch: Docker's restart policy gets this long first


@dataclass
class HealAction:
    agent: str
    reason: str                             # offline | stale | unhealthy-container
    action: str                             # restarted | failed | left-down | would-restart
    detail: str = ""
    restarts: int = 0                       # restarts within the window, this one included
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def alert_topic(inv: Inventory) -> str:
    return contract.topic(inv.manager, "alert")


def heal_alert(action: HealAction) -> dict:
    level = "critical" if action.action in (LEFT_DOWN, FAILED) else "warning"
    return contract.make_alert(action.agent, CODES[action.action], reason=action.reason,
                               count=action.restarts, level=level)


# --- what is down -------------------------------------------------------------------

def survey(inv: Inventory, bus: BusClient, policy: Policy) -> dict:
    """{agent: reason} of the agents to restart now: offline, stale or unhealthy-container."""
    report = health.bus_health(inv, bus, threshold=policy.stale)
    down = {a.agent: a.verdict for a in report.agents if a.verdict in (health.OFFLINE, health.STALE)}
    for name in _unhealthy_containers(inv):
        down.setdefault(name, UNHEALTHY_CONTAINER)
    return {name: why for name, why in down.items() if _meant_to_run(inv, name)}


def _unhealthy_containers(inv: Inventory) -> list:
    """The agents their runtime reports unhealthy (a failing health check), every runtime asked."""
    states = [s for name in sorted({a.runtime for a in inv.agents.values()})
              for s in for_runtime(name).agent_list(inv)]
    return [s.agent for s in states if s.health == "unhealthy" and s.agent in inv.agents]


def _meant_to_run(inv: Inventory, name: str) -> bool:
    """In the inventory, not retired, and not stopped on purpose (agent.stop)."""
    agent = inv.agents.get(name)
    if agent is None or name in retired_agents(inv):
        return False
    return not for_runtime(agent.runtime).agent_state(inv, agent).detail.get("stopped", False)


# --- acting ---------------------------------------------------------------------------

def restart(inv: Inventory, name: str) -> tuple:
    """(ok, detail): restart one agent through its runtime."""
    agent = inv.agents[name]
    try:
        report = apply_plan("fleet.heal", for_runtime(agent.runtime).agent_restart_plan(inv, agent))
    except HatcheryError as exc:
        return False, str(exc)
    if report.failed:
        return False, report.failed[0].error
    return True, "; ".join(r.detail for r in report.results if r.detail)


def publish(bus: BusClient, inv: Inventory, action: HealAction) -> None:
    try:
        bus.publish(alert_topic(inv), contract.encode(heal_alert(action)), timeout=5.0)
    except HatcheryError:
        pass    # the restart itself matters more than its alert; the supervisor logs the action


def heal_once(inv: Inventory, bus: BusClient, policy: Policy, *, check: bool = False) -> list:
    """One pass: restart (or with ``check`` only name) every agent that is down."""
    actions = []
    for name, reason in survey(inv, bus, policy).items():
        if check:
            actions.append(HealAction(name, reason, WOULD_RESTART))
            continue
        ok, detail = restart(inv, name)
        action = HealAction(name, reason, RESTARTED if ok else FAILED, detail, restarts=1)
        publish(bus, inv, action)
        actions.append(action)
    return actions


# --- the supervisor ---------------------------------------------------------------------

class Tracker:
    """One agent's restart history: backoff and budget. Pure; the clock is passed in."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.restarts: deque = deque()
        self.next_allowed = 0.0
        self.given_up = False
        self.grace_until = 0.0

    def recent(self, now: float) -> int:
        while self.restarts and now - self.restarts[0] > self.policy.window:
            self.restarts.popleft()
        return len(self.restarts)

    def decide(self, now: float) -> str:
        """'restart', 'wait' (backoff or grace) or 'give-up' (budget spent, alert once)."""
        if self.given_up:
            return "wait"
        if now < max(self.next_allowed, self.grace_until):
            return "wait"
        if self.recent(now) >= self.policy.budget:
            self.given_up = True
            return "give-up"
        return "restart"

    def restarted(self, now: float) -> int:
        self.restarts.append(now)
        count = self.recent(now)
        delay = min(self.policy.backoff * 2 ** (count - 1), self.policy.backoff_max)
        self.next_allowed = now + delay
        self.grace_until = now + self.policy.grace
        return count

    def came_back(self) -> None:
        """Online again: a later crash gets a restart, after the backoff still running."""
        self.given_up = False
        self.grace_until = 0.0


class Supervisor:
    """The state of ``fleet.heal --watch``: who is down, and each agent's Tracker."""

    def __init__(self, inv: Inventory, bus: BusClient, policy: Policy,
                 on_action: Optional[Callable[[HealAction], None]] = None):
        self.inv, self.bus, self.policy = inv, bus, policy
        self.on_action = on_action or (lambda action: None)
        self.trackers = {name: Tracker(policy) for name in inv.agents}
        self.down: dict = {}                    # name -> reason
        self.down_since: dict = {}              # name -> monotonic time it was seen down
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.actions: list = []

    def on_status(self, message) -> None:
        """Network thread: note Last Wills and births; wake the loop on a Will."""
        parsed = contract.parse_topic(message.topic)
        if not parsed or parsed[0] not in self.trackers or not message.payload:
            return
        try:
            payload = contract.validate_status(contract.decode(message.payload))
        except contract.ContractError:
            return
        if contract.classify_status(payload) != "state":
            return
        with self.lock:
            if payload["state"] == contract.STATE_OFFLINE:
                self.down[parsed[0]] = health.OFFLINE
                self.down_since.setdefault(parsed[0], time.monotonic())
                self.wake.set()
            else:
                self.down.pop(parsed[0], None)
                self.down_since.pop(parsed[0], None)
                self.trackers[parsed[0]].came_back()

    def survey(self) -> None:
        found = survey(self.inv, self.bus, self.policy)
        with self.lock:
            for name, reason in found.items():
                self.down.setdefault(name, reason)
                self.down_since.setdefault(name, time.monotonic())
            for name in [n for n, r in self.down.items() if n not in found and r != health.OFFLINE]:
                self.down.pop(name)

    def tick(self, now: float) -> None:
        with self.lock:
            down = dict(self.down)
        for name, reason in down.items():
            if not _meant_to_run(self.inv, name):
                with self.lock:
                    self.down.pop(name, None)
                continue
            self._act(name, reason, now)

    def _act(self, name: str, reason: str, now: float) -> None:
        tracker = self.trackers[name]
        agent = self.inv.agents[name]
        if for_runtime(agent.runtime).restarts_crashed and self._runtime_restarting(agent, now):
            return      # the runtime's restart policy restarts a dead handler by itself
        if now < tracker.grace_until and not self._running(agent):
            tracker.grace_until = 0.0   # died again before its birth: no need to wait out the grace
        decision = tracker.decide(now)
        if decision == "wait":
            return
        if decision == "give-up":
            self._record(HealAction(name, reason, LEFT_DOWN,
                                    f"{tracker.recent(now)} restarts within {self.policy.window:g}s; "
                                    "left down", restarts=tracker.recent(now)))
            return
        count = tracker.restarted(now)
        ok, detail = restart(self.inv, name)
        self._record(HealAction(name, reason, RESTARTED if ok else FAILED, detail, restarts=count))

    def _runtime_restarting(self, agent, now: float) -> bool:
        """Give the runtime's restart policy ``docker_first`` seconds (unless it is only waiting
        out its backoff), and an agent it has restarted since it went down ``grace``
        seconds to come online: restarting it again would start it over."""
        down_for = now - self.down_since.get(agent.name, now)
        runtime = for_runtime(agent.runtime)
        if runtime.agent_state(self.inv, agent).restarting:
            # Docker is waiting out its own restart delay, which doubles with every crash
            # of a container that ran under 10 s (measured: up to 5.9 s); a restart skips it
            return down_for < 1.0
        if down_for < self.policy.docker_first:
            return True
        provenance = runtime.agent_provenance(self.inv, agent)
        started = provenance.started if provenance else None
        went_down = time.time() - down_for
        return started is not None and started > went_down and time.time() - started < self.policy.grace

    def _running(self, agent) -> bool:
        try:
            return bool(for_runtime(agent.runtime).agent_state(self.inv, agent).running)
        except HatcheryError:
            return False

    def _record(self, action: HealAction) -> None:
        self.actions.append(action)
        publish(self.bus, self.inv, action)
        self.on_action(action)


def watch(inv: Inventory, bus: BusClient, policy: Policy, *, stop: Optional[threading.Event] = None,
          on_action: Optional[Callable[[HealAction], None]] = None, tick: float = 0.5) -> Supervisor:
    """Run the supervisor until ``stop`` is set (or Ctrl-C)."""
    stop = stop or threading.Event()
    supervisor = Supervisor(inv, bus, policy, on_action)
    next_survey = 0.0
    with bus.listen([f"{contract.FLEET_PREFIX}/+/status"], supervisor.on_status, qos=1):
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_survey:
                supervisor.survey()
                next_survey = now + policy.survey_every
            supervisor.tick(time.monotonic())
            supervisor.wake.wait(tick)
            supervisor.wake.clear()
    return supervisor
