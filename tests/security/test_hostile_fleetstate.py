"""Round 3: the one fleet state and its judge (hatchery/observe/fleetstate.py) against one agent.

Heal and the rollout act only on what ``FleetState.judge`` calls down, and
then only when the runtime confirms it (tests/dayops/test_heal_intent.py).
Here the attacker holds alpha's password and, with raw paho on
broker.deploy's broker, forges everything it can: births and Wills naming
other instances (beta's among them), births taking turns (a "duel"), a
heartbeat dated an hour ahead, payloads naming beta, and publishes on beta's
and the manager's topics. The manager's own client folds the bus. Fails if
any of it changes what the fleet state says of beta, adds a heal action, or
makes the future-dated alpha look fresh.
"""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.connection import connection_for
from hatchery.core.intent import read_intent
from hatchery.observe.fleetstate import FleetState, Verdict, live_filters
from tests.security.hostilefleet import agent_client, deployed_fleet

BETA = "beta0instance01"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    yield from deployed_fleet(tmp_path_factory.mktemp("fleetstate"), interval=30)


def _raw(client: mqtt.Client, topic: str, body: dict, retain: bool = True) -> None:
    client.publish(topic, json.dumps(body).encode(), qos=1, retain=retain).wait_for_publish(5)


def _stamp(body: dict, seconds_ahead: float) -> dict:
    at = time.gmtime(time.time() + seconds_ahead)
    return {**body, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", at)}


def _forgeries(inv) -> list:
    """(topic, body) as alpha's attacker sends them: every one on a topic or about an agent
    it does not own, or about instances that are not the running handler's."""
    alpha, beta, manager = (lambda kind, n=n: contract.topic(n, kind) for n in ("alpha", "beta", inv.manager))
    duel = [(alpha("status"), contract.make_state("alpha", "online", instance=i))
            for i in ("aaaa11112222", "bbbb33334444") * 3]
    return duel + [
        (alpha("status"), contract.make_state("alpha", "offline", instance=BETA)),
        (alpha("status"), contract.make_state("beta", "offline", instance=BETA)),
        (alpha("heartbeat"), contract.make_heartbeat("beta", False, 1.0, instance=BETA)),
        (alpha("alert"), contract.make_alert("beta", "heal-restart")),
        (beta("status"), contract.make_state("beta", "offline", instance=BETA)),
        (beta("heartbeat"), contract.make_heartbeat("beta", False, 1.0)),
        (beta("alert"), contract.make_alert("beta", "dropped-message")),
        (manager("alert"), contract.make_alert("beta", "heal-restart", level="critical")),
        (alpha("heartbeat"), _stamp(contract.make_heartbeat("alpha", True, 9.0), 3600)),
    ]


def test_one_agent_cannot_change_what_the_fleet_state_says_of_another(fleet):
    inv = fleet
    state = FleetState.for_inventory(inv)
    beta, alpha = agent_client(inv, "beta"), agent_client(inv, "alpha")
    try:
        with connection_for(inv).client() as bus, bus.listen(live_filters(inv.manager), state.observe):
            _raw(beta, contract.topic("beta", "status"), contract.make_state("beta", "online", instance=BETA))
            _raw(beta, contract.topic("beta", "heartbeat"), contract.make_heartbeat("beta", True, 1.0, instance=BETA))
            deadline = time.monotonic() + 5
            while state.facts("beta").beat is None:
                assert time.monotonic() < deadline, "beta's own heartbeat never arrived"
                time.sleep(0.02)
            before = state.facts("beta")
            for topic, body in _forgeries(inv):
                _raw(alpha, topic, body)
            deadline = time.monotonic() + 5        # the last forgery is alpha's own, and valid
            while state.facts("alpha").beat is None:
                assert time.monotonic() < deadline, "alpha's forgeries never arrived"
                time.sleep(0.02)
            time.sleep(0.3)
            after = state.facts("beta")
            book = read_intent(inv)
            assert (after.online, after.instance, after.beat, after.alerts, after.last_alert,
                    after.invalid, list(after.births)) == \
                (before.online, before.instance, before.beat, before.alerts, before.last_alert,
                 before.invalid, list(before.births)), "alpha changed beta's facts"
            assert state.judge("beta", book).verdict is Verdict.ONLINE
            assert state.manager_alerts == [], "an agent wrote a heal action"
            assert state.facts("beta").duelling(time.time()) == ()
            judged = state.judge("alpha", book)
            assert judged.verdict is Verdict.STALE and "future" in judged.reason, judged
            assert state.facts("alpha").invalid >= 3       # the payloads naming beta
    finally:
        for client in (alpha, beta):
            for kind in ("status", "heartbeat", "alert"):
                name = "alpha" if client is alpha else "beta"
                client.publish(contract.topic(name, kind), b"", qos=1, retain=True).wait_for_publish(5)
            client.disconnect()
            client.loop_stop()
