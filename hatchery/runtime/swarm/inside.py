"""Inside an agent's task: run a command in its container (on whichever node runs it), and
the checks fleet.verify runs there."""

from __future__ import annotations

from hatchery.errors import DockerError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.docker.engine import docker_errors, engine
from hatchery.runtime.docker.inside import checks_inside, exec_with_timeout
from hatchery.runtime.swarm.states import agent_state

TASK_LABEL = "com.docker.swarm.task.id"


def task_container(inv: Inventory, agent: AgentSpec):
    """(the running task's container, its host): found on the node Swarm runs it on."""
    state = agent_state(inv, agent)
    if not state.running or state.node not in inv.hosts:
        raise DockerError(f"agent {agent.name} has no running task ({state.status})",
                          f"see: invoke agent.list --name {agent.name}; hatch it: invoke agent.hatch --name {agent.name}")
    client = engine(inv.hosts[state.node].docker_host)
    with docker_errors(f"find task {state.instance} on {state.node}"):
        found = client.containers.list(filters={"label": f"{TASK_LABEL}={state.instance}"})
    if not found:
        raise DockerError(f"agent {agent.name}: task {state.instance} has no container on {state.node}",
                          "it is being replaced; run the task again in a few seconds")
    return found[0], state.node


def exec_in_agent(inv: Inventory, agent: AgentSpec, argv: list, timeout: float) -> tuple:
    """Run ``argv`` in the agent's task container, killed after ``timeout`` seconds: (exit code, output)."""
    container, node = task_container(inv, agent)
    return exec_with_timeout(container, argv, timeout, f"exec in {container.name} on {node}")


def verify_in_agent(inv: Inventory, agent: AgentSpec, timeout: float = 5.0) -> list:
    """Inside the task: the broker's name resolves on the overlay; with the agent's own
    credentials the broker takes its verify topic and refuses another (agent_kit.selftest)."""
    where = agent_state(inv, agent).node or "?"
    return checks_inside(lambda argv, seconds: exec_in_agent(inv, agent, argv, seconds),
                         inv.broker.dns_name, timeout, f"agent {agent.name} on {where}", "in its task")
