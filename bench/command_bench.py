"""Command round trips through the real product: real mosquitto, real handlers.

    .venv/bin/python bench/command_bench.py [--agents 2,100] [--rounds 1000]

Deploys a broker and N agents with the local runtime from a throw-away
inventory (its own port and state directory), then measures with the
manager's BusClient:
  * single-agent round trip: one health-check to one agent, command out to
    reply in (p50, p99 over --rounds);
  * fleet command: the same command to every agent, time until every reply
    is in (p50, p99 over --fleet-rounds), one command per agent and one broadcast.
Prints a markdown table and writes JSON to --out.

    .venv/bin/python bench/command_bench.py --collect-cli 1,1000 [--cli-runs 5]

instead measures the WHOLE command: ``hatchery fleet.collect`` as a process,
against a simulated fleet (``bench/simfleet.py``) of each size on a fresh
broker; for each size the median over --cli-runs of the child's CPU time
(user + system) and wall time. The difference between the sizes is what a
bigger fleet costs the command: interpreter start-up, imports, inventory
loading, the broadcast and the output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from hatchery.bus.client import BusClient  # noqa: E402
from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.provision.operations import deploy_plan, hatch_plan  # noqa: E402
from hatchery.runtime import for_runtime  # noqa: E402


def write_inventory(workdir: Path, agents: int, port: int, auth: bool = True) -> Path:
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
             "  host: 127.0.0.1", "  bind: 127.0.0.1", f"  port: {port}",
             f"  auth: {'true' if auth else 'false'}", "agents:"]
    for i in range(agents):
        lines += [f"  bench-{i:04d}:", "    runtime: local", "    version_command: 'echo 1.0'"]
    path = workdir / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def percentile(samples: list, q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def up(inv) -> None:
    """What broker.deploy + agent.hatch do."""
    report = apply_plan("bench up", deploy_plan(inv))   # hatch plans only against a running broker
    if report.ok:
        report = apply_plan("bench up", hatch_plan(inv, list(inv.agents.values())))
    if not report.ok:
        raise SystemExit(f"bench: could not start the fleet: {[r.error for r in report.failed]}")


def down(inv) -> None:
    local = for_runtime("local")
    changes = [c for a in inv.agents.values() for c in local.agent_stop_plan(inv, a, remove=True)]
    apply_plan("bench down", changes + local.broker_stop_plan(inv))


def wait_all_online(bus: BusClient, names: list, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = bus.request(names, "health-check", timeout=2)
        if all(r.state == "answered" for r in replies):
            return
    raise SystemExit("bench: not every agent answered within 60 s")


def single_agent(bus: BusClient, name: str, rounds: int) -> dict:
    samples = []
    for _ in range(rounds):
        (reply,) = bus.request([name], "health-check", timeout=5)
        assert reply.state == "answered", reply
        samples.append(reply.rtt_ms)
    return {"p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99)}


def fleet_command(bus: BusClient, names: list, rounds: int, manager: str | None) -> dict:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        replies = bus.request(names, "health-check", timeout=10, broadcast_manager=manager)
        elapsed = (time.perf_counter() - started) * 1000
        assert all(r.state == "answered" for r in replies), [r for r in replies if r.state != "answered"]
        samples.append(elapsed)
    return {"p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99),
            "mean_ms": statistics.mean(samples)}


def run(agents: int, rounds: int, fleet_rounds: int, auth: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="hatchery-bench-") as tmp:
        inv = load_inventory(write_inventory(Path(tmp), agents, free_port(), auth), env={})
        started = time.perf_counter()
        up(inv)
        startup = time.perf_counter() - started
        try:
            names = list(inv.agents)
            with bus_for(inv) as bus:     # the manager's credentials and signing keys
                wait_all_online(bus, names)
                return {"agents": agents, "auth": auth, "startup_s": startup,
                        "single": single_agent(bus, names[0], rounds),
                        "per_agent_commands": fleet_command(bus, names, fleet_rounds, None),
                        "broadcast": fleet_command(bus, names, fleet_rounds, inv.manager)}
        finally:
            down(inv)


HATCHERY = Path(sys.executable).with_name("hatchery")


def cli_collect(count: int, runs: int) -> dict:
    """``hatchery fleet.collect`` over ``count`` simulated agents: median CPU and wall."""
    import subprocess

    import fleet_bench
    manager = "clibench"
    with tempfile.TemporaryDirectory(prefix="hatchery-clibench-") as tmp:
        work = Path(tmp)
        broker, port = fleet_bench.start_broker(work, count)
        try:
            sim, _ = fleet_bench.start_simfleet(port, count, manager)
            try:
                inventory = write_sim_inventory(work, count, port, manager)
                samples = [_child_cost([str(HATCHERY), "fleet.collect", "--inventory",
                                        str(inventory), "--json"], subprocess)
                           for _ in range(runs)]
            finally:
                sim.stdin.close()
                fleet_bench.stop(sim)
        finally:
            fleet_bench.stop(broker)
    return {"agents": count, "runs": runs, "ok_runs": sum(ok for ok, _, _ in samples),
            "cpu_ms_median": round(statistics.median(cpu for _, cpu, _ in samples), 1),
            "wall_ms_median": round(statistics.median(wall for _, _, wall in samples), 1)}


def _child_cost(argv: list, subprocess) -> tuple:
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=120)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1000
    return done.returncode == 0, cpu, wall


def write_sim_inventory(workdir: Path, agents: int, port: int, manager: str) -> Path:
    """The simulated fleet's agents (sim-0000...) as an inventory, auth off."""
    lines = ["fleet:", f"  manager: {manager}", f"  state_dir: {workdir / 'state'}",
             "broker:", "  runtime: local", "  host: 127.0.0.1", f"  port: {port}",
             "  auth: false", "agents:"]
    lines += [f"  sim-{i:04d}: {{runtime: local}}" for i in range(agents)]
    path = workdir / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def table(results: list) -> str:
    rows = ["| agents | auth | single-agent RTT p50 | p99 | command to all, every reply in: p50 | p99 | broadcast, every reply in: p50 | p99 |",
            "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, f, b = r["single"], r["per_agent_commands"], r["broadcast"]
        rows.append(f"| {r['agents']} | {'on' if r.get('auth', True) else 'off'} | {s['p50_ms']:.2f} ms | {s['p99_ms']:.2f} ms | "
                    f"{f['p50_ms']:.2f} ms | {f['p99_ms']:.2f} ms | {b['p50_ms']:.2f} ms | {b['p99_ms']:.2f} ms |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="2,100", help="comma-separated fleet sizes")
    parser.add_argument("--rounds", type=int, default=1000, help="single-agent round trips")
    parser.add_argument("--fleet-rounds", type=int, default=50, help="fleet-wide commands")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "command_bench.json"))
    parser.add_argument("--auth", choices=("on", "off", "both"), default="on",
                        help="credentials + ACL + signed commands (the default), off, or both to compare")
    parser.add_argument("--collect-cli", default=None,
                        help="comma-separated fleet sizes: measure the whole "
                             "`hatchery fleet.collect` process instead")
    parser.add_argument("--cli-runs", type=int, default=5)
    args = parser.parse_args()
    if args.collect_cli:
        rows = [cli_collect(int(n), args.cli_runs) for n in args.collect_cli.split(",")]
        print(json.dumps(rows, indent=1))
        if len(rows) > 1:
            print(f"extra CPU for {rows[-1]['agents']} agents over {rows[0]['agents']}: "
                  f"{rows[-1]['cpu_ms_median'] - rows[0]['cpu_ms_median']:.1f} ms")
        return
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.auth]
    results = [run(int(n), args.rounds, args.fleet_rounds, auth)
               for n in args.agents.split(",") for auth in modes]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
