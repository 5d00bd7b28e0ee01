"""The inventory: the fleet described in one YAML file, validated into typed objects.

``model`` holds the typed objects; ``fields`` checks each value; ``parse``
turns YAML text into data (fast, or with line numbers); ``load`` reads and
validates a file (every problem with file:line and its fix); ``edit`` adds an
agent to the file keeping its comments; ``enrol`` plans that as a change.
"""

from hatchery.inventory.load import (
    DEFAULT_INVENTORY,
    INVENTORY_ENV,
    load_inventory,
    resolve_path,
)
from hatchery.inventory.model import (
    DOCKER,
    LOCAL,
    RUNTIMES,
    AgentSpec,
    BrokerSpec,
    Inventory,
    ReloadSpec,
)

__all__ = ["DEFAULT_INVENTORY", "DOCKER", "INVENTORY_ENV", "LOCAL", "RUNTIMES", "AgentSpec",
           "BrokerSpec", "Inventory", "ReloadSpec", "load_inventory", "resolve_path"]
