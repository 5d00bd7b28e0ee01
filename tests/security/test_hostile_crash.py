"""Attack 4 of the threat model: after a broker crash, dead agents looked alive.

On kill -9 Mosquitto's retained state rolled back to the last autosave (every
60 s): an agent stopped cleanly just before came back ``online`` and
bus-health called it healthy (online). Controls: the rendered config saves every 5 s
(cost in bench/persistence_bench.py; not on every change, which turned a QoS 1
flood into one database write per message), and bus-health reads the broker's
start from ``$SYS/broker/uptime``: retained state dated before it was not
re-announced to this broker and is never taken as alive (the one rule calls
it ``unknown``: unconfirmed until it speaks again).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from agent_kit import contract, messages
from hatchery.bus.client import Message
from hatchery.bus.connection import bus_for
from hatchery.configs import broker as broker_conf
from hatchery.core.paths import StatePaths
from hatchery.core.plan import apply_plan
from hatchery.core.ports import wait_until
from hatchery.core.process import read_pid
from hatchery.core.intent import Intent
from hatchery.observe import fleetstate, health
from hatchery.observe.fleetstate import AgentFacts, FleetState, judge
from hatchery.provision import credentials as cr
from hatchery.provision.operations import (
    broker_conf as rendered_conf,
    deploy_plan,
    hatch_plan,
    stop_broker_plan,
    stop_plan,
)
from tests.security.hostilefleet import deployed_fleet
from tests.security.secbroker import Probe


@pytest.fixture
def fleet(tmp_path):
    yield from deployed_fleet(tmp_path, interval=30)


def _verdicts(inv) -> dict:
    with bus_for(inv, role="monitor") as bus:
        return {a.agent: a for a in health.bus_health(inv, bus).agents}


def _wait_verdict(inv, agent: str, wanted: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        verdicts = _verdicts(inv)
        if verdicts[agent].verdict == wanted or time.monotonic() > deadline:
            return verdicts
        time.sleep(0.2)


def _crash_and_restart(inv) -> None:
    paths = StatePaths(inv.state_dir)
    os.kill(read_pid(paths.broker_pid), signal.SIGKILL)
    assert wait_until("127.0.0.1", inv.broker.port, up=False)
    assert apply_plan("deploy", deploy_plan(inv)).ok      # starts it again


def test_the_rendered_config_saves_often_and_publishes_uptime(fleet):
    conf = rendered_conf(fleet)
    assert "autosave_on_changes" not in conf      # a QoS 1 flood must not mean a save per message
    assert f"autosave_interval {broker_conf.AUTOSAVE_SECONDS}\n" in conf
    assert broker_conf.AUTOSAVE_SECONDS <= 5
    assert f"sys_interval {broker_conf.SYS_INTERVAL}\n" in conf
    assert broker_conf.SYS_INTERVAL + 1 <= fleetstate.RESTART_TOLERANCE_S


def test_a_cleanly_stopped_agent_stays_down_after_kill_9(fleet):
    agents = list(fleet.agents.values())
    assert apply_plan("hatch", hatch_plan(fleet, agents)).ok
    assert _wait_verdict(fleet, "alpha", health.ONLINE)["alpha"].verdict == health.ONLINE
    assert _wait_verdict(fleet, "beta", health.ONLINE)["beta"].verdict == health.ONLINE
    assert apply_plan("stop alpha", stop_plan(fleet, [fleet.agents["alpha"]])).ok
    assert _wait_verdict(fleet, "alpha", health.OFFLINE)["alpha"].verdict == health.OFFLINE
    _crash_and_restart(fleet)
    verdicts = _wait_verdict(fleet, "beta", health.ONLINE)       # the live one comes back
    assert verdicts["beta"].verdict == health.ONLINE
    assert verdicts["alpha"].verdict != health.ONLINE, verdicts["alpha"]


def test_a_retained_online_from_before_the_restart_is_not_alive(fleet):
    """The second control on its own: the broker persisted a stale 'online' (here a
    raw client holding alpha's credentials left it) and restarts a few seconds later."""
    alpha = Probe(_Addr(fleet), "alpha", cr.stored_secret(fleet, "alpha"))
    assert not alpha.connect().is_failure
    alpha.publish("fleet/alpha/status", contract.encode(contract.make_state("alpha", "online")),
                  retain=True)
    alpha.publish("fleet/alpha/heartbeat", contract.encode(contract.make_heartbeat("alpha", True, 5.0)),
                  retain=True)
    alpha.client.disconnect()      # clean: no Will, the retained 'online' stays
    alpha.client.loop_stop()
    assert _verdicts(fleet)["alpha"].verdict == health.ONLINE
    time.sleep(fleetstate.RESTART_TOLERANCE_S + 0.5)
    # a clean restart saves the retained state for sure (a kill -9 keeps it only if an
    # autosave came between): either way the broker serves alpha's 'online' again
    assert apply_plan("stop", stop_broker_plan(fleet)).ok
    assert apply_plan("deploy", deploy_plan(fleet)).ok
    # its heartbeat is ~4 s old: fresh by age (threshold 60 s), but older than the start
    verdict = _verdicts(fleet)["alpha"]
    assert verdict.verdict == health.UNKNOWN and "broker started" in verdict.reason
    assert verdict.problem


class _Addr:
    def __init__(self, inv):
        self.host, self.port = "127.0.0.1", inv.broker.port


def test_broker_start_is_read_from_its_uptime():
    now = time.time()

    def started(payload: bytes):
        state = FleetState({}, "zephyr")
        state.observe(Message(fleetstate.BROKER_UPTIME_TOPIC, payload, True, now))
        return state.broker_started
    assert started(b"120 seconds") == pytest.approx(now - 120)
    for junk in (b"", b"x seconds", b"-5 seconds", b"5 minutes", b"9" * 40):
        assert started(junk) is None


def test_judge_takes_a_state_from_after_the_start_as_alive():
    now = time.time()
    facts = AgentFacts("a", online=True, state_ts=now - 1,
                       beat=messages.Heartbeat("a", now - 1, True, 5.0))
    started = now - 2
    assert judge(facts, intent=Intent.RUNNING, limit=60, now=now,
                 broker_started=started).verdict == health.ONLINE
    facts.state_ts, facts.beat = started - 30, messages.Heartbeat("a", started - 30, True, 5.0)
    assert judge(facts, intent=Intent.RUNNING, limit=60, now=now,
                 broker_started=started).verdict == health.UNKNOWN
