"""Round 3: fleet.capacity's figures from a forged heartbeat (the exporter's capacity gauges).

An agent whose runtime cannot measure it (its handler is not running here)
is sized from its own heartbeat. The attacker holds that agent's password
and publishes, with raw paho on broker.deploy's broker, a retained heartbeat
claiming every CPU there is, or a negative memory. Fails if the forgery makes
the host "past its headroom" (fleet.capacity exits 1, HatcheryHostPastHeadroom
fires) or puts a number that cannot be into the plan.
"""

from __future__ import annotations

import json
import re

import pytest

from agent_kit import contract
from hatchery.bus.connection import connection_for
from hatchery.observe import capacity, resources
from hatchery.observe.capacitywatch import CapacityWatch
from tests.security.hostilefleet import agent_client, deployed_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    yield from deployed_fleet(tmp_path_factory.mktemp("capacity"), agents=("alpha",), interval=600)


def _forge(inv, payload: bytes) -> None:
    """Publish ``payload`` raw, retained, on alpha's heartbeat topic, with alpha's password."""
    client = agent_client(inv, "alpha")
    try:
        client.publish(contract.topic("alpha", "heartbeat"), payload, qos=1,
                       retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _beat(**numbers) -> bytes:
    """Raw JSON as an attacker writes it: the contract's envelope, the attacker's numbers."""
    beat = {"v": contract.SCHEMA_VERSION, "ts": contract.now_rfc3339(), "agent": "alpha",
            "ok": True, "uptime": 5.0, **numbers}
    return json.dumps(beat).encode()


def _plan(inv):
    with connection_for(inv).client() as bus:
        facts = resources.gather(inv, lambda: resources.heartbeats(inv, bus, 3.0))
    return facts, capacity.plan(facts.hosts, facts.usages, inv.capacity.headroom)


def test_a_heartbeat_claiming_every_cpu_does_not_put_its_host_past_headroom(fleet):
    inv = fleet
    _forge(inv, _beat(cpu=float(2 ** 53), mem_kb=2 ** 53))
    try:
        facts, forged = _plan(inv)
        assert any(u.agent == "alpha" for u in facts.usages), "the forged heartbeat was not read"
        clean = capacity.plan(facts.hosts, [], inv.capacity.headroom)
        for was, now in zip(clean.hosts, forged.hosts):
            assert now.past_headroom == was.past_headroom, now.warning
            assert now.cpu_free == was.cpu_free
            if now.mem_total_kb is not None:
                assert now.agents_mem_kb <= now.mem_total_kb
            if now.cpus is not None:
                assert now.agents_cpu <= now.cpus
    finally:
        _forge(inv, b"")


def test_a_heartbeat_with_negative_usage_is_refused(fleet):
    inv = fleet
    _forge(inv, _beat(cpu=-1e15, mem_kb=-(2 ** 53)))
    try:
        facts, forged = _plan(inv)
        assert not any(u.agent == "alpha" for u in facts.usages), facts.usages
        assert all(h.agents_mem_kb >= 0 and h.agents_cpu >= 0 for h in forged.hosts)
        assert forged.median.mem_kb is None or forged.median.mem_kb >= 0
    finally:
        _forge(inv, b"")


def test_the_exporters_capacity_gauges_carry_the_inventorys_hosts_only(fleet):
    """The forged heartbeat reaches the exporter's capacity gauges (CapacityWatch): their
    labels are the inventory's hosts, never a name or number the agent chose."""
    inv = fleet
    _forge(inv, _beat(cpu=float(2 ** 53), mem_kb=2 ** 53, version="evil-host"))
    try:
        with connection_for(inv).client() as bus:
            watch = CapacityWatch(inv, resources.heartbeats(inv, bus, 3.0))
            watch.refresh()
        text = watch.render().decode()
        labels = set(re.findall(r'host="([^"]*)"', text))
        assert labels == {"local"}, labels
        cpus = watch.plan.hosts[0].cpus
        assert f'hatchery_host_agents_cpu{{host="local"}} {float(cpus)}' in text or cpus is None
    finally:
        _forge(inv, b"")
