"""Where the local broker and handlers find things: the state directory, on this machine."""

from __future__ import annotations

from hatchery.configs.broker import control_socket, local_user, plain_bind, tls_source_files
from hatchery.configs.layout import AgentLayout, BrokerLayout
from hatchery.core.paths import BROADCAST, PASSWORD, SIGNING_KEY, state_paths
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.provision import credentials


def broker_layout(inv: Inventory) -> BrokerLayout:
    """The broker reads the state directory itself: its files where the control side keeps
    them, plain MQTT on loopback unless allowed further, TLS on broker.bind."""
    paths, b = state_paths(inv), inv.broker
    return BrokerLayout(conf_dir=str(paths.broker_dir), data_dir=str(paths.broker_data),
                        log_file=str(paths.broker_log), port=b.port, bind=plain_bind(inv),
                        tls_port=b.tls_port, tls_bind=b.bind, tls_files=tls_source_files(inv),
                        control_socket=control_socket(inv), user=local_user())


def agent_layout(inv: Inventory, agent: AgentSpec) -> AgentLayout:
    """A handler on this machine connects to broker.host and its plain port, and reads its
    credentials in the state directory."""
    files = {PASSWORD: credentials.secret_path(inv, agent.name), SIGNING_KEY: credentials.key_path(inv, agent.name),
             BROADCAST: credentials.key_path(inv, credentials.BROADCAST_KEY)}
    return AgentLayout(broker_host=inv.broker.host, broker_port=inv.broker.port,
                       credential_files={name: str(path) for name, path in files.items()})
