"""The broker's TLS material as a plan item: a fleet CA and a server certificate.

With ``broker.tls: true`` and no user-supplied files, the CA and the server
certificate (for ``broker.host`` and ``broker.dns_name``) are generated into
``<state>/tls/`` and renewed when ``tls.renewal_reason`` says so. The CA key
never leaves the state directory; clients only get ``ca.crt``.
"""

from __future__ import annotations

from pathlib import Path

from hatchery.configs.broker import tls_source_files
from hatchery.core.paths import state_paths
from hatchery.core.plan import Action, Change
from hatchery.inventory.model import Inventory


def tls_change(inv: Inventory) -> list:
    """[] with TLS off or user-supplied files; else one Change (none when current)."""
    b = inv.broker
    if not b.tls or (b.tls_ca and b.tls_cert and b.tls_key):
        return []
    from hatchery.security import tls  # cryptography: only when we make certificates
    paths = {k: Path(v) for k, v in tls_source_files(inv).items()}
    ca_key = Path(state_paths(inv).tls_ca_key)
    ca = tls.read_pair(paths["cafile"], ca_key)
    server = tls.read_pair(paths["certfile"], paths["keyfile"])
    hosts = _names(inv)
    why = "no fleet CA yet" if ca is None else tls.renewal_reason(server, ca, hosts[0], dns_names=hosts[1:])
    if not why:
        return [Change("broker TLS", Action.NONE, f"certificate for {', '.join(hosts)} is current")]

    def apply() -> str:
        fleet_ca = ca or tls.make_ca()
        if ca is None:
            tls.write_pair(fleet_ca, paths["cafile"], ca_key)
        pair = tls.make_server_cert(fleet_ca, hosts[0], dns_names=hosts[1:])
        tls.write_pair(pair, paths["certfile"], paths["keyfile"])
        return f"server certificate for {', '.join(hosts)} issued"
    return [Change("broker TLS", Action.UPDATE, why, apply=apply)]


def _names(inv: Inventory) -> list:
    """The SANs: where the manager connects, the DNS name, the broker host's address, and
    (swarm) every other node the broker may run on."""
    placed = inv.hosts.get(inv.broker.on_host) if inv.broker.on_host else None
    names = [inv.broker.host, inv.broker.dns_name, placed.address if placed else "", "localhost",
             *inv.broker.alternates]
    return list(dict.fromkeys(n for n in names if n))
