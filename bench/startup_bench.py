"""Whole-process start-up: wall and CPU time of short commands, median of N runs.

    .venv/bin/python bench/startup_bench.py [--runs 9]

Measures `hatchery broker.status` (against a throw-away inventory whose broker
is not running: it reads the inventory and the state directory, then exits 1)
and `invoke --list`, each as a fresh process; plus `python -c pass` and
`python -c "import invoke"` for scale. Results go to bench/results/startup_bench.json.
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


def measure(argv: list, env: dict, runs: int) -> dict:
    timed(argv, env)   # warm the page cache and the bytecode cache
    samples = [timed(argv, env) for _ in range(runs)]
    return {"wall_ms": round(statistics.median(s[0] for s in samples) * 1000, 1),
            "cpu_ms": round(statistics.median(s[1] for s in samples) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "fleet_inventory.yaml"
        inventory.write_text(INVENTORY)
        env = {**os.environ, "FLEET_INVENTORY": str(inventory)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)   # measure what an installed tool costs
        commands = {
            "hatchery broker.status": [str(BIN / "hatchery"), "broker.status"],
            "invoke --list": [str(BIN / "invoke"), "--list"],
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import invoke'": [sys.executable, "-c", "import invoke"],
        }
        results = {name: measure(argv, env, args.runs) for name, argv in commands.items()}
    for name, figures in results.items():
        print(f"{name:<28} wall {figures['wall_ms']:>7.1f} ms   cpu {figures['cpu_ms']:>7.1f} ms")
    RESULTS.write_text(json.dumps({"runs": args.runs, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
