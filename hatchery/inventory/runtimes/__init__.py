"""The runtimes the inventory knows, each by its declaration (``RuntimeKeys``).

A runtime registers here with ONE line: its name in ``REGISTERED``, whose
declaration is the module ``hatchery/inventory/runtimes/<name>.py``
(``DECLARATION``). That declaration names its keys and their checks, its
placement traits and its ``Runtime`` class; ``hatchery.runtime.for_runtime``
reads the class from it, so nothing else lists the runtimes.
"""

from __future__ import annotations

from importlib import import_module
from typing import Optional

from hatchery.inventory.runtimes.declaration import Placing, RuntimeKeys

REGISTERED = ("local", "docker", "swarm")
DEFAULT_RUNTIME = REGISTERED[0]

DECLARED: dict = {name: import_module(f"{__name__}.{name}").DECLARATION for name in REGISTERED}
RUNTIMES = tuple(DECLARED)


def names() -> tuple:
    """The registered runtimes' names, as the loader accepts them now."""
    return tuple(DECLARED)


def declared(name: str) -> RuntimeKeys:
    """The declaration of runtime ``name`` (KeyError: the loader refuses unknown names first)."""
    return DECLARED[name]


def host_default() -> Optional[RuntimeKeys]:
    """The runtime an agent with host: and no runtime of its own runs in."""
    return next((d for d in DECLARED.values() if d.host_default), None)


def agent_keys() -> dict:
    """Every runtime-specific agent key -> its check (the first runtime's, for a shared key)."""
    return _union(d.agent_keys for d in DECLARED.values())


def broker_keys() -> dict:
    return _union(d.broker_keys for d in DECLARED.values())


def sections() -> dict:
    return _union(d.sections for d in DECLARED.values())


def takers(key: str, *, broker: bool = False) -> list:
    """The runtimes that take ``key`` (under an agent, or under broker:)."""
    return [d.name for d in DECLARED.values() if key in (d.broker_keys if broker else d.agent_keys)]


def _union(mappings) -> dict:
    merged: dict = {}
    for mapping in mappings:
        for key, check in mapping.items():
            merged.setdefault(key, check)
    return merged


__all__ = ["DECLARED", "DEFAULT_RUNTIME", "RUNTIMES", "Placing", "RuntimeKeys", "agent_keys",
           "broker_keys", "declared", "host_default", "names", "sections", "takers"]
