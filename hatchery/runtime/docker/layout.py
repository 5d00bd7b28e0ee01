"""Where the broker and each handler find things inside their containers.

The official Mosquitto image's layout for the broker; for an agent, its config
directory and credentials mounted read-only, and the broker reached by its
network alias on the same engine, or by the broker host's address (mapped to
the alias in /etc/hosts) from another engine. ``configs`` renders from these
``BrokerLayout``/``AgentLayout`` values without knowing they are Docker's.
"""

from __future__ import annotations

import ipaddress

from hatchery.configs.agent import broker_address
from hatchery.configs.broker import TLS_FILE_NAMES
from hatchery.configs.layout import CREDENTIAL_FILES, AgentLayout, BrokerLayout
from hatchery.inventory.model import AgentSpec, Inventory

# Paths inside the broker container (the official image's layout).
CONTAINER_CONF_DIR = "/mosquitto/config"
CONTAINER_DATA_DIR = "/mosquitto/data"
CONTAINER_PORT = 1883
CONTAINER_TLS_PORT = 8883
CONTAINER_TLS_DIR = f"{CONTAINER_CONF_DIR}/tls"
# Docker agents: the secrets directory is mounted read-only here at run time ...
CONTAINER_SECRETS_DIR = "/run/secrets/hatchery"
# ... and the config directory here, the fleet CA beside the config.
AGENT_CONFIG_DIR = "/etc/hatchery"
CONTAINER_CA_FILE = f"{AGENT_CONFIG_DIR}/ca.crt"


def broker_layout(inv: Inventory) -> BrokerLayout:
    """Inside the container both listeners take every interface; the published ports
    decide who can reach them (broker.broker_ports). No control socket: the state
    directory is not the container's."""
    tls = {key: f"{CONTAINER_TLS_DIR}/{name}" for key, name in TLS_FILE_NAMES.items()} if inv.broker.tls else {}
    return BrokerLayout(conf_dir=CONTAINER_CONF_DIR, data_dir=CONTAINER_DATA_DIR, log_file="",
                        port=CONTAINER_PORT, bind="", tls_port=CONTAINER_TLS_PORT, tls_bind="",
                        tls_files=tls, control_socket="", user="mosquitto")


def same_engine(inv: Inventory, agent: AgentSpec) -> bool:
    """True when the agent runs on the broker's engine (they share the fleet network)."""
    return (agent.docker_host or inv.broker.docker_host or None) == (inv.broker.docker_host or None)


def extra_hosts(inv: Inventory, agent: AgentSpec) -> dict:
    """An agent on another host resolves the broker's DNS name to its host's address."""
    if same_engine(inv, agent):
        return {}
    address = broker_address(inv)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {}       # a name: the agent connects to it directly
    return {inv.broker.dns_name: address}


def agent_layout(inv: Inventory, agent: AgentSpec) -> AgentLayout:
    """On the broker's engine: the network alias and the container's port. Elsewhere: the
    DNS name (mapped to the broker host's address) and the published port. With
    ``broker.tls`` docker agents always use TLS and verify against the fleet CA."""
    tls, hosts = inv.broker.tls, extra_hosts(inv, agent)
    if same_engine(inv, agent):
        host, port = inv.broker.dns_name, CONTAINER_TLS_PORT if tls else CONTAINER_PORT
    else:
        host = inv.broker.dns_name if hosts else broker_address(inv)
        port = inv.broker.tls_port if tls else inv.broker.port
    return AgentLayout(broker_host=host, broker_port=port, ca_file=CONTAINER_CA_FILE if tls else None,
                       credential_files={name: f"{CONTAINER_SECRETS_DIR}/{name}" for name in CREDENTIAL_FILES},
                       extra_hosts=hosts)
