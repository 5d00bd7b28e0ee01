"""The fleet's overlay network: attachable, so the broker, the agents and a debugging
container can all join it; VXLAN between the nodes (4789/udp)."""

from __future__ import annotations

from hatchery.inventory.model import Inventory
from hatchery.runtime.docker.containers import fleet_labels
from hatchery.runtime.docker.engine import docker_errors


def ensure_overlay(client, inv: Inventory) -> str:
    """Create the overlay network ``broker.network`` unless it exists ('' when it does)."""
    name = inv.broker.network
    with docker_errors(f"create overlay network {name}"):
        found = [n for n in client.networks.list(names=[name]) if n.name == name]
        if found:
            if found[0].attrs.get("Driver") != "overlay":
                from hatchery.errors import DockerError
                raise DockerError(f"network {name} exists but is a {found[0].attrs.get('Driver')} network",
                                  "remove it (docker network rm), or set broker.network to another name")
            return ""
        client.networks.create(name, driver="overlay", attachable=True, labels=fleet_labels(inv, "network"))
    return f"overlay network {name} created"
