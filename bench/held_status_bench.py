"""Messages read per request inside a status subscription a long-running role holds.

fleet.heal --watch holds ``fleet/+/+`` for its whole life, and fleet.rollout's
gate holds its batch's ``fleet/{name}/status`` topics while it asks them for
health-check and version-report. Each request inside used to SUBSCRIBE to the
status topics again: the broker re-sent every retained state with the
replies, and under MQTT v5 a filter overlapping the held one brought each
reply twice. Now such a request reuses the held subscription
(``BusClient._held_status``) and reads one message per agent: its reply.

With a fresh local broker and ``bench/simfleet.py`` agents (N lean MQTT
connections speaking the contract), for each code tree (the working tree and,
with ``--baseline REF``, REF's, interleaved run by run) and each size: status
messages read per agent per request, and the request's time (p50 over
``--rounds``), for both holders.

    .venv/bin/python bench/held_status_bench.py [--sizes 100,1000] [--rounds 10] [--baseline main]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Only the bench folder: the worker's hatchery is the one PYTHONPATH selects (coderefs).
sys.path.insert(0, str(Path(__file__).resolve().parent))

MANAGER = "zephyr"


def worker(spec: dict) -> dict:
    """Under whichever code PYTHONPATH selects: both holders, ``rounds`` requests each."""
    from agent_kit import contract
    from hatchery.bus.client import BusClient
    names = [f"sim-{i:04d}" for i in range(spec["count"])]
    out = {}
    with BusClient("127.0.0.1", spec["port"], client_id=f"{MANAGER}-bench") as bus:
        holders = {"heal_watch": [f"{contract.FLEET_PREFIX}/+/+"],
                   "rollout_gate": [contract.topic(n, "status") for n in names]}
        for holder, filters in holders.items():
            others = []         # what the holder hears that is no status message (heartbeats, our commands)
            with bus.listen(filters, lambda m: others.append(1) if not m.topic.endswith("/status") else None,
                            qos=1, timeout=30):
                time.sleep(1.0)             # the holder's own retained burst is over
                reads, times, answered = [], [], []
                for _ in range(spec["rounds"]):
                    before, other = bus.received, len(others)
                    started = time.perf_counter()
                    replies = bus.request(names, "health-check", timeout=spec["timeout"], answers_only=True)
                    times.append((time.perf_counter() - started) * 1000)
                    time.sleep(0.3)         # late duplicates and retained states are counted too
                    reads.append((bus.received - before - (len(others) - other)) / len(names))
                    answered.append(sum(1 for r in replies if r.state == "answered"))
            out.update({f"{holder}_status_reads_per_agent": round(statistics.median(reads), 2),
                        f"{holder}_request_ms_p50": round(statistics.median(times), 1),
                        f"{holder}_answered_min": min(answered)})
    return out


def run_worker(tree, spec: dict) -> dict:
    import coderefs
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, env=coderefs.code_env(tree), cwd=tempfile.gettempdir(), timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_size(count: int, rounds: int, trees: list, repeats: int) -> list:
    import coderefs
    from fleet_bench import start_broker, start_simfleet, stop
    with tempfile.TemporaryDirectory(prefix="held-status-") as tmp:
        broker, port = start_broker(Path(tmp), count)
        try:
            sim, _ = start_simfleet(port, count, MANAGER, signed=False)
            try:
                spec = {"port": port, "count": count, "rounds": rounds, "timeout": max(10.0, count / 100)}
                runs = {label: [] for label, _ in trees}
                for _ in range(repeats):
                    for label, tree in trees:
                        runs[label].append(run_worker(tree, spec))
            finally:
                stop(sim)
        finally:
            stop(broker)
    return [{"agents": count, "code": f"{label} {coderefs.describe(tree)}",
             **{k: round(statistics.median(r[k] for r in runs[label]), 2) for k in runs[label][0]}}
            for label, tree in trees]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved worker runs per code tree")
    parser.add_argument("--baseline", help="a git ref measured beside the working tree")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    import coderefs
    trees = coderefs.trees(args.baseline)
    rows = [row for size in args.sizes.split(",") for row in bench_size(int(size), args.rounds, trees,
                                                                        args.repeats)]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
