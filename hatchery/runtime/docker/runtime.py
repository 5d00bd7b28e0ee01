"""``DockerRuntime``: the runtime interface (``runtime.base.Runtime``) over the job modules."""

from __future__ import annotations

from hatchery.inventory.model import Inventory
from hatchery.runtime.docker import agents, broker, build, inside, layout, states, usage
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


class DockerRuntime:
    """The broker and each agent as containers on a local or remote engine."""

    name = "docker"
    restarts_crashed = True     # restart=unless-stopped: the engine restarts a crashed agent itself
    builds_images = True        # each agent runs from an image built from its context
    inspectable = True          # the engine reports health checks, start times and restart counts
    reschedules = False         # a container stays on its engine: a host down is heal's to report
    broker_layout = staticmethod(layout.broker_layout)
    agent_layout = staticmethod(layout.agent_layout)
    broker_plan = staticmethod(broker.broker_plan)
    broker_stop_plan = staticmethod(broker.broker_stop_plan)
    broker_status = staticmethod(broker.broker_status)
    auth_sync_plan = staticmethod(broker.auth_sync_plan)
    reload_broker = staticmethod(broker.reload_broker)
    agent_plan = staticmethod(agents.agent_plan)
    agent_stop_plan = staticmethod(agents.agent_stop_plan)
    agent_list = staticmethod(states.agent_list)
    orphan_stop_plans = staticmethod(agents.orphan_stop_plans)
    agent_logs = staticmethod(agents.agent_logs)
    agent_provenance = staticmethod(states.agent_provenance)
    agent_restart_plan = staticmethod(agents.agent_restart_plan)
    agent_restore_plan = staticmethod(agents.agent_restore_plan)
    agent_state = staticmethod(states.agent_state)
    agent_inspect = staticmethod(states.agent_inspect)
    exec_in_agent = staticmethod(inside.exec_in_agent)
    verify_in_agent = staticmethod(inside.verify_in_agent)
    write_build_files = staticmethod(build.write_build_files)
    host_resources = staticmethod(usage.host_resources)
    agent_usage = staticmethod(usage.agent_usage)
    remove_fleet = staticmethod(remove_fleet)
