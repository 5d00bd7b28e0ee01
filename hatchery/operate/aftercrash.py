"""After a broker crash: retained ``online`` states the runtimes contradict are set offline.

Mosquitto saves its retained messages every few seconds
(``configs.broker.AUTOSAVE_SECONDS``) and a kill -9 rolls them back to the
last save: an agent stopped just before the crash is served ``online`` again
by the restarted broker, and nothing of its own will ever say otherwise (it
is not running, so it sends neither a birth nor a Will). The fold already
calls such a state ``unknown`` (it predates the broker's start); this module
puts the bus itself right.

An agent is corrected when its retained state says online, was announced
before the broker's start (``FleetState.broker_started``, less the fold's
tolerance), and its runtime says it is not running (and is not restarting it
itself). Its state is replaced by the contract's retained ``offline`` state,
naming the instance the stale ``online`` named (so the fold takes it as that
handler's end, as it would its Last Will), published as the agent itself:
the ACL lets only the agent write its status topic, as for agent.retire's
clearing (``bus.retained``). A running agent is left alone: it re-announces
itself on reconnect. One the runtime cannot be asked about, or a retired one
(whose login is revoked), is reported and left alone.

Run by ``broker.deploy`` (a plan item: decided now when the broker runs,
after its start when this plan starts it) and by ``fleet.heal --watch`` when
it sees the broker's start change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.configs.broker import broker_endpoint
from hatchery.core.paths import state_paths
from hatchery.core.plan import Action, Change
from hatchery.core.ports import listening
from hatchery.errors import BusError, HatcheryError
from hatchery.inventory.model import Inventory
from hatchery.observe.fleetstate import RESTART_TOLERANCE_S, FleetState, retained_filters
from hatchery.operate.confirm import agent_state
from hatchery.provision.credentials import retired_agents

ITEM = "bus retained states"
UPTIME_WAIT_S = 6.0             # $SYS/broker/uptime comes every sys_interval (2 s) after a start
CORRECTED, LEFT, FAILED = "corrected", "left", "failed"


@dataclass(frozen=True)
class Correction:
    agent: str
    instance: Optional[str]         # the instance the stale 'online' named (and the offline names)
    outcome: str                    # corrected | left | failed
    detail: str

    def line(self) -> str:
        named = f" (instance {self.instance})" if self.instance else ""
        return f"{self.agent}{named}: {self.detail}"


def stale_online(state: FleetState, names, started: Optional[float]) -> list:
    """[(agent, instance)] whose retained state says online but was announced before the
    broker's start ``started`` (epoch seconds; None: unknown, nobody). Pure."""
    if started is None:
        return []
    found = []
    for name in names:
        facts = state.facts(name)
        if facts.online and facts.state_ts is not None and facts.state_ts < started - RESTART_TOLERANCE_S:
            found.append((name, facts.instance))
    return found


def correct(inv: Inventory, state: FleetState, started: Optional[float] = None) -> list:
    """Correct every stale ``online`` of ``state`` (see the module's docstring): [Correction]."""
    started = state.broker_started if started is None else started
    suspects = stale_online(state, sorted(inv.agents), started)
    retired = retired_agents(inv) if suspects else set()
    found = (_correct_one(inv, name, instance, retired) for name, instance in suspects)
    return [c for c in found if c is not None]


def _correct_one(inv: Inventory, name: str, instance: Optional[str], retired: set) -> Optional[Correction]:
    """The Correction for one stale online; None for an agent that runs (it re-announces itself)."""
    if name in retired:
        return Correction(name, instance, LEFT, "retired: its login is revoked, left as it is")
    runtime = agent_state(inv, name)
    if runtime.running is None:
        return Correction(name, instance, LEFT, f"left online: the runtime could not be asked "
                                                f"({runtime.problem or 'no answer'})")
    if runtime.running or runtime.restarting:
        return None
    try:
        publish_offline(inv, name, instance)
    except HatcheryError as exc:
        return Correction(name, instance, FAILED, f"could not publish its offline state: {exc}")
    return Correction(name, instance, CORRECTED, f"online (saved before the broker's start) -> offline: "
                                                 f"the runtime says {runtime.status or 'not running'}")


def publish_offline(inv: Inventory, name: str, instance: Optional[str]) -> None:
    """The contract's retained offline state on ``name``'s status topic, logged in as ``name``."""
    payload = contract.encode(contract.make_state(name, contract.STATE_OFFLINE, instance=instance))
    with bus_for(inv, role=name) as bus:
        bus.publish(contract.topic(name, "status"), payload, retain=True, timeout=5.0)


def snapshot(inv: Inventory, *, wait: float = UPTIME_WAIT_S) -> FleetState:
    """The retained states and the broker's start, waiting up to ``wait`` for its uptime."""
    deadline = time.monotonic() + wait
    with bus_for(inv) as bus:
        while True:
            state = FleetState.for_inventory(inv).observe_all(bus.retained_messages(retained_filters()))
            if state.broker_started is not None or time.monotonic() > deadline:
                return state
            time.sleep(0.5)


def correct_now(inv: Inventory, started_hint: Optional[float] = None) -> list:
    """Read the retained snapshot and correct it. ``started_hint``: the caller itself just
    started the broker, no later than this (taken when its uptime is not published yet)."""
    state = snapshot(inv, wait=0.0 if started_hint else UPTIME_WAIT_S)
    return correct(inv, state, state.broker_started or started_hint)


def summary(corrections: list) -> str:
    done = [c for c in corrections if c.outcome == CORRECTED]
    left = [c for c in corrections if c.outcome != CORRECTED]
    parts = [f"corrected {len(done)}: " + "; ".join(c.line() for c in done)] if done else []
    parts += ["left " + "; ".join(c.line() for c in left)] if left else []
    return "; ".join(parts) or "no retained online state predates the broker's start"


def deploy_changes(inv: Inventory) -> list:
    """broker.deploy's last item, if any. With the broker running, decided now (none when
    nothing is stale); otherwise this plan starts it, and the correction runs once it is up
    (not on a first deploy: a broker that never ran here saved no retained state)."""
    if listening(*broker_endpoint(inv)):
        try:
            corrections = correct_plan(inv)
        except HatcheryError:
            return []           # not readable now: heal --watch and the next deploy look again
        if not corrections:
            return []
        return [Change(ITEM, Action.REPAIR, "agents not running still retained as online since the "
                       "broker's start: " + ", ".join(c.agent for c in corrections),
                       apply=lambda: _applied(correct_now(inv)))]
    if not Path(state_paths(inv).broker_dir).exists():
        return []
    started = time.time()
    return [Change(ITEM, Action.CHECK, "after the start: a retained online state the runtime "
                   "contradicts (rolled back by a crash) is set offline, as the agent",
                   apply=lambda: _applied(correct_now(inv, started)))]


def correct_plan(inv: Inventory) -> list:
    """The stale onlines of a running broker whose agents the runtime says are not running,
    without publishing anything (deploy --check shows them)."""
    state = snapshot(inv, wait=0.0)
    suspects = stale_online(state, sorted(inv.agents), state.broker_started)
    retired = retired_agents(inv) if suspects else set()
    out = []
    for name, instance in suspects:
        runtime = agent_state(inv, name) if name not in retired else None
        if runtime is not None and runtime.running is False and not runtime.restarting:
            out.append(Correction(name, instance, CORRECTED, "would be set offline"))
    return out


def _applied(corrections: list) -> str:
    failed = [c for c in corrections if c.outcome == FAILED]
    if failed:
        raise BusError("; ".join(c.line() for c in failed),
                       "check that the broker runs and the agents' credentials exist "
                       "(invoke broker.deploy), then run it again")
    return summary(corrections)
