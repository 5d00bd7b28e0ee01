"""Inside an agent's container: run a command, and the checks fleet.verify runs there."""

from __future__ import annotations

import math

from hatchery.core.checks import timed
from hatchery.errors import DockerError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.docker.states import agent_client, agent_container
from hatchery.runtime.docker.build import AGENT_CONFIG
from hatchery.runtime.docker.engine import docker_errors, find_container


def exec_in_agent(inv: Inventory, agent: AgentSpec, argv: list, timeout: float) -> tuple:
    """Run ``argv`` inside the agent's container, killed after ``timeout`` seconds: (exit code, output)."""
    name = agent_container(inv, agent)
    container = find_container(agent_client(inv, agent), name)
    if container is None or container.status != "running":
        raise DockerError(f"agent {agent.name}'s container {name} is not running",
                          f"hatch it: invoke agent.hatch --name {agent.name}")
    return exec_with_timeout(container, argv, timeout, f"exec in {name}")


def exec_with_timeout(container, argv: list, timeout: float, doing: str) -> tuple:
    """Run ``argv`` in a running ``container`` (this runtime's, or a swarm task's), killed
    after ``timeout`` seconds: (exit code, output). ``doing`` names it in an error."""
    # exec has no timeout of its own; coreutils' timeout exits 124 when it fires.
    wrapped = ["timeout", "-k", "1", str(max(1, math.ceil(timeout))), *argv]
    with docker_errors(doing):
        code, output = container.exec_run(wrapped, demux=False)
    return code, (output or b"").decode(errors="replace")


def verify_in_agent(inv: Inventory, agent: AgentSpec, timeout: float = 5.0) -> list:
    """Inside the container: the broker name resolves; with the agent's own mounted
    credentials the broker takes its verify topic and refuses another (agent_kit.selftest)."""
    return checks_inside(lambda argv, seconds: exec_in_agent(inv, agent, argv, seconds),
                         inv.broker.dns_name, timeout, f"agent {agent.name}", "in the container")


def checks_inside(exec_in, host: str, timeout: float, who: str, where: str) -> list:
    """verify's two checks run by ``exec_in(argv, seconds) -> (code, output)`` inside an
    agent's container (this runtime's, or a task's on a swarm): ``host`` resolves there,
    and agent_kit.selftest with the agent's own credentials finds its ACL as it should."""
    def run(argv: list) -> str:
        code, out = exec_in(argv, timeout + 2)
        if code != 0:
            raise DockerError(f"{' '.join(argv[:3])} exited {code}: {out.strip()[-200:]}")
        return out.strip()

    def selftest() -> str:
        got = run(["python3", "-m", "agent_kit.selftest", "--config", AGENT_CONFIG,
                   "--timeout", str(timeout)])
        if got != "ping":
            raise DockerError(f"read back {got[-80:]!r} instead of 'ping'")
        return "the broker took its own verify topic and refused another (its ACL)"

    return [timed(f"{who}: {host} resolves {where}", lambda: run(["getent", "hosts", host])),
            timed(f"{who}: its ACL, checked {where} (own credentials)", selftest)]
