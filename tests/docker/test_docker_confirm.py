"""fleet.heal's confirmation against the real engine: a forged offline for a running container
(published with the agent's own password) is a telemetry-mismatch, never a restart; the
engine's word and a health-check bound to the container's instance decide."""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import replace

import pytest
from conftest import free_port
from dockerhelpers import LOOPBACK, client, remove_fleet, wait_mqtt  # noqa: F401 (fixture)

from agent_kit import bus as kit_bus
from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.core.plan import apply_plan
from hatchery.inventory.model import DOCKER, AgentSpec, BrokerSpec, Inventory
from hatchery.operate import heal
from hatchery.operate.confirm import ALIVE, confirm
from hatchery.provision.credentials import plan_auth, user_secret
from hatchery.provision.operations import auth_files, broker_conf, hatch_plan
from hatchery.runtime import for_runtime

pytestmark = pytest.mark.docker
rt = for_runtime(DOCKER)


@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):  # noqa: F811 (fixture)
    prefix = f"htc-{secrets.token_hex(3)}-"
    root = tmp_path_factory.mktemp("confirm")
    (root / "fleet_inventory.yaml").write_text("fleet:\n  manager: zephyr\n")
    broker = BrokerSpec(runtime=DOCKER, port=free_port(), image="hatchery/mosquitto:2.0.11",
                        network=f"{prefix}net", container=f"{prefix}broker", container_prefix=prefix)
    inv = Inventory(path=root / "fleet_inventory.yaml", broker=broker, state_dir=root / ".hatchery")
    agent = AgentSpec(f"{prefix}a", runtime=DOCKER, version_command="echo 1.0", main_command="sleep infinity")
    inv = replace(inv, agents={agent.name: agent})
    try:
        auth = plan_auth(inv)
        assert apply_plan("deploy", [auth.change(), *rt.broker_plan(
            inv, conf_text=broker_conf(inv), auth_files=auth_files(auth))]).ok
        wait_mqtt(inv)
        assert apply_plan("hatch", hatch_plan(inv, [agent])).ok
        yield inv, agent
    finally:
        remove_fleet(inv)


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _forge_offline(inv: Inventory, name: str) -> None:
    """A raw paho client logged in as the agent (its password is all it has) plants a retained offline."""
    payload = contract.encode(contract.make_state(name, contract.STATE_OFFLINE))
    with kit_bus.session(LOOPBACK, inv.broker.port, 5.0, username=name, password=user_secret(inv, name)) as c:
        kit_bus.publish_and_wait(c, contract.topic(name, "status"), payload, qos=1, retain=True, timeout=5.0)


def test_a_forged_offline_for_a_running_container_is_a_mismatch_not_a_restart(fleet):
    inv, agent = fleet
    with bus_for(inv) as bus:
        assert _wait(lambda: confirm(inv, bus, [agent.name], hung_after=1.0)[agent.name].finding == ALIVE, 60)
        state = rt.agent_state(inv, agent)
        assert state.instance and confirm(inv, bus, [agent.name], hung_after=2.0)[agent.name].instance \
            == state.instance
        alerts, actions, stop = [], [], threading.Event()
        with bus.listen([contract.topic(inv.manager, "alert")], lambda m: alerts.append(json.loads(m.payload))):
            supervisor = threading.Thread(target=heal.watch, args=(inv, bus, heal.Policy(budget=1)),
                                          kwargs={"stop": stop, "on_action": actions.append}, daemon=True)
            supervisor.start()
            try:
                time.sleep(1.0)
                _forge_offline(inv, agent.name)
                assert _wait(lambda: any(a["code"] == "telemetry-mismatch" for a in alerts), 15)
                time.sleep(2.0)
            finally:
                stop.set()
                supervisor.join(15)
    [mismatch] = [a for a in alerts if a["code"] == "telemetry-mismatch"][:1]
    assert mismatch["agent"] == agent.name and mismatch["reason"] == "offline"
    assert [a.action for a in actions if a.action != heal.MISMATCH] == []
    after = rt.agent_state(inv, agent)
    assert after.running and (after.started_at, after.instance) == (state.started_at, state.instance)
