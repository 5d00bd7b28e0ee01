"""What this machine has and what the local handlers use of it (fleet.capacity).

The host: ``/proc/meminfo`` (MemTotal, MemAvailable), ``os.cpu_count()`` and
the 1-minute load average as the CPUs busy. Each agent: its handler processes
(found in the process table, as ``handlers`` finds them) with their resident
memory (``VmRSS``) and CPU, sampled twice ``SAMPLE_S`` apart for all handlers at
once. The parsers (``core.procfs``) take text, so they are tested on captured files.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from hatchery.inventory.placement import host_of
from hatchery.core.procfs import CLOCK_TICKS, cpu_ticks, parse_loadavg, parse_meminfo, rss_kb
from hatchery.core.procfs import read as _read
from hatchery.core.paths import state_paths
from hatchery.inventory.model import Inventory
from hatchery.runtime.base import AgentUsage, HostResources
from hatchery.runtime.local.handlers import handler_table

RUNTIME = "local"
SAMPLE_S = 0.5          # between the two readings of the handlers' CPU time


def _local_agents(inv: Inventory) -> list:
    return [a for a in inv.agents.values() if a.runtime == RUNTIME]


def host_resources(inv: Inventory) -> list:
    agents = _local_agents(inv)
    if not agents:
        return []
    total, available = parse_meminfo(_read("/proc/meminfo"))
    cpus = float(os.cpu_count() or 0) or None
    busy = parse_loadavg(_read("/proc/loadavg"))
    return [HostResources(host_of(inv, agents[0]), total, available, cpus,
                          source="/proc/meminfo, os.cpu_count(), /proc/loadavg", cpu_busy=busy,
                          problem="" if total else "no /proc/meminfo on this machine")]


def agent_usage(inv: Inventory) -> list:
    agents = {a.name: a for a in _local_agents(inv)}
    if not agents:
        return []
    table = {name: pids for name, pids in handler_table(state_paths(inv)).items() if name in agents}
    first = _ticks(table)
    started = time.monotonic()
    time.sleep(SAMPLE_S)
    second = _ticks(table)
    elapsed = time.monotonic() - started
    usages = []
    for name, pids in table.items():
        memory = [rss_kb(_read(f"/proc/{pid}/status")) for pid in pids]
        used = [second[p] - first[p] for p in pids if first.get(p) is not None and second.get(p) is not None]
        usages.append(AgentUsage(name, host_of(inv, agents[name]),
                                 sum(m for m in memory if m) or None,
                                 round(sum(used) / CLOCK_TICKS / elapsed, 3) if used else None,
                                 source="runtime: process RSS and CPU time"))
    return usages


def _ticks(table: dict) -> dict:
    return {pid: cpu_ticks(_read(f"/proc/{pid}/stat")) for pids in table.values() for pid in pids}

