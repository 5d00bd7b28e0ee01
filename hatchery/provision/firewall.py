"""broker.deploy's firewall file: per-address limits rendered for the operator to install.

hatchery never loads firewall rules into a host by itself: the file is written
to the state directory (``broker/broker.nft``) and the change says how to
install it. Nothing is written while the broker listens on loopback only.
"""

from __future__ import annotations

from pathlib import Path

from hatchery.configs.firewall import broker_host, exposed_ports, render_for
from hatchery.core.paths import state_paths
from hatchery.core.plan import Change, text_diff
from hatchery.core.state import read_text, write_if_changed
from hatchery.inventory.model import Inventory

ITEM = "broker firewall"


def firewall_change(inv: Inventory) -> list:
    """[] with a loopback-only broker; else the rendered file's Change (or 'none')."""
    text = render_for(inv)
    if not text:
        return []
    path = Path(state_paths(inv).broker_firewall)
    current = read_text(path)
    where = broker_host(inv)
    install = (f"install as root on the broker's host ({where}): nft -f {path.name}"
               f" (ports {', '.join(map(str, exposed_ports(inv)))})")
    if current == text:
        return [Change(ITEM, "none", f"{path.name} up to date; {install}")]
    return [Change(ITEM, "update" if current else "create", f"rendered, not applied; {install}",
                   text_diff(current, text, str(path)),
                   lambda: _write(path, text))]


def _write(path: Path, text: str) -> str:
    write_if_changed(path, text, mode=0o644)
    return f"wrote {path}"
