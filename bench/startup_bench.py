"""Whole-process start-up: wall and CPU time of short commands, median of N runs.

    .venv/bin/python bench/startup_bench.py [--runs 9] [--baseline main]

Measures `hatchery broker.status` (against a throw-away inventory whose broker
is not running: it reads the inventory and the state directory, then exits 1)
and `invoke --list`, each as a fresh process; plus `python -c pass` and
`python -c "import invoke"` for scale. With ``--baseline REF`` the hatchery
commands also run under the code of REF (bench/coderefs.py), interleaved with
the working tree's, run by run. Results go to bench/results/startup_bench.json.
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

import coderefs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "startup_bench.json"
INVENTORY = "fleet:\n  manager: zephyr\nbroker:\n  port: 1\nagents:\n  client-a: {}\n"


def timed(argv: list, env: dict) -> tuple:
    """(wall s, CPU s) of one run of ``argv`` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(commands: dict, runs: int) -> dict:
    """Median wall and CPU per command; the commands take turns, run by run, so that a
    change in the machine's load touches them all alike."""
    for argv, env in commands.values():
        timed(argv, env)   # warm the page cache and the bytecode cache
    samples: dict = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            samples[name].append(timed(argv, env))
    return {name: {"wall_ms": round(statistics.median(s[0] for s in got) * 1000, 1),
                   "cpu_ms": round(statistics.median(s[1] for s in got) * 1000, 1)}
            for name, got in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also run the hatchery commands under the code of this git ref")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "fleet_inventory.yaml"
        inventory.write_text(INVENTORY)
        commands = {}
        for label, tree in coderefs.trees(args.baseline):
            env = {**coderefs.code_env(tree), "FLEET_INVENTORY": str(inventory),
                   "HATCHERY_CACHE_DIR": str(Path(tmp) / f"cache-{label}")}
            suffix = "" if tree is None else f" [{label} {coderefs.describe(tree)}]"
            commands[f"hatchery broker.status{suffix}"] = ([str(BIN / "hatchery"), "broker.status"], env)
            commands[f"invoke --list{suffix}"] = ([str(BIN / "invoke"), "--list"], env)
        plain = coderefs.code_env(None)
        commands["python -c pass"] = ([sys.executable, "-c", "pass"], plain)
        commands["python -c 'import invoke'"] = ([sys.executable, "-c", "import invoke"], plain)
        results = measure(commands, args.runs)
    for name, figures in results.items():
        print(f"{name:<48} wall {figures['wall_ms']:>7.1f} ms   cpu {figures['cpu_ms']:>7.1f} ms")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")
    RESULTS.write_text(json.dumps({"runs": args.runs, "load_before": round(load_before, 2),
                                   "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
