"""Round 3: the dashboard's timeline (hatchery/observe/history.py) against one agent.

The timeline keeps the fleet's last 500 events. The attacker holds alpha's
password and, with raw paho on broker.deploy's broker, flaps alpha's
retained state and raises alerts; the manager's dashboard model reads the
bus through its own client and refreshes as a page's stream does. Fails if
alpha's flood pushes another agent's event (beta going offline, heal's
action on beta) out of the timeline, or holds more than its share.
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.connection import connection_for
from hatchery.observe import history
from hatchery.observe.fleetstate import live_filters
from hatchery.observe.live import FleetModel
from tests.security.hostilefleet import agent_client, deployed_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    yield from deployed_fleet(tmp_path_factory.mktemp("history"), interval=600)


def _send(client: mqtt.Client, topic: str, message: dict, retain: bool = False) -> None:
    client.publish(topic, contract.encode(message), qos=1, retain=retain).wait_for_publish(5)


def _until(model: FleetModel, check, timeout: float = 5.0) -> None:
    """Refresh (as a page's stream does on each change) until ``check`` holds."""
    deadline = time.monotonic() + timeout
    model.refresh()
    while not check():
        assert time.monotonic() < deadline, "the model never saw it"
        time.sleep(0.01)
        model.refresh()


def test_one_agents_flood_cannot_push_others_out_of_the_timeline(fleet):
    inv = fleet
    model = FleetModel(inv)
    beta, alpha = agent_client(inv, "beta"), agent_client(inv, "alpha")
    try:
        with connection_for(inv).client() as bus, bus.listen(live_filters(inv.manager), model.observe):
            status = contract.topic("beta", "status")
            _send(beta, status, contract.make_state("beta", "online"), retain=True)
            _send(beta, contract.topic("beta", "heartbeat"),
                  contract.make_heartbeat("beta", True, 1.0), retain=True)
            _until(model, lambda: model.state.facts("beta").online)
            _send(beta, status, contract.make_state("beta", "offline"), retain=True)
            # fleet.heal's word on beta, on the manager's own alert topic
            bus.publish(contract.topic(inv.manager, "alert"),
                        contract.encode(contract.make_alert("beta", "heal-restart", level="warning")))
            _until(model, lambda: any(e.agent == "beta" and e.kind == "heal"
                                      for e in model.history.timeline.after(0)))
            theirs = {(e.kind, e.text) for e in model.history.timeline.after(0) if e.agent == "beta"}
            # alpha flaps and alerts, each step seen by a refresh (a page's stream does one per change)
            for i in range(history.EVENTS_KEPT):
                state = "online" if i % 2 == 0 else "offline"
                _send(alpha, contract.topic("alpha", "status"), contract.make_state("alpha", state),
                      retain=True)
                _send(alpha, contract.topic("alpha", "alert"),
                      contract.make_alert("alpha", f"noise-{i % 7}"))
                before = model.state.version
                _until(model, lambda: model.state.version >= before and
                       model.state.facts("alpha").online is (state == "online"))
            events = model.history.timeline.after(0)
            by_alpha = sum(1 for e in events if e.agent == "alpha")
            assert by_alpha >= 100, "the flood did not reach the timeline: nothing was shown"
            left = {(e.kind, e.text) for e in events if e.agent == "beta"}
            assert theirs <= left, f"alpha's flood pushed beta's events out: {theirs - left}"
            assert by_alpha <= history.EVENTS_PER_AGENT
    finally:
        for client in (alpha, beta):
            client.disconnect()
            client.loop_stop()
