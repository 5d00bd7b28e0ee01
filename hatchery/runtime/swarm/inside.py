"""Inside an agent's task: run a command in its container (on whichever node runs it), and
the checks fleet.verify runs there."""

from __future__ import annotations

import math

from hatchery.core.checks import timed
from hatchery.errors import DockerError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.docker.build import AGENT_CONFIG
from hatchery.runtime.docker.engine import docker_errors, engine
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
    # exec has no timeout of its own; coreutils' timeout exits 124 when it fires.
    wrapped = ["timeout", "-k", "1", str(max(1, math.ceil(timeout))), *argv]
    with docker_errors(f"exec in {container.name} on {node}"):
        code, output = container.exec_run(wrapped, demux=False)
    return code, (output or b"").decode(errors="replace")


def verify_in_agent(inv: Inventory, agent: AgentSpec, timeout: float = 5.0) -> list:
    """Inside the task: the broker's name resolves on the overlay; a retained round trip
    works with the agent's own credentials (agent_kit.selftest)."""
    host = inv.broker.dns_name

    def run(argv: list) -> str:
        code, out = exec_in_agent(inv, agent, argv, timeout + 2)
        if code != 0:
            raise DockerError(f"{' '.join(argv[:3])} exited {code}: {out.strip()[-200:]}")
        return out.strip()

    def round_trip() -> str:
        got = run(["python3", "-m", "agent_kit.selftest", "--config", AGENT_CONFIG, "--timeout", str(timeout)])
        if got != "ping":
            raise DockerError(f"read back {got[-80:]!r} instead of 'ping'")
        return "published a retained message as the agent and read it back"

    where = agent_state(inv, agent).node or "?"
    return [timed(f"agent {agent.name} on {where}: {host} resolves in its task",
                  lambda: run(["getent", "hosts", host])),
            timed(f"agent {agent.name} on {where}: retained round trip in its task (own credentials)",
                  round_trip)]
