"""Per-host work in parallel, like fabric's ThreadingGroup and GroupResult.

Each host's plan is made and applied in its own thread; a host that cannot be
reached (its engine or sshd down) becomes one failed item naming it, and the
other hosts go on. The report keeps one result per item and a summary per host.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

from hatchery.core.plan import (
    CHANGED,
    FAILED,
    OK,
    WOULD_CHANGE,
    ItemResult,
    Report,
    apply_plan,
)
from hatchery.errors import HatcheryError
from hatchery.inventory.model import DOCKER, LOCAL as LOCAL_RUNTIME, AgentSpec, Inventory

MAX_THREADS = 8         # hosts worked on at once; the engines do the heavy lifting
LOCAL = "local"


def host_of(inv: Inventory, agent: AgentSpec) -> str:
    """The name the agent's host goes by: its hosts: entry, its engine address, or 'local'."""
    if agent.host:
        return agent.host
    if agent.runtime != DOCKER:     # local: this machine; a cluster (swarm): the cluster itself
        return LOCAL if agent.runtime == LOCAL_RUNTIME else agent.runtime
    return engine_host(inv, agent.docker_host or inv.broker.docker_host)


def engine_host(inv: Inventory, engine: Optional[str]) -> str:
    """The name an engine address goes by: its hosts: entry, else the address, else 'local'."""
    declared = inv.host_by_engine(engine)
    return declared.name if declared else (engine or LOCAL)


def by_host(inv: Inventory, agents: list) -> dict:
    """{host: [agents]} in inventory order."""
    groups: dict = {}
    for agent in agents:
        groups.setdefault(host_of(inv, agent), []).append(agent)
    return groups


def apply_per_host(title: str, common: list, per_host: dict, *, check: bool = False,
                   on_result: Optional[Callable] = None, on_start: Optional[Callable] = None) -> Report:
    """Apply ``common`` first (in order), then each host's plan (``{host: () -> [Change]}``)
    in parallel. The report's ``hosts`` maps each host to its summary."""
    report = apply_plan(title, common, check=check, on_result=on_result, on_start=on_start)
    lock = threading.Lock()
    on_result, on_start = _serialised(on_result, lock), _serialised(on_start, lock)

    def one(host: str, plan: Callable) -> tuple:
        started = time.monotonic()
        try:
            changes = plan()
        except HatcheryError as exc:    # unreachable engine or sshd: this host only
            result = ItemResult(item=f"host {host}", status=FAILED, action="plan", error=str(exc))
            if on_result:
                on_result(result)
            return [result], time.monotonic() - started, str(exc).splitlines()[0]
        done = apply_plan(title, changes, check=check, on_result=on_result, on_start=on_start)
        return done.results, time.monotonic() - started, ""

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, len(per_host)))) as pool:
        futures = {host: pool.submit(one, host, plan) for host, plan in per_host.items()}
    for host, future in futures.items():
        results, seconds, error = future.result()
        report.results += results
        report.hosts[host] = host_summary(results, seconds, error)
    if set(report.hosts) <= {LOCAL}:
        report.hosts.clear()        # one machine: nothing to summarise per host
    return report


def host_summary(results: list, seconds: float, error: str = "") -> dict:
    counts = {status: sum(r.status == status for r in results) for status in (OK, CHANGED, WOULD_CHANGE, FAILED)}
    summary = {"ok": counts[OK], "changed": counts[CHANGED] + counts[WOULD_CHANGE],
               "failed": counts[FAILED], "seconds": round(seconds, 2)}
    if error:
        summary["error"] = error
    return summary


def _serialised(callback: Optional[Callable], lock: threading.Lock) -> Optional[Callable]:
    """Output callbacks from several threads, one at a time (whole lines, never interleaved)."""
    if callback is None:
        return None

    def call(arg):
        with lock:
            callback(arg)
    return call


def known_hosts(inv: Inventory) -> list:
    """Every host name an agent can be on: the hosts: entries, then engines and 'local' in use."""
    return list(dict.fromkeys([*inv.hosts, *(host_of(inv, a) for a in inv.agents.values())]))
