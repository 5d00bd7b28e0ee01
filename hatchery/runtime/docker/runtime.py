"""``DockerRuntime``: the runtime interface (``runtime.base.Runtime``) over the job modules.

Every method that takes the inventory gets it with the names its fleet uses on
its engines (``names.resolved``): per fleet, recorded at its first deploy, or
kept from before names were per fleet.
"""

from __future__ import annotations

import functools

from hatchery.inventory.model import Inventory
from hatchery.runtime.docker import agents, broker, build, inside, layout, names, states, usage
from hatchery.runtime.docker.engine import FLEET, ROLE, docker_errors, engine


def remove_fleet(inv: Inventory) -> None:
    """Every container, network and volume labelled with this fleet on the engines the
    inventory names, and its agent images. The tests and benchmarks clean up with it."""
    label = f"{FLEET}={inv.broker.container}"
    hosts = {inv.broker.docker_host} | {states.agent_host(inv, a) for a in inv.agents.values()}
    for host in hosts:
        client = engine(host)
        with docker_errors(f"remove fleet {inv.broker.container}"):
            _remove_labelled(client, label, f"hatchery/agent-{inv.broker.container_prefix}")


def _remove_labelled(client, label: str, image_prefix: str) -> None:
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    for image in client.images.list(filters={"label": f"{ROLE}=agent-image"}):
        if any(t.startswith(image_prefix) for t in image.tags):
            client.images.remove(image.id, force=True)


def _named(function):
    """``function(inv, ...)`` handed the inventory with its fleet's names on the engine."""
    @functools.wraps(function)
    def call(inv, *args, **kwargs):
        return function(names.resolved(inv), *args, **kwargs)
    return staticmethod(call)


class DockerRuntime:
    """The broker and each agent as containers on a local or remote engine."""

    name = "docker"
    restarts_crashed = True     # restart=unless-stopped: the engine restarts a crashed agent itself
    builds_images = True        # each agent runs from an image built from its context
    inspectable = True          # the engine reports health checks, start times and restart counts
    reschedules = False         # a container stays on its engine: a host down is heal's to report
    broker_layout = staticmethod(layout.broker_layout)
    agent_layout = staticmethod(layout.agent_layout)
    broker_plan = _named(broker.broker_plan)
    broker_stop_plan = _named(broker.broker_stop_plan)
    broker_status = _named(broker.broker_status)
    auth_sync_plan = _named(broker.auth_sync_plan)
    reload_broker = _named(broker.reload_broker)
    agent_plan = _named(agents.agent_plan)
    agent_stop_plan = _named(agents.agent_stop_plan)
    agent_list = _named(states.agent_list)
    orphan_stop_plans = _named(agents.orphan_stop_plans)
    agent_logs = _named(agents.agent_logs)
    agent_provenance = _named(states.agent_provenance)
    agent_restart_plan = _named(agents.agent_restart_plan)
    agent_restore_plan = _named(agents.agent_restore_plan)
    agent_state = _named(states.agent_state)
    agent_inspect = _named(states.agent_inspect)
    exec_in_agent = _named(inside.exec_in_agent)
    verify_in_agent = _named(inside.verify_in_agent)
    write_build_files = _named(build.write_build_files)
    host_resources = _named(usage.host_resources)
    agent_usage = _named(usage.agent_usage)
    remove_fleet = _named(remove_fleet)
