"""Inventory files for the loader's tests: written from text, loaded or refused.

A plain module (not a conftest.py: see tests/docker/dockerhelpers.py).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hatchery.errors import InventoryError
from hatchery.inventory.load import load_inventory

# The quick start's inventory as shipped, as a realistic fixture. Not the checkout's own
# ./fleet_inventory.yaml: that one is the operator's to edit (the quick start runs it).
EXAMPLE = Path(__file__).parent / "data" / "example_inventory.yaml"


def write(folder: Path, text: str, name: str = "fleet_inventory.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path, **kwargs) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, env={}, **kwargs)
    return caught.value


PRECEDENCE = """\
    groups:
      first:
        agents: [own, grouped, roled]
        vars: {heartbeat_interval: 200, version_command: from-first-group}
      second:
        agents: [own, grouped]
        vars: {heartbeat_interval: 250}
      picks-role:
        agents: [via-group]
        vars: {role: custom}
    agents:
      own:
        role: custom
        heartbeat_interval: 300
      grouped:
        role: custom
      roled:
        role: custom
        heartbeat_interval: 400
      bare:
        role: custom
      via-group: {}
      plain: {}
"""
