"""One connection value: what a client needs to reach the fleet's broker, built once.

``connection_for(inv, role=...)`` is the one place that turns the inventory
and the state directory into connection details: where the broker listens
(the TLS listener when ``broker.tls``, verified against the fleet CA), who to
log in as (the manager by default, or a control-side role such as
``monitor``, ``exporter`` or ``recorder``) with the secret that
``broker.deploy`` stored, and the keys that sign the manager's commands.
``Connection.client()`` makes an unconnected ``BusClient`` from it;
``bus_for`` does both, for callers that want a client at once.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import stat
from dataclasses import dataclass, field
from typing import Callable, Optional

from hatchery.bus import wire
from hatchery.bus.client import BusClient
from hatchery.configs.broker import (
    broker_candidates,
    broker_endpoint,
    control_socket,
    tls_source_files,
)
from hatchery.core.ports import first_listening
from hatchery.errors import BusError
from hatchery.inventory.model import Inventory
from hatchery.provision.credentials import signing_keys, stored_secret


@dataclass(frozen=True)
class Connection:
    """Where the broker is and who we are to it. Secrets stay out of ``repr``."""

    host: str
    port: int
    user: str                                   # the role; prefixes every client id
    username: Optional[str] = None              # None: connect without credentials
    password: Optional[str] = field(default=None, repr=False)
    tls: Optional[ssl.SSLContext] = None        # verifies the broker (the CA below)
    cafile: Optional[str] = None
    signing_keys: Optional[Callable] = field(default=None, repr=False)
    unix_socket: Optional[str] = None           # the broker's control listener, when local

    def client(self, connect_timeout: float = 5.0) -> BusClient:
        """An unconnected client (use it as a context manager), with a fresh client id."""
        # A fresh id per client: two clients of one role must not kick each other off.
        return BusClient(self.host, self.port, client_id=f"{self.user}-{secrets.token_hex(4)}",
                         username=self.username, password=self.password, tls=self.tls,
                         connect_timeout=connect_timeout, signing_keys=self.signing_keys,
                         protocol=protocol_for(self.user), unix_socket=self.unix_socket)


# Every control-side role speaks MQTT v5, so every reader sees what an agent can
# attach to a message besides its payload (user properties, content type, response
# topic, correlation data) and refuses it the same way (agent_kit.contract's
# ALLOWED_PROPERTIES): a 3.1.1 reader would be handed the payload with the
# properties stripped by the broker and take a leaky heartbeat as valid, so the
# monitor and the exporter would disagree with the manager about one agent. With
# the manager's own reader (bus.wire) v5 costs ~0.2 µs more per message than 3.1.1.
def protocol_for(user: str) -> int:
    """The MQTT protocol a control-side role connects with: v5 for every role (see above)."""
    return wire.MQTTv5


def connection_for(inv: Inventory, *, role: Optional[str] = None, username: Optional[str] = None,
                   password: Optional[str] = None, tls=None, control: bool = True) -> Connection:
    """The connection for ``role`` (default: the manager).

    With ``broker.auth`` it logs in with the role's stored secret, unless
    ``username``/``password`` are given; only the manager signs commands.
    With no stored secret (a broker this state directory did not deploy) it
    connects without credentials and lets the broker decide; a refusal names
    broker.deploy as the fix.
    """
    user = role or inv.manager
    secret = stored_secret(inv, user) if inv.broker.auth and username is None else None
    if secret:
        username, password = user, secret
    # The control listener (a unix socket; a TCP flood cannot fill it) when this
    # host runs the broker; it is local, so it needs no TLS.
    unix = control_target(inv) if tls is None and control else None
    host, port, context = (inv.broker.host, inv.broker.port, None) if unix \
        else connection_target(inv, tls)
    signer = signing_keys(inv) if inv.broker.auth and user == inv.manager else None
    cafile = tls_source_files(inv).get("cafile") if context is not None and tls is None else None
    return Connection(host, port, user, username, password, context, cafile, signer, unix)


def control_target(inv: Inventory) -> Optional[str]:
    """The broker's control socket (configs.broker.control_socket) if it exists here: only
    a broker whose runtime lays one out (Runtime.broker_layout) makes it."""
    path = control_socket(inv)
    try:
        usable = stat.S_ISSOCK(os.stat(path).st_mode) and os.access(path, os.R_OK | os.W_OK)
    except OSError:
        return None
    return path if usable else None


def connection_target(inv: Inventory, tls=None) -> tuple:
    """(host, port, tls) the control side connects to: the TLS listener when enabled."""
    if tls is None and inv.broker.tls:
        host, port = reachable_endpoint(inv)
        return host, port, _fleet_ca_context(tls_source_files(inv)["cafile"])
    return reachable_endpoint(inv, inv.broker.port)[0], inv.broker.port, tls


def reachable_endpoint(inv: Inventory, port: Optional[int] = None) -> tuple:
    """``broker_endpoint``, its host replaced by the first of ``broker_candidates`` that
    listens when broker.host does not (a broker that moves between nodes)."""
    host, wanted = broker_endpoint(inv)
    port = port or wanted
    if not inv.broker.alternates:
        return host, port
    return first_listening(broker_candidates(inv), port) or host, port


def _fleet_ca_context(cafile: str) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise BusError(f"cannot read the fleet CA {cafile}: {exc}",
                       "run: invoke broker.deploy (it makes the CA), or fix broker.tls_ca") from None


def bus_for(inv: Inventory, *, connect_timeout: float = 5.0, username: Optional[str] = None,
            password: Optional[str] = None, tls=None, role: Optional[str] = None,
            control: bool = True) -> BusClient:
    """An unconnected BusClient for the inventory's broker (use it as a context manager).
    ``control=False``: the network listener even when the control socket is there."""
    return connection_for(inv, role=role, username=username, password=password,
                          tls=tls, control=control).client(connect_timeout)


@contextlib.contextmanager
def open_bus(inv: Inventory, bus: Optional[BusClient] = None, *, connect_timeout: float = 5.0):
    """Use ``bus`` if given, else connect to the inventory's broker for the block."""
    if bus is not None:
        yield bus
        return
    with bus_for(inv, connect_timeout=connect_timeout) as fresh:
        yield fresh
