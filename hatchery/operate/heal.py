"""fleet.heal: restart agents that are down, on the runtime's word, never on the bus's alone.

The fleet is read through ONE fold (``observe.fleetstate.FleetState``) and
judged with the operator's intent (``core.intent``, re-read every tick): an
agent the operator stopped or retired, or one a rollout's lease holds, is
never touched. An agent judged offline, stale or unknown (or that its
runtime reports unhealthy) is only a suspect: heal asks its runtime
(``operate.confirm``) and restarts it only when the runtime confirms it is
gone, unhealthy, or running but hung (silent to a health-check bound to the
instance the runtime started). A bus state the runtime contradicts is
published as a ``telemetry-mismatch`` alert and spends no restart budget.
A runtime that restarts crashed agents by itself (capability
``restarts_crashed``) gets ``runtime_first`` seconds to do so first.

One pass (``heal_once``, for cron) reads the retained snapshot; ``watch`` is
the supervisor, folding a live subscription and waking on every change (a
kill -9's Last Will arrives at once). The live subscription (``fleet/+/+``) doubles
as the standing status subscription: the confirming health-checks reuse it
and read one message per agent, their reply. When the broker's start moves
(a restart, a kill -9 whose last save rolled retained states back), the
retained ``online`` states the runtimes contradict are set offline
(``operate.aftercrash``). Per agent it keeps a backoff (1 s, 2 s,
4 s ... up to 60 s between restarts) and a budget (``budget`` restarts within
``window`` seconds): a crash-looping agent is left down and alerted on. While
heal restarts an agent it holds a short lease on it (``core.intent``), so a
rollout and heal never start the same agent at once.

Every action is an alert (the contract's alert schema) on the manager's own
topic ``fleet/{manager}/alert``, which only the manager may write, naming the
agent; fleet.exporter counts the ``heal-*`` codes as
``hatchery_heal_actions_total{agent, action}``. The alert's ``reason`` is the
runtime's finding (gone, unhealthy, hung) for a restart, and the bus's
verdict for a mismatch.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.core.intent import owner_label, read_intent, release_lease, take_lease
from hatchery.core.plan import apply_plan
from hatchery.errors import HatcheryError, UsageError
from hatchery.inventory.model import Inventory
from hatchery.observe.fleetstate import RESTART_TOLERANCE_S, FleetState, Verdict, live_filters, retained_filters
from hatchery.operate import aftercrash
from hatchery.operate import confirm as runtime_word
from hatchery.operate.supervisor import (  # noqa: F401 (the names fleet.heal's callers use)
    CONFLICT,
    DEFAULT_BUDGET,
    DUEL,
    LEFT_TO_RUNTIME,
    RESCHEDULED,
    UNPLACEABLE,
    DEFAULT_WINDOW,
    FAILED,
    LEFT_DOWN,
    MISMATCH,
    RESTARTED,
    UNCONFIRMED,
    UNHEALTHY_RUNTIME,
    WOULD_RESTART,
    HealAction,
    Policy,
    Supervisor,
    Tracker,
    iso,
)
from hatchery.runtime import for_runtime

CORRECTED = "corrected-retained"   # a stale retained online set offline (operate.aftercrash): logged only

# alert codes (slugs) per action: what fleet.exporter counts (the heal- ones) and alerting routes
CODES = {RESTARTED: "heal-restart", FAILED: "heal-failed", LEFT_DOWN: "heal-gave-up",
         UNCONFIRMED: "heal-unconfirmed", MISMATCH: "telemetry-mismatch", CONFLICT: "conflicting-replies",
         LEFT_TO_RUNTIME: "heal-left-to-runtime", RESCHEDULED: "heal-rescheduled",
         UNPLACEABLE: "unplaceable", DUEL: "duelling-instances"}
CRITICAL = frozenset({LEFT_DOWN, FAILED, CONFLICT, UNPLACEABLE, DUEL})
HEAL_CODE_PREFIX = "heal-"
HEAL_LEASE_S = 120.0            # held only while one restart runs; expires by itself after a kill -9
MIN_TICK_S = 0.1                # at most this often, however busy the bus


def alert_topic(inv: Inventory) -> str:
    return contract.topic(inv.manager, "alert")


def heal_alert(action: HealAction) -> dict:
    reason = action.reason if action.action in (MISMATCH, CONFLICT, UNCONFIRMED) else \
        (action.finding or action.reason)
    return contract.make_alert(action.agent, CODES[action.action], reason=reason, count=action.restarts,
                               level="critical" if action.action in CRITICAL else "warning")


def publish(bus: BusClient, inv: Inventory, action: HealAction) -> None:
    if action.action not in CODES:
        return
    try:
        bus.publish(alert_topic(inv), contract.encode(heal_alert(action)), timeout=5.0)
    except HatcheryError:
        pass    # the restart itself matters more than its alert; the supervisor logs the action


def restart(inv: Inventory, name: str) -> tuple:
    """(ok, detail) of restarting one agent through its runtime; (None, why) when a rollout's
    lease holds it (the lease heal takes makes the two exclusive)."""
    agent, owner = inv.agents[name], owner_label("fleet.heal")
    try:
        take_lease(inv, [name], owner, HEAL_LEASE_S)
    except UsageError as exc:
        return None, str(exc)
    try:
        report = apply_plan("fleet.heal", for_runtime(agent.runtime).agent_restart_plan(inv, agent))
    except HatcheryError as exc:
        return False, str(exc)
    finally:
        release_lease(inv, [name], owner)
    if report.failed:
        return False, report.failed[0].error
    return True, "; ".join(r.detail for r in report.results if r.detail)


def supervisor_for(inv: Inventory, bus: BusClient, policy: Policy, state: FleetState, *,
                   on_action: Optional[Callable[[HealAction], None]] = None, check: bool = False) -> Supervisor:
    """A Supervisor wired to the real runtimes, the bus and the state directory."""
    actions_seen = on_action or (lambda action: None)

    def record(action: HealAction) -> None:
        if not check:
            publish(bus, inv, action)
        actions_seen(action)

    return Supervisor(
        state, policy, read_book=lambda: read_intent(inv),
        confirm=lambda names, state_only: runtime_word.confirm(inv, bus, names, hung_after=policy.hung_after,
                                                               state_only=state_only),
        restart=lambda name: restart(inv, name), record=record,
        restarts_itself=lambda name: runtime_word.restarts_itself(inv, name),
        runtime_unhealthy=lambda: runtime_word.runtime_unhealthy(inv), check=check,
        reschedules=lambda name: runtime_word.reschedules(inv, name))


def heal_once(inv: Inventory, bus: BusClient, policy: Policy, *, check: bool = False) -> list:
    """One pass over the retained snapshot: confirm each suspect with its runtime, restart
    (or with ``check`` only name) those confirmed down. The HealActions taken."""
    state = FleetState.for_inventory(inv).observe_all(bus.retained_messages(retained_filters()))
    actions: list = []
    once = Policy(**{**policy.__dict__, "runtime_first": 0.0, "settle": 0.0})
    supervisor_for(inv, bus, once, state, on_action=actions.append, check=check).tick(time.time())
    return actions


def watch(inv: Inventory, bus: BusClient, policy: Policy, *, stop: Optional[threading.Event] = None,
          on_action: Optional[Callable[[HealAction], None]] = None, tick: float = 0.5) -> Supervisor:
    """Run the supervisor until ``stop`` is set (or Ctrl-C): a whole look every ``tick`` seconds,
    and a look at what changed as soon as the bus says something."""
    stop = stop or threading.Event()
    state = FleetState.for_inventory(inv)
    supervisor = supervisor_for(inv, bus, policy, state, on_action=on_action)
    restarts = BrokerRestarts(inv, state, on_action or (lambda action: None))
    # This live subscription (fleet/+/+) is also the standing status subscription: the
    # confirming health-checks read only their replies (BusClient reuses it), one per agent.
    with bus.listen(live_filters(inv.manager), state.observe, qos=1):
        next_full = 0.0
        while not stop.is_set():
            now = time.time()
            restarts.check(now)
            whole = now >= next_full
            supervisor.tick(now, names=None if whole else [])
            if whole:
                next_full = now + tick
            # an open suspicion is looked at again soon, whatever the bus says meanwhile
            wake = min(next_full, now + policy.runtime_poll) if supervisor.episodes else next_full
            if stop.wait(MIN_TICK_S):       # first the rate limit, so news wakes the next look at once
                break
            state.wait_for_change(supervisor.seen, max(0.0, wake - time.time()))
    return supervisor


class BrokerRestarts:
    """fleet.heal --watch's eye on the broker's start (``FleetState.broker_started``): when it
    is first known, or moves (a restart, a kill -9 whose save rolled retained states back),
    the retained online states the runtimes contradict are set offline (``operate.aftercrash``),
    once the retained burst that follows the reconnect has been folded."""

    SETTLE_S = 1.0

    def __init__(self, inv: Inventory, state: FleetState, on_action: Callable[[HealAction], None]):
        self.inv, self.state, self.on_action = inv, state, on_action
        self.seen: Optional[float] = None
        self.due: Optional[float] = None

    def check(self, now: float) -> None:
        started = self.state.broker_started
        if started is not None and (self.seen is None or abs(started - self.seen) > RESTART_TOLERANCE_S):
            self.seen, self.due = started, now + self.SETTLE_S
        if self.due is None or now < self.due:
            return
        self.due = None
        try:
            corrections = aftercrash.correct(self.inv, self.state, self.seen)
        except HatcheryError as exc:
            corrections = [aftercrash.Correction("-", None, aftercrash.FAILED, f"not corrected: {exc}")]
        for correction in corrections:
            self.on_action(HealAction(correction.agent, str(Verdict.UNKNOWN), CORRECTED if
                                      correction.outcome == aftercrash.CORRECTED else UNCONFIRMED,
                                      correction.line()[:400], finding="broker-restart"))
