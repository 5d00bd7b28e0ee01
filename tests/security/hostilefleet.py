"""A throw-away fleet for the attacks: broker.deploy's own broker (auth, ACL) on a free port
with agents alpha and beta (or those named), their real handlers when asked, and raw paho
clients logged in as one of them."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt

from hatchery.bus.commands import run_command
from hatchery.core.plan import apply_plan
from hatchery.core.ports import free_port
from hatchery.inventory.load import load_inventory
from hatchery.provision.credentials import stored_secret
from hatchery.provision.operations import deploy_plan, hatch_plan, stop_broker_plan, stop_plan


def local_inventory(directory: Path, agents=("alpha", "beta"), *, interval: int | None = None,
                    state_dir: str | None = None, broker_lines=()) -> Path:
    """``directory``/fleet_inventory.yaml: manager zephyr, a local broker on 127.0.0.1:<free port>
    (``broker_lines``: more of its settings), ``agents`` with heartbeat ``interval`` (None: the
    default), state in ``state_dir`` (None: .hatchery beside it)."""
    agent = f"{{heartbeat_interval: {interval}}}" if interval else "{}"
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join([
        "fleet:", "  manager: zephyr", *([f"  state_dir: {state_dir}"] if state_dir else []),
        "broker:", "  runtime: local", "  host: 127.0.0.1", "  bind: 127.0.0.1",
        f"  port: {free_port()}", *broker_lines,
        "agents:", *[f"  {name}: {agent}" for name in agents]]) + "\n")
    return path


def deployed_fleet(directory: Path, *, hatch: bool = False, **inventory):
    """Yields the Inventory of a running broker (fixtures use it), with the agents' real handlers
    answering when ``hatch``; handlers and broker stopped afterwards. ``inventory``: what
    local_inventory takes."""
    inv = load_inventory(local_inventory(directory, **inventory))
    assert apply_plan("up", deploy_plan(inv)).ok
    if hatch:       # hatch plans only against a running broker
        assert apply_plan("up", hatch_plan(inv, list(inv.agents.values()))).ok
        for name in inv.agents:
            until_answers(inv, name)
    yield inv
    apply_plan("down", stop_plan(inv, list(inv.agents.values())) + stop_broker_plan(inv))


def until_answers(inv, name: str, within: float = 15.0) -> None:
    """Wait until ``name``'s handler answers a health-check (it subscribes once it has connected)."""
    deadline = time.monotonic() + within
    while run_command(inv, "health-check", names=[name], timeout=2).replies[0].state != "answered":
        assert time.monotonic() < deadline, f"{name} never answered"


def agent_client(inv, name: str) -> mqtt.Client:
    """A raw MQTT v5 client logged in with agent ``name``'s own password, its loop running."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{name}-{time.time_ns()}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(name, stored_secret(inv, name))
    client.connect(inv.broker.host, inv.broker.port, keepalive=30)
    client.loop_start()
    return client
