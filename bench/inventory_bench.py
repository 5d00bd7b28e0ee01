"""Loading the inventory at fleet scale: load time, cached and not, and whole-command CPU.

    .venv/bin/python bench/inventory_bench.py [--agents 1,1000,10000] [--runs 3] [--out FILE]
    .venv/bin/python bench/inventory_bench.py --baseline main      # old code beside new

For each size it writes a throw-away inventory (a group with vars, and per
agent a runtime, a version command and an env mapping, as a real fleet has)
and measures, in a fresh process per code tree (bench/coderefs.py):
  * parse: ``load_inventory`` with no cache directory, CPU (best of --runs);
  * cached: ``load_inventory`` of the unchanged file with a cache directory
    (inventory/cache.py), CPU (best of --runs, after one load that fills it);
    code without a cache parses again;
  * command: CPU of the whole ``hatchery agent.list --json`` process, user +
    system (median of --runs), i.e. start-up + load + listing + JSON, with the
    cache filled;
  * extra over the first (smallest) inventory: for the command, the median of
    the differences within each round of back-to-back runs.
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
from pathlib import Path
from typing import Optional

import coderefs

# Runs in a fresh interpreter under one code tree: no sys.path games here.
LOAD_WORKER = """
import json, sys, time
from hatchery.inventory.load import load_inventory
path, runs, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def best(env):
    times = []
    for _ in range(runs):
        started = time.process_time()
        inv = load_inventory(path, env=env)
        times.append(time.process_time() - started)
    assert inv.agents, "the bench inventory must load"
    return min(times)
parse = best({})
load_inventory(path, env={"HATCHERY_CACHE_DIR": cache})     # fills the cache (new code)
print(json.dumps({"parse": parse, "cached": best({"HATCHERY_CACHE_DIR": cache})}))
"""


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


def load_cpu(tree: Optional[Path], path: Path, runs: int, cache: Path) -> dict:
    """Best CPU seconds of ``load_inventory`` uncached and cached, under ``tree``'s code."""
    done = subprocess.run([sys.executable, "-c", LOAD_WORKER, str(path), str(runs), str(cache)],
                          capture_output=True, text=True, env=coderefs.code_env(tree),
                          cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"bench: load worker failed: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout)


def command_cpu(tree: Optional[Path], path: Path, cache: Path) -> float:
    """CPU seconds (user + system) of one ``hatchery agent.list --json`` process."""
    hatchery = Path(sys.executable).with_name("hatchery")
    env = {**coderefs.code_env(tree), "NO_COLOR": "1", "HATCHERY_CACHE_DIR": str(cache)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([str(hatchery), "agent.list", "--json", "--inventory", str(path)],
                          capture_output=True, text=True, env=env, cwd=path.parent)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: agent.list failed: {done.stderr.strip()}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(sizes: list, runs: int, trees: list) -> list:
    """Rows per size and code. The commands run in rounds, every size and code once
    per round, so that each size's extra is the median of differences taken back to
    back (start-up CPU drifts by tens of ms on a shared machine)."""
    with tempfile.TemporaryDirectory(prefix="hatchery-inventory-bench-") as tmp:
        paths = []
        for size in sizes:
            folder = Path(tmp) / f"n{size}"
            folder.mkdir()
            paths.append(write_inventory(folder, size))
        caches = {label: Path(tmp) / f"cache-{label}" for label, _ in trees}
        loads = {label: [load_cpu(tree, p, runs, caches[label]) for p in paths]
                 for label, tree in trees}
        for label, tree in trees:          # one run each to fill the caches
            for path in paths:
                command_cpu(tree, path, caches[label])
        rounds = {label: [] for label, _ in trees}
        for _ in range(runs):
            for label, tree in trees:
                rounds[label].append([command_cpu(tree, p, caches[label]) for p in paths])
        rows = []
        for label, tree in trees:
            commit = coderefs.describe(tree)
            for i, (size, path) in enumerate(zip(sizes, paths)):
                load, first = loads[label][i], loads[label][0]
                rows.append({
                    "code": label, "commit": commit, "agents": size,
                    "bytes": path.stat().st_size, "runs": runs,
                    "load_ms": load["parse"] * 1000,
                    "load_extra_ms": (load["parse"] - first["parse"]) * 1000,
                    "cached_ms": load["cached"] * 1000,
                    "command_cpu_ms": statistics.median(r[i] for r in rounds[label]) * 1000,
                    "command_extra_ms": statistics.median(r[i] - r[0] for r in rounds[label]) * 1000})
    return rows


def table(rows: list) -> str:
    lines = ["| code | agents | file | parse CPU | extra | cached load CPU "
             "| `agent.list --json` CPU | extra |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['code']} ({r['commit']}) | {r['agents']:,} | {r['bytes'] / 1024:.0f} KiB "
                     f"| {r['load_ms']:.1f} ms | {r['load_extra_ms']:+.1f} ms "
                     f"| {r['cached_ms']:.1f} ms | {r['command_cpu_ms']:.0f} ms "
                     f"| {r['command_extra_ms']:+.0f} ms |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1,1000,10000",
                        help="inventory sizes, comma-separated; the first is the baseline")
    parser.add_argument("--runs", type=int, default=3, help="runs per size (best load, median command)")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also measure the code of this git ref (e.g. main)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    sizes = [int(n) for n in args.agents.split(",")]
    load_before = os.getloadavg()[0]
    rows = measure(sizes, max(1, args.runs), coderefs.trees(args.baseline))
    print(table(rows))
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
