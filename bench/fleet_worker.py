"""The manager's side of bench/fleet_bench.py, as a process of its own.

fleet_bench.py starts the broker and the simulated fleet once, then runs this
script once per code tree (the working tree, and with ``--baseline`` an old
ref from bench/coderefs.py, whose ``PYTHONPATH`` puts its ``hatchery`` first),
interleaved. It takes one JSON argument (the fleet: port, agents, manager,
auth, the broker's and the simulator's pids) and prints one JSON line of
figures. It uses only APIs both old and new code have, and says when a
measure does not exist in the code it runs (``standing_status``).

    python bench/fleet_worker.py '{"port": 1883, "count": 1000, ...}'
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import hatchery
from hatchery.bus import commands as fleet
from hatchery.bus.client import BusClient
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory
from hatchery.observe import health, monitor
from hatchery.provision.credentials import signing_keys, user_secret

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list) -> float:
    """User + system CPU of these processes so far (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])     # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def percentile(samples: list, pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(func) -> tuple:
    started = time.perf_counter()
    value = func()
    return value, (time.perf_counter() - started) * 1000


def timeout_for(count: int) -> float:
    """Generous: a round that times out measures the timeout, not the fleet."""
    return max(10.0, count / 250)


def inventory_for(spec: dict) -> Inventory:
    agents = {n: AgentSpec(n) for n in (f"sim-{i:04d}" for i in range(spec["count"]))}
    state_dir = Path(spec.get("state_dir") or "/nonexistent/.hatchery")
    return Inventory(state_dir.parent / "bench.yaml", manager=spec["manager"],
                     broker=BrokerSpec(host="127.0.0.1", port=spec["port"], auth=spec["auth"]),
                     agents=agents, state_dir=state_dir)


def open_bus(inv: Inventory, spec: dict) -> BusClient:
    protocol = 5 if spec["mqtt"] == "5" else 4           # paho's constants have these values
    client_id = f"{inv.manager}-bench-{secrets.token_hex(4)}"    # a fixed id can be kicked
    if not inv.broker.auth:
        return BusClient("127.0.0.1", inv.broker.port, client_id=client_id, protocol=protocol)
    return BusClient("127.0.0.1", inv.broker.port, client_id=client_id,
                     username=inv.manager, password=user_secret(inv, inv.manager),
                     signing_keys=signing_keys(inv) if spec["signed"] else None, protocol=protocol)


def broadcasts(inv: Inventory, collect, rounds: int, pids: dict, prefix: str) -> dict:
    """``rounds`` broadcasts with ``collect()``: all-in times and CPU µs per reply per process."""
    times, answered = [], []
    before = {who: cpu_seconds(p) for who, p in pids.items()}
    manager_before = time.process_time()
    for _ in range(rounds):
        result, ms = timed(collect)
        times.append(ms)
        answered.append(len(result.answered))
    replies = max(1, sum(answered))
    cpu = {who: (cpu_seconds(p) - before[who]) / replies * 1e6 for who, p in pids.items()}
    cpu["manager"] = (time.process_time() - manager_before) / replies * 1e6
    return {
        f"{prefix}_all_in_ms_p50": round(percentile(times, 50), 2),
        f"{prefix}_all_in_ms_p99": round(percentile(times, 99), 2),
        f"{prefix}_answered_min": min(answered),
        f"{prefix}_rounds_ms": [round(m, 1) for m in times],
        **{f"{prefix}_cpu_us_per_reply_{who}": round(us, 1) for who, us in cpu.items()},
    }


def standing(inv: Inventory, bus: BusClient, rounds: int, pids: dict, timeout: float) -> dict:
    """The same broadcasts inside a standing status subscription (long-running roles)."""
    if not hasattr(bus, "standing_status"):
        return {}                     # the code measured has no such thing
    with bus.standing_status(timeout=timeout):
        return broadcasts(inv, lambda: fleet.collect(inv, timeout=timeout, bus=bus), rounds, pids,
                          "standing")


def exporter(inv: Inventory, bus: BusClient) -> dict:
    """The exporter's work at this size: fold every retained message, then one scrape."""
    from hatchery.observe import exporter as module
    messages = bus.retained_messages(module.exporter_filters(inv.manager),
                                     timeout=timeout_for(len(inv.agents)))
    metrics = module.BusMetrics(inv)
    _, fold_ms = timed(lambda: [metrics.observe(m) for m in messages])
    scrape = scraper(module, metrics)
    scrape()                                  # a first scrape reads the intent file
    scrapes = [timed(scrape) for _ in range(3)]
    return {"exporter_fold_ms": round(fold_ms, 1), "exporter_messages": len(messages),
            "exporter_scrape_ms": round(statistics.median(ms for _, ms in scrapes), 1),
            "exporter_scrape_kb": round(len(scrapes[0][0]) / 1024)}


def scraper(module, metrics):
    """What one GET /metrics runs in the code measured: its own renderer when it has one."""
    if hasattr(metrics, "render"):
        return metrics.render
    from prometheus_client import generate_latest
    registry = module.registry_for(metrics)
    return lambda: generate_latest(registry)


def snapshot_filters() -> tuple:
    """What monitor.snapshot subscribes to, before and after the one fleet state."""
    try:
        from hatchery.observe.fleetstate import retained_filters
        return retained_filters()
    except ImportError:
        return monitor.SNAPSHOT_FILTERS


def measure(spec: dict) -> dict:
    inv = inventory_for(spec)
    pids = spec["pids"]
    timeout = timeout_for(len(inv.agents))
    with open_bus(inv, spec) as bus:
        collect = lambda: fleet.collect(inv, timeout=timeout, bus=bus)  # noqa: E731
        figures = broadcasts(inv, collect, spec["rounds"], pids, "broadcast")
        figures.update(standing(inv, bus, spec["rounds"], pids, timeout))
        snaps = [timed(lambda: monitor.snapshot(inv, bus, timeout=timeout))
                 for _ in range(spec["snapshot_rounds"])]
        filters = snapshot_filters()
        reads = [timed(lambda: bus.retained_messages(filters, timeout=timeout))
                 for _ in range(spec["snapshot_rounds"])]
        reports = [timed(lambda: health.bus_health(inv, bus, timeout=timeout))
                   for _ in range(spec["snapshot_rounds"])]
        figures.update(exporter(inv, bus))
        one = [next(iter(inv.agents))]
        rtts = [bus.request(one, "health-check", timeout=5.0)[0].rtt_ms
                for _ in range(spec["rtt_samples"])]
    # the fewest agents any snapshot saw: a marker that overtook retained messages shows here
    online = min(sum(row["state"] == "online" for row in snap.rows()) for snap, _ in snaps)
    answered = [r for r in rtts if r is not None]
    return {
        **figures,
        "snapshot_ms_median": round(statistics.median(ms for _, ms in snaps), 2),
        "snapshot_ms_max": round(max(ms for _, ms in snaps), 2),
        # the bus read alone (what the broker sends and the reader decodes); the rest
        # of a snapshot is folding the messages
        "snapshot_read_ms_median": round(statistics.median(ms for _, ms in reads), 2),
        "snapshot_read_messages": len(reads[0][0]),
        "snapshot_online": online,
        "bus_health_ms_median": round(statistics.median(ms for _, ms in reports), 2),
        # "healthy" before the one fleet state, "online" since (readers)
        "bus_health_online": min(sum(str(getattr(a.verdict, "value", a.verdict)) in ("healthy", "online")
                                     for a in report.agents) for report, _ in reports),
        "rtt_ms_p50": round(percentile(answered, 50), 3) if answered else None,
        "rtt_ms_p99": round(percentile(answered, 99), 3) if answered else None,
        "rtt_answered": len(answered),
        "code_path": str(Path(hatchery.__file__).parent.parent),
    }


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1]))), flush=True)
