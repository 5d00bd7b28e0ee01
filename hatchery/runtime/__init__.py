"""Runtimes: where the broker and the agents run.

Each runtime module offers the same functions, so tasks need not care:
``broker_plan``, ``broker_stop_plan``, ``broker_status``, ``agent_plan``,
``agent_stop_plan``, ``agent_list``. ``for_runtime`` picks the module.
"""

from __future__ import annotations

from importlib import import_module

from hatchery.errors import UsageError
from hatchery.inventory.model import RUNTIMES


def for_runtime(name: str):
    """The runtime module for ``name`` ('local' or 'docker')."""
    if name not in RUNTIMES:
        raise UsageError(f"unknown runtime {name!r}", f"use one of: {', '.join(RUNTIMES)}")
    return import_module(f"{__name__}.{name}")
