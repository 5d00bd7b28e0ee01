"""Where the broker and each handler find things inside their Swarm tasks.

The broker's task has the Docker runtime's layout (the same image, the same paths;
its files arrive as Swarm secrets and configs instead of bind mounts). A handler
reaches the broker by its alias on the fleet's overlay network, over TLS with the
fleet CA beside its config, its credentials as secrets; with a short keepalive
and short reconnect waits, since a lost node sends no RST.
"""

from __future__ import annotations

from dataclasses import replace

from hatchery.configs.layout import CREDENTIAL_FILES, AgentLayout, BrokerLayout
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.docker.layout import (
    CONTAINER_CA_FILE,
    CONTAINER_PORT,
    CONTAINER_SECRETS_DIR,
    CONTAINER_TLS_PORT,
)
from hatchery.runtime.docker.layout import broker_layout as docker_broker_layout

# With the usual 60 s keepalive, 30 agents sat ~115 s on dead connections to a broker whose
# node was lost (measured); the broker drops a lost node's handlers (their Wills) after 1.5x too.
KEEPALIVE = 5
# A broker that moved is back in ~15 s; a handler that had doubled its wait to 30 s by then
# answered up to 30 s late, and at 5 s up to 5 s late (2.5 s on average); 30 handlers
# trying every 2 s while it is away is 15 connect attempts a second, nothing for a broker.
RECONNECT_MAX = 2


def broker_layout(inv: Inventory) -> BrokerLayout:
    """The Docker runtime's, without the control socket: the task runs on whichever node
    Swarm picks, where no directory of this machine is mounted (a unix listener in a
    directory the task lacks ends mosquitto at start: "Error binding unix socket")."""
    return replace(docker_broker_layout(inv), control_socket="")


def agent_layout(inv: Inventory, agent: AgentSpec) -> AgentLayout:
    tls = inv.broker.tls
    return AgentLayout(broker_host=inv.broker.dns_name, broker_port=CONTAINER_TLS_PORT if tls else CONTAINER_PORT,
                       ca_file=CONTAINER_CA_FILE if tls else None,
                       credential_files={name: f"{CONTAINER_SECRETS_DIR}/{name}" for name in CREDENTIAL_FILES},
                       keepalive=KEEPALIVE, reconnect_max=RECONNECT_MAX)
