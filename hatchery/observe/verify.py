"""invoke verify: the checks to run after every change.

Broker reachable; a pub/sub round trip and its latency; a retained message
stored and read back by a fresh client; the broker's DNS name; each agent
answers a health-check. Docker agents are also checked from inside their
containers, and what the bus says about them is checked against the Docker
API (threat 3: bus data is advisory). Every check is collected, none stops
the others.
"""

from __future__ import annotations

import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from hatchery.bus.client import BusClient
from hatchery.bus.commands import run_command
from hatchery.bus.connection import bus_for, connection_target
from hatchery.core.checks import Check, VerifyReport, ms_since, timed
from hatchery.core.hosts import MAX_THREADS
from hatchery.errors import HatcheryError
from hatchery.inventory.model import Inventory
from hatchery.inventory.placement import by_host
from hatchery.observe.crosscheck import CONSISTENT, bus_and_docker, docker_agents
from hatchery.provision.dns import dns_checks
from hatchery.runtime import for_runtime

VERIFY_PREFIX = "hatchery/verify"


def verify(inv: Inventory, *, timeout: float = 5.0, on_check=None) -> VerifyReport:
    report = VerifyReport()

    def add(check: Check) -> Check:
        report.checks.append(check)
        if on_check:
            on_check(check)
        return check

    host, port, _ = connection_target(inv)     # the TLS listener when broker.tls
    reach = add(timed(f"broker reachable at {host}:{port}", lambda: _tcp(host, port, timeout)))
    if not reach.ok:
        return report
    if inv.broker.tls:   # bus_for prefers the local control socket: try TLS on its own
        add(timed(f"TLS listener {host}:{inv.broker.tls_port} verified against the fleet CA",
                  lambda: _tls_login(inv, timeout)))
    with bus_for(inv, connect_timeout=timeout) as bus:
        add(_round_trip(bus, timeout))
        add(timed("retained message stored and read back by a fresh client",
                  lambda: _retained(inv, bus, timeout)))
        for check in dns_checks(inv):
            add(check)
        for check in _agent_checks(inv, bus, timeout):
            add(check)
        for check in _crosscheck_checks(inv, bus, timeout):
            add(check)
    for check in _container_checks(inv, timeout):
        add(check)
    return report


def _tls_login(inv: Inventory, timeout: float) -> str:
    with bus_for(inv, connect_timeout=timeout, control=False) as bus:
        if bus.port != inv.broker.tls_port:
            raise HatcheryError(f"connected to {bus.address}, not the TLS listener")
        return "certificate and name checked; logged in"


def _tcp(host: str, port: int, timeout: float) -> str:
    socket.create_connection((host, port), timeout).close()
    return "TCP connect ok"


def _round_trip(bus: BusClient, timeout: float) -> Check:
    started = time.perf_counter()
    try:
        samples = sorted(bus.ping(timeout=timeout) for _ in range(20))
    except (HatcheryError, TimeoutError) as exc:
        return Check("pub/sub round trip", False, str(exc), ms_since(started))
    median = samples[len(samples) // 2]
    return Check("pub/sub round trip (QoS 1, median of 20)", True, f"{median:.2f} ms", median)


def _retained(inv: Inventory, bus: BusClient, timeout: float) -> str:
    topic = f"{VERIFY_PREFIX}/{secrets.token_hex(6)}"
    payload = secrets.token_hex(8).encode()
    bus.publish(topic, payload, qos=1, retain=True, timeout=timeout)
    try:
        with bus_for(inv, connect_timeout=timeout) as fresh:
            got = fresh.retained([topic], timeout=timeout).get(topic)
    finally:
        bus.publish(topic, b"", qos=1, retain=True, timeout=timeout)  # clear it
    if got != payload:
        raise HatcheryError(f"retained message on {topic} not read back (got {got!r})",
                            "check 'persistence' and retain settings in mosquitto.conf")
    return "stored, read back, cleared"


def _agent_checks(inv: Inventory, bus: BusClient, timeout: float) -> list:
    if not inv.agents:
        return [Check("agents answer a health-check", True, "no agents in the inventory")]
    started = time.perf_counter()
    result = run_command(inv, "health-check", timeout=timeout, bus=bus)
    checks = []
    for reply in result.replies:
        ok = reply.state == "answered"
        detail = f"answered in {reply.rtt_ms:.2f} ms" if ok else reply.state
        checks.append(Check(f"agent {reply.agent} answers a health-check", ok, detail,
                            reply.rtt_ms if ok else ms_since(started)))
    return checks


def _crosscheck_checks(inv: Inventory, bus: BusClient, timeout: float) -> list:
    """Docker agents: the bus (just refreshed by the health-checks) agrees with Docker."""
    if not docker_agents(inv):
        return []
    started = time.perf_counter()
    try:
        _, report = bus_and_docker(inv, bus, timeout=timeout)
    except (HatcheryError, TimeoutError) as exc:
        return [Check("docker agents: the bus agrees with the Docker API", False,
                      str(exc).splitlines()[0], ms_since(started))]
    return [Check(f"agent {c.agent}: the bus agrees with the Docker API ({c.docker})",
                  c.verdict == CONSISTENT, c.reason, ms_since(started)) for c in report.agents]


def _container_checks(inv: Inventory, timeout: float) -> list:
    """What each runtime checks from where its agents run (inside docker containers):
    one thread per host; a host that cannot be reached is one failed check naming it."""
    groups = by_host(inv, list(inv.agents.values()))
    if not groups:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(groups))) as pool:
        futures = [pool.submit(_host_checks, inv, host, agents, timeout) for host, agents in groups.items()]
    return [check for future in futures for check in future.result()]


def _host_checks(inv: Inventory, host: str, agents: list, timeout: float) -> list:
    checks = []
    for agent in agents:
        started = time.perf_counter()
        try:
            found = for_runtime(agent.runtime).verify_in_agent(inv, agent, timeout=timeout)
        except HatcheryError as exc:    # the host's engine or sshd is down
            return checks + [Check(f"host {host}: reach its agents ({', '.join(a.name for a in agents)})",
                                   False, str(exc).splitlines()[0], ms_since(started))]
        where = f" on {host}" if inv.hosts else ""
        checks += [Check(c.name.replace(f"agent {agent.name}:", f"agent {agent.name}{where}:", 1),
                         c.ok, c.detail, c.ms) for c in found]
    return checks
