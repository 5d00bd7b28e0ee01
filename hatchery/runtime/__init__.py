"""Runtimes: where the broker and the agents run.

Every runtime implements ``runtime.base.Runtime`` (broker_plan, broker_stop_plan,
broker_status, auth_sync_plan, reload_broker, agent_plan, agent_stop_plan,
agent_list, orphan_stop_plans, agent_logs, agent_provenance,
agent_restart_plan, agent_restore_plan, agent_state, agent_inspect, exec_in_agent, verify_in_agent,
write_build_files, host_resources, agent_usage, remove_fleet) and declares its capabilities (restarts_crashed,
builds_images, inspectable), so callers need not care which one runs: they read
the typed answers (``AgentState``, ``Provenance``) and the flags, never the name.
``for_runtime(name)`` returns the instance; nothing outside ``runtime/`` imports
a runtime's modules (the docker package's ``__init__`` is its public face for
Docker-only things such as the offline base images).
"""

from __future__ import annotations

from importlib import import_module

from hatchery.errors import UsageError
from hatchery.inventory.runtimes import DECLARED, RUNTIMES
from hatchery.runtime.base import Runtime

# Each runtime's class is named by its inventory declaration (inventory/runtimes/<name>.py,
# "module:Class"), its one registration; imported on first use, so a local fleet never
# loads the docker SDK.
_instances: dict = {}


def for_runtime(name: str) -> Runtime:
    """The runtime for an inventory's ``runtime:`` value."""
    if name not in DECLARED:
        raise UsageError(f"unknown runtime {name!r}", f"use one of: {', '.join(RUNTIMES)}")
    if name not in _instances:
        module, _, cls = DECLARED[name].implementation.partition(":")
        _instances[name] = getattr(import_module(module), cls)()
    return _instances[name]


__all__ = ["Runtime", "for_runtime"]
