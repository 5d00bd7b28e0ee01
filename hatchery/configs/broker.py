"""What the broker's mosquitto.conf should say, wherever it runs.

Paths and ports come from the broker's runtime as a ``configs.layout.BrokerLayout``
(``Runtime.broker_layout(inv)``): this module never asks which runtime it is.
"""

from __future__ import annotations

import getpass
import os
from pathlib import PurePath

from agent_kit import contract
from hatchery.configs.layout import BrokerLayout
from hatchery.core.paths import CONTROL_SOCKET, control_socket_dir, state_paths
from hatchery.core.render import render
from hatchery.errors import UsageError
from hatchery.inventory.model import Inventory

LOOPBACK = ("127.0.0.1", "localhost", "::1")

# Settings Mosquitto re-reads on SIGHUP; a change to anything else needs a restart.
RELOADABLE = {"password_file", "acl_file", "allow_anonymous", "log_type", "log_dest",
              "connection_messages", "log_timestamp_format", "autosave_interval"}


def auth_paths(inv: Inventory, layout: BrokerLayout) -> dict:
    """Where the broker reads its password and ACL files ({} with auth off)."""
    return layout.auth_paths() if inv.broker.auth else {}


# The TLS files by name, for a runtime that puts copies where its broker reads them.
TLS_FILE_NAMES = {"cafile": "ca.crt", "certfile": "server.crt", "keyfile": "server.key"}


def tls_source_files(inv: Inventory) -> dict:
    """Where the control side keeps the TLS files: the user's own, or generated in the state dir."""
    if not inv.broker.tls:
        return {}
    b = inv.broker
    supplied = {"cafile": b.tls_ca, "certfile": b.tls_cert, "keyfile": b.tls_key}
    if any(supplied.values()) and not all(supplied.values()):
        raise UsageError("broker.tls_ca, tls_cert and tls_key go together",
                         "give all three, or none to have hatchery generate a CA and certificate")
    if all(supplied.values()):
        return dict(supplied)
    return {key: str(path) for key, path in state_paths(inv).tls_files.items()}


def broker_endpoint(inv: Inventory) -> tuple:
    """(host, port) the control side connects to over the network: the TLS listener when enabled."""
    return inv.broker.host, inv.broker.tls_port if inv.broker.tls else inv.broker.port


def broker_candidates(inv: Inventory) -> list:
    """Where the control side may find that port: broker.host, then ``broker.alternates`` (a
    broker its runtime moves between nodes is published on the one that runs it)."""
    return list(dict.fromkeys([inv.broker.host, *inv.broker.alternates]))


def plain_bind(inv: Inventory) -> str:
    """Plain MQTT stays on loopback unless the bind is loopback already or the inventory allows it."""
    b = inv.broker
    return b.bind if b.bind in LOOPBACK or b.allow_plain else "127.0.0.1"


# Connection limits. Mosquitto 2.0.11 closes a TCP connection that does not send
# CONNECT only after ~90 s, so without a limit an anonymous process can hold every
# file descriptor and lock everyone out. Each public listener gets max_connections;
# the control side (manager, monitor, exporter, recorder) gets its own listener,
# a unix socket (control_socket) that nothing on the network can reach, with its
# own small limit. The broker's fd limit must exceed the sum plus ~32 (files,
# listeners): 1024, the usual default, fits the defaults.
PUBLIC_MAX_CONNECTIONS = 900
AGENT_MARGIN = 100        # connections beyond two per agent on a large fleet
CONTROL_MAX_CONNECTIONS = 64


def public_max_connections(inv: Inventory) -> int:
    """Per public listener: room for every agent twice (a reconnect overlaps the
    old session) and a margin, at least PUBLIC_MAX_CONNECTIONS in total."""
    wanted = max(PUBLIC_MAX_CONNECTIONS, 2 * len(inv.agents) + AGENT_MARGIN)
    return wanted // 2 if inv.broker.tls else wanted


# Per-client queue: room for a 10,000-message burst (measured: the default 1,000
# lost a real command among them), bounded in bytes per client.
MAX_QUEUED_MESSAGES = 20000
MAX_QUEUED_BYTES = 4 * 1024 * 1024

# What one login can park in the broker: no QoS 2 at all (an unreleased QoS 2
# PUBLISH was held, 20 per client id), and a session nobody resumes expires
# (Mosquitto 2.0 counts this in whole hours: "1h" is its shortest).
MAX_QOS = 1
SESSION_EXPIRATION = "1h"

# Persistence: save every AUTOSAVE_SECONDS (was 60). Saving on every change
# made a QoS 1 flood write the whole database once per message; every 5 s costs
# one write of the database per 5 s whatever the traffic (bench/persistence_bench.py).
AUTOSAVE_SECONDS = 5
SYS_INTERVAL = 2


def control_socket(inv: Inventory) -> str:
    """The control listener's unix socket as this machine sees it: in the state directory
    (broker/control/) when that path fits a socket, else in a short private directory named
    by a hash of the state directory (core.paths.control_socket_dir), never left out. A
    runtime whose broker sees this machine's files offers it (``BrokerLayout.control_socket``)."""
    paths = state_paths(inv)
    directory = control_socket_dir(paths.root, paths.broker_control_dir, os.geteuid())
    return str(PurePath(directory) / CONTROL_SOCKET)


def conf_context(inv: Inventory, layout: BrokerLayout, *, password_file: str = "", acl_file: str = "") -> dict:
    """Template variables for templates/mosquitto.conf.j2 (auth paths default from the layout)."""
    auth = auth_paths(inv, layout)
    return {"fleet_name": inv.path.parent.name, "manager": inv.manager,
            "max_connections": public_max_connections(inv),
            "control_socket": layout.control_socket,
            "control_max_connections": CONTROL_MAX_CONNECTIONS,
            "autosave_seconds": AUTOSAVE_SECONDS, "sys_interval": SYS_INTERVAL,
            "max_queued_messages": MAX_QUEUED_MESSAGES, "max_queued_bytes": MAX_QUEUED_BYTES,
            "max_qos": MAX_QOS, "session_expiration": SESSION_EXPIRATION,
            "contract_limit": contract.MAX_PAYLOAD_BYTES,
            "max_packet_size": inv.broker.max_packet_size,
            "password_file": password_file or auth.get("password_file", ""),
            "acl_file": acl_file or auth.get("acl_file", ""),
            "port": layout.port, "bind": layout.bind, "tls_port": layout.tls_port, "tls_bind": layout.tls_bind,
            "tls": layout.tls_files if inv.broker.tls else {},
            "data_dir": layout.data_dir, "log_file": layout.log_file, "user": layout.user}


def local_user() -> str:
    """The user a broker on this machine runs as: run as root, Mosquitto would drop to
    user 'mosquitto', who cannot write our state dir."""
    return "root" if os.geteuid() == 0 else getpass.getuser()


def render_conf(inv: Inventory, layout: BrokerLayout, **auth) -> str:
    """mosquitto.conf for ``inv``'s broker, laid out as its runtime runs it."""
    return render("mosquitto.conf.j2", conf_context(inv, layout, **auth), inventory=inv)


def settings(conf_text: str) -> dict:
    """Directive -> list of values, comments and blank lines skipped."""
    found: dict = {}
    for line in conf_text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found.setdefault(key, []).append(value.strip())
    return found


def reload_is_enough(current: str, wanted: str) -> bool:
    """True when only SIGHUP-reloadable settings differ between two configs."""
    before, after = settings(current), settings(wanted)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return changed <= RELOADABLE
