"""The exporter's capacity gauges: fleet.capacity's numbers, per host, for Prometheus.

Asking the runtimes costs a half-second sample and a call per engine, so it
is not done per scrape: ``CapacityWatch`` gathers on its own thread every
``EVERY`` seconds (with the exporter's fleet state for the heartbeats), and
each scrape reads the last plan. The rules (templates/prometheus/rules.yml.j2)
record the used shares and alert when ``predict_linear`` says a host runs
past its headroom within days at the current growth.

Labels are the hosts' names from the inventory (a hosts: entry, an engine
address, "local"): the operator's own, and as many as the fleet has hosts.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from hatchery.inventory.model import Inventory
from hatchery.observe import capacity, resources
from hatchery.observe.metrics_text import COUNTER, Family, render

EVERY = 60.0            # seconds between two gatherings


class CapacityWatch:
    """The last capacity plan as metric families, refreshed on a thread."""

    def __init__(self, inv: Inventory, state=None, every: float = EVERY):
        self.inv, self.state, self.every = inv, state, every
        self.plan: Optional[capacity.CapacityPlan] = None
        self.gathered_at: Optional[float] = None
        self.seconds = 0.0
        self.failures = 0
        self._lock = threading.Lock()

    def refresh(self) -> None:
        read_state = (lambda: self.state) if self.state is not None else None
        facts = resources.gather(self.inv, read_state)
        plan = capacity.plan(facts.hosts, facts.usages, self.inv.capacity.headroom)
        with self._lock:
            self.plan, self.gathered_at, self.seconds = plan, time.time(), facts.seconds

    def run(self, stop: threading.Event) -> None:
        """Gather now, then every ``every`` seconds until ``stop``; a failed round is
        counted and the last plan kept."""
        while True:
            try:
                self.refresh()
            except Exception:       # noqa: BLE001 - a thread must not die; the count says it failed
                self.failures += 1
            if stop.wait(self.every):
                return

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="capacity", daemon=True)
        thread.start()
        return thread

    def families(self) -> list:
        """``metrics_text.Family`` objects of the last plan (only the failure count before one)."""
        with self._lock:
            plan, at, seconds = self.plan, self.gathered_at, self.seconds
        failed = Family("hatchery_capacity_gather_failures",
                        "Capacity gatherings that failed (the last plan is kept)", kind=COUNTER)
        failed.add((), self.failures)
        if plan is None:
            return [failed]
        return [failed, *_host_families(plan), *_fleet_families(plan, at, seconds)]

    def render(self) -> bytes:
        """The families as exposition text, appended to the exporter's own."""
        return render(self.families())

    def collect(self):
        """prometheus_client's collector protocol: the same families, for a registry."""
        for family in self.families():
            yield family.to_prometheus()


def _gauge(name: str, doc: str, labels=("host",)) -> Family:
    return Family(name, doc, labels=labels)


HOST_GAUGES = (
    # (metric, help, value of a HostCapacity or None)
    ("hatchery_host_memory_total_bytes", "The host's memory",
     lambda h: None if h.mem_total_kb is None else h.mem_total_kb * 1024),
    ("hatchery_host_memory_available_bytes", "The host's available memory (MemAvailable)",
     lambda h: None if h.mem_available_kb is None else h.mem_available_kb * 1024),
    ("hatchery_host_cpus", "The host's CPUs", lambda h: h.cpus),
    ("hatchery_host_cpu_free", "CPUs not busy (the host's CPUs less its load or its agents' use)",
     lambda h: h.cpu_free),
    ("hatchery_host_agents", "Agents measured on the host", lambda h: h.agents),
    ("hatchery_host_agents_memory_bytes", "Memory the host's agents use",
     lambda h: h.agents_mem_kb * 1024),
    ("hatchery_host_agents_cpu", "CPUs the host's agents use", lambda h: h.agents_cpu),
    ("hatchery_host_agent_fits", "More agents of the fleet's median size that fit under the "
     "headroom (absent when unknown)", lambda h: h.fits),
    ("hatchery_host_past_headroom", "1 while the host has less free than the headroom keeps",
     lambda h: 1.0 if h.past_headroom else 0.0),
)


def _host_families(plan: capacity.CapacityPlan):
    for name, doc, value_of in HOST_GAUGES:
        family = _gauge(name, doc)
        for host in plan.hosts:
            value = value_of(host)
            if value is not None:
                family.add((host.host,), float(value))
        yield family


def _fleet_families(plan: capacity.CapacityPlan, at: float, seconds: float):
    values = {
        "hatchery_capacity_headroom_ratio": ("The share of each host kept free (capacity.headroom)",
                                             plan.headroom),
        "hatchery_capacity_median_agent_memory_bytes": (
            "The fleet's median agent's memory", None if plan.median.mem_kb is None else plan.median.mem_kb * 1024),
        "hatchery_capacity_median_agent_cpu": ("The fleet's median agent's CPU", plan.median.cpu),
        "hatchery_capacity_last_gather_timestamp_seconds": ("When the figures were gathered", at),
        "hatchery_capacity_gather_seconds": ("How long gathering took", seconds),
    }
    for name, (doc, value) in values.items():
        family = _gauge(name, doc, labels=())
        if value is not None:
            family.add((), float(value))
        yield family
