"""Loading the inventory at fleet scale: in-process load time and whole-command CPU.

    .venv/bin/python bench/inventory_bench.py [--agents 1,1000,10000] [--runs 3] [--out FILE]

For each size it writes a throw-away inventory (a group with vars, and per
agent a runtime, a version command and an env mapping, as a real fleet has)
and measures:
  * load: ``load_inventory`` in this process, CPU seconds (best of --runs);
  * command: CPU of the whole ``hatchery agent.list --json`` process, user +
    system (median of --runs), i.e. start-up + load + listing + JSON;
  * extra over the first (smallest) inventory, for both: for the command, the
    median of the differences within each round of back-to-back runs.
Prints a markdown table and writes JSON to --out. Nothing is started: the
agents are only listed, so the state directory stays empty.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hatchery.inventory.load import load_inventory  # noqa: E402


def write_inventory(folder: Path, agents: int) -> Path:
    names = [f"agent-{i:05d}" for i in range(agents)]
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local", "  port: 1883",
             "groups:", "  evens:", f"    agents: [{', '.join(names[::2])}]",
             "    vars: {heartbeat_interval: 300}", "agents:"]
    for name in names:
        lines += [f"  {name}:", "    runtime: local", "    version_command: 'echo 1.0'",
                  "    env: {MODE: calm}"]
    path = folder / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_cpu(path: Path, runs: int) -> float:
    """Best CPU seconds of ``load_inventory`` over ``runs``."""
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        inv = load_inventory(path, env={})
        best = min(best, time.process_time() - started)
    assert inv.agents, "the bench inventory must load"
    return best


def command_cpu(path: Path) -> float:
    """CPU seconds (user + system) of one ``hatchery agent.list --json`` process."""
    hatchery = Path(sys.executable).with_name("hatchery")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([str(hatchery), "agent.list", "--json", "--inventory", str(path)],
                          capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: agent.list failed: {done.stderr.strip()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(sizes: list, runs: int) -> list:
    """Rows per size. The commands run in rounds, every size once per round, so
    that each size's extra is the median of differences taken back to back
    (start-up CPU drifts by tens of ms on a shared machine)."""
    with tempfile.TemporaryDirectory(prefix="hatchery-inventory-bench-") as tmp:
        paths = []
        for size in sizes:
            folder = Path(tmp) / f"n{size}"
            folder.mkdir()
            paths.append(write_inventory(folder, size))
        loads = [load_cpu(path, runs) for path in paths]
        rounds = [[command_cpu(path) for path in paths] for _ in range(runs)]
        rows = []
        for i, (size, path) in enumerate(zip(sizes, paths)):
            rows.append({
                "agents": size, "bytes": path.stat().st_size, "runs": runs,
                "load_ms": loads[i] * 1000, "load_extra_ms": (loads[i] - loads[0]) * 1000,
                "command_cpu_ms": statistics.median(r[i] for r in rounds) * 1000,
                "command_extra_ms": statistics.median(r[i] - r[0] for r in rounds) * 1000})
    return rows


def table(rows: list) -> str:
    lines = ["| agents | file | load CPU | extra | `agent.list --json` CPU | extra |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['agents']:,} | {r['bytes'] / 1024:.0f} KiB | {r['load_ms']:.1f} ms "
                     f"| {r['load_extra_ms']:+.1f} ms | {r['command_cpu_ms']:.0f} ms "
                     f"| {r['command_extra_ms']:+.0f} ms |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1,1000,10000",
                        help="inventory sizes, comma-separated; the first is the baseline")
    parser.add_argument("--runs", type=int, default=3, help="runs per size (best load, median command)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.agents.split(",")]
    rows = measure(sizes, max(1, args.runs))
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
