"""An inventory from a test's text (a plain module shared by tests/hosts and tests/swarm)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from hatchery.inventory.load import load_inventory


def load_text(directory: Path, text: str):
    """``text`` (dedented) as ``directory``/fleet_inventory.yaml, loaded with an empty environment."""
    path = Path(directory) / "fleet_inventory.yaml"
    path.write_text(textwrap.dedent(text))
    return load_inventory(path, env={})
