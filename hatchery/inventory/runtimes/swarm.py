"""The Swarm runtime's inventory keys: its swarm: section, placement, images and names.

An agent on swarm is placed by Swarm within its ``placement``, never pinned to one
engine with ``host:`` (refused, with the constraint to write instead). The checks
and the section's reader are in ``inventory/swarm.py``.
"""

from __future__ import annotations

from hatchery.inventory.fields import text
from hatchery.inventory.runtimes.declaration import RuntimeKeys
from hatchery.inventory.runtimes.docker import CONTAINER_NAMES, IMAGE_AGENT_KEYS
from hatchery.inventory.swarm import (
    PIN_FIX,
    SECTION,
    check_agent,
    check_broker,
    placement,
    read_swarm,
)

DECLARATION = RuntimeKeys(
    name="swarm",
    implementation="hatchery.runtime.swarm.runtime:SwarmRuntime",
    agent_keys={
        **IMAGE_AGENT_KEYS,
        "placement": placement,                 # where Swarm may run it
    },
    broker_keys={"image": text, **CONTAINER_NAMES, "placement": placement},
    cluster="swarm",
    pin_fix=PIN_FIX,
    sections={SECTION: read_swarm},
    check_agent=check_agent,
    check_broker=check_broker,
)
