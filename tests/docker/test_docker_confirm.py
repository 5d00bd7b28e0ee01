"""fleet.heal's confirmation against the real engine: a forged offline for a running container
(published with the agent's own password) is a telemetry-mismatch, never a restart; the
engine's word and a health-check bound to the container's instance decide."""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
from conftest import wait_for
from dockerhelpers import LOOPBACK, client, one_sleeping_agent  # noqa: F401 (fixture)

from agent_kit import bus as kit_bus
from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.inventory.model import DOCKER, Inventory
from hatchery.operate import heal
from hatchery.operate.confirm import ALIVE, confirm
from hatchery.provision.credentials import user_secret
from hatchery.runtime import for_runtime

pytestmark = pytest.mark.docker
rt = for_runtime(DOCKER)


@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):  # noqa: F811 (fixture)
    yield from one_sleeping_agent(tmp_path_factory.mktemp("confirm"), f"htc-{secrets.token_hex(3)}-")


def _forge_offline(inv: Inventory, name: str) -> None:
    """A raw paho client logged in as the agent (its password is all it has) plants a retained offline."""
    payload = contract.encode(contract.make_state(name, contract.STATE_OFFLINE))
    with kit_bus.session(LOOPBACK, inv.broker.port, 5.0, username=name, password=user_secret(inv, name)) as c:
        kit_bus.publish_and_wait(c, contract.topic(name, "status"), payload, qos=1, retain=True, timeout=5.0)


def test_a_forged_offline_for_a_running_container_is_a_mismatch_not_a_restart(fleet):
    inv, agent = fleet
    with bus_for(inv) as bus:
        assert wait_for(lambda: confirm(inv, bus, [agent.name], hung_after=1.0)[agent.name].finding == ALIVE,
                        60, step=0.1)
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
                assert wait_for(lambda: any(a["code"] == "telemetry-mismatch" for a in alerts), 15, step=0.1)
                time.sleep(2.0)
            finally:
                stop.set()
                supervisor.join(15)
    [mismatch] = [a for a in alerts if a["code"] == "telemetry-mismatch"][:1]
    assert mismatch["agent"] == agent.name and mismatch["reason"] == "offline"
    assert [a.action for a in actions if a.action != heal.MISMATCH] == []
    after = rt.agent_state(inv, agent)
    assert after.running and (after.started_at, after.instance) == (state.started_at, state.instance)
