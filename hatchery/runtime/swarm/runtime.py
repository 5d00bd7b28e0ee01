"""``SwarmRuntime``: the runtime interface (``runtime.base.Runtime``) over the job modules."""

from __future__ import annotations

from pathlib import Path

from hatchery.core.paths import state_paths
from hatchery.core.state import ensure_dir
from hatchery.inventory.model import Inventory
from hatchery.inventory.swarm import placement_of
from hatchery.runtime.docker import build
from hatchery.runtime.swarm import agents as agent_services
from hatchery.runtime.swarm import broker, inside, layout, lifecycle, nodes, states, usage


def write_build_files(inv: Inventory, agents: list) -> list:
    """Each agent's build context (Dockerfile included) under the state directory, for review."""
    written = []
    for agent in agents:
        directory = Path(state_paths(inv).build_dir(agent.name))
        ensure_dir(directory.parent)
        hosts = nodes.eligible(inv, placement_of(agent))
        base = build.base_image(inv, nodes.probe_client(hosts, agent.image), agent)
        build.agent_context(inv, agent, base).write(directory)
        written.append(directory / "Dockerfile")
    return written


class SwarmRuntime:
    """The broker and each agent as services of an existing Docker Swarm."""

    name = "swarm"
    restarts_crashed = True     # Swarm restarts a task on any exit ...
    reschedules = True          # ... and moves it off a lost node: fleet.heal leaves both to it
    builds_images = True
    inspectable = True
    broker_layout = staticmethod(layout.broker_layout)
    agent_layout = staticmethod(layout.agent_layout)
    broker_plan = staticmethod(broker.broker_plan)
    broker_stop_plan = staticmethod(broker.broker_stop_plan)
    broker_status = staticmethod(broker.broker_status)
    auth_sync_plan = staticmethod(broker.auth_sync_plan)
    reload_broker = staticmethod(broker.reload_broker)
    agent_plan = staticmethod(agent_services.agent_plan)
    agent_stop_plan = staticmethod(lifecycle.agent_stop_plan)
    agent_list = staticmethod(states.agent_list)
    orphan_stop_plans = staticmethod(lifecycle.orphan_stop_plans)
    agent_logs = staticmethod(lifecycle.agent_logs)
    agent_provenance = staticmethod(states.agent_provenance)
    agent_restart_plan = staticmethod(lifecycle.agent_restart_plan)
    agent_restore_plan = staticmethod(lifecycle.agent_restore_plan)
    agent_state = staticmethod(states.agent_state)
    agent_inspect = staticmethod(states.agent_inspect)
    exec_in_agent = staticmethod(inside.exec_in_agent)
    verify_in_agent = staticmethod(inside.verify_in_agent)
    write_build_files = staticmethod(write_build_files)
    host_resources = staticmethod(usage.host_resources)
    agent_usage = staticmethod(usage.agent_usage)
    remove_fleet = staticmethod(lifecycle.remove_fleet)
