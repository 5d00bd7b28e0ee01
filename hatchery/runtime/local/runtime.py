"""LocalRuntime: the Runtime protocol over the modules of this package."""

from __future__ import annotations

from hatchery.core.paths import state_paths
from hatchery.inventory.model import Inventory
from hatchery.runtime.local.agents import (
    agent_inspect,
    agent_plan,
    agent_restart_plan,
    agent_restore_plan,
    agent_stop_plan,
    exec_in_agent,
    orphan_stop_plans,
    stop_handlers,
    verify_in_agent,
    write_build_files,
)
from hatchery.runtime.local.broker import (
    auth_sync_plan,
    broker_pid,
    broker_plan,
    broker_status,
    broker_stop_plan,
    reload_broker,
    stop_pid,
)
from hatchery.runtime.local.handlers import handler_table
from hatchery.runtime.local.layout import agent_layout, broker_layout
from hatchery.runtime.local.logs import agent_logs
from hatchery.runtime.local.states import agent_list, agent_provenance, agent_state
from hatchery.runtime.local.usage import agent_usage, host_resources


def remove_fleet(inv: Inventory) -> None:
    """Stop the broker and every handler running from the state directory (state kept)."""
    paths = state_paths(inv)
    for name, pids in sorted(handler_table(paths).items()):
        stop_handlers(paths, name, pids)
    pid = broker_pid(paths)
    if pid is not None:
        stop_pid(pid, paths.broker_pid)


class LocalRuntime:
    """The native mosquitto and agent handlers as background processes on this host."""

    name = "local"
    restarts_crashed = False    # a dead handler stays dead until fleet.heal (or agent.hatch) starts it
    builds_images = False       # handlers run from a copy of this checkout's agent_kit
    inspectable = False         # a process table has no health check; the pid is all it knows
    reschedules = False
    broker_layout = staticmethod(broker_layout)
    agent_layout = staticmethod(agent_layout)
    broker_plan = staticmethod(broker_plan)
    broker_stop_plan = staticmethod(broker_stop_plan)
    broker_status = staticmethod(broker_status)
    auth_sync_plan = staticmethod(auth_sync_plan)
    reload_broker = staticmethod(reload_broker)
    agent_plan = staticmethod(agent_plan)
    agent_stop_plan = staticmethod(agent_stop_plan)
    agent_list = staticmethod(agent_list)
    orphan_stop_plans = staticmethod(orphan_stop_plans)
    agent_logs = staticmethod(agent_logs)
    agent_provenance = staticmethod(agent_provenance)
    agent_restart_plan = staticmethod(agent_restart_plan)
    agent_restore_plan = staticmethod(agent_restore_plan)
    agent_state = staticmethod(agent_state)
    agent_inspect = staticmethod(agent_inspect)
    exec_in_agent = staticmethod(exec_in_agent)
    verify_in_agent = staticmethod(verify_in_agent)
    write_build_files = staticmethod(write_build_files)
    host_resources = staticmethod(host_resources)
    agent_usage = staticmethod(agent_usage)
    remove_fleet = staticmethod(remove_fleet)

