"""A throw-away fleet for the round-3 attacks: broker.deploy's own broker (auth, ACL) on a
free port with agents alpha and beta, and raw paho clients logged in as one of them."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from hatchery.core.plan import apply_plan
from hatchery.core.ports import free_port
from hatchery.inventory.load import load_inventory
from hatchery.provision.credentials import stored_secret
from hatchery.provision.operations import deploy_plan, stop_broker_plan


def deployed_fleet(tmp_path_factory, label: str, *, interval: int, broker_lines=()):
    """Yields the Inventory of a running broker (module fixtures use it), stopped afterwards."""
    work = tmp_path_factory.mktemp(label)
    path = work / "fleet_inventory.yaml"
    path.write_text("\n".join([
        "fleet:", "  manager: zephyr", f"  state_dir: {work / 'state'}",
        "broker:", "  runtime: local", "  host: 127.0.0.1", "  bind: 127.0.0.1",
        f"  port: {free_port()}", *broker_lines, "agents:",
        f"  alpha: {{heartbeat_interval: {interval}}}", f"  beta: {{heartbeat_interval: {interval}}}"]) + "\n")
    inv = load_inventory(path)
    assert apply_plan("up", deploy_plan(inv)).ok
    yield inv
    apply_plan("down", stop_broker_plan(inv))


def agent_client(inv, name: str) -> mqtt.Client:
    """A raw MQTT v5 client logged in with agent ``name``'s own password, its loop running."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{name}-{time.time_ns()}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(name, stored_secret(inv, name))
    client.connect(inv.broker.host, inv.broker.port, keepalive=30)
    client.loop_start()
    return client
