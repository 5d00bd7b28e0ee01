"""How long fleet.capacity takes at 1,000 agents.

A real Mosquitto and ``bench/simfleet.py`` with N simulated agents (each
publishes the contract's retained heartbeat, with memory and CPU), plus
``--handlers`` real agent handlers started the way the local runtime starts
them (so the runtime measures those from /proc and the heartbeats stand in
for the rest). The inventory lists them all as local agents. Then
``hatchery fleet.capacity --json`` runs ``--runs`` times, as an operator or
cron would run it; the median and the envelope's own gather time are
reported.

    .venv/bin/python bench/capacity_bench.py --count 1000 --handlers 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from benchkit import report, stop_all  # noqa: E402
from fleet_bench import start_broker  # noqa: E402

HATCHERY = Path(sys.executable).with_name("hatchery")


def write_inventory(path: Path, port: int, manager: str, names: list) -> None:
    lines = ["fleet:", f"  manager: {manager}", "  state_dir: state", "broker:", "  runtime: local",
             "  host: 127.0.0.1", f"  port: {port}", "  auth: false", "capacity:", "  headroom: 10%",
             "agents:"]
    lines += [f"  {n}: {{}}" for n in names]
    path.write_text("\n".join(lines) + "\n")


def start_handler(work: Path, port: int, manager: str, name: str) -> subprocess.Popen:
    """A real handler as the local runtime runs one: python -m agent_kit.handler --config
    <state>/agents/<name>/agent.json (the local runtime finds its handlers by that argv)."""
    config = work / "state" / "agents" / name / "agent.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"name": name, "manager": manager, "heartbeat_interval": 30,
                                  "broker": {"host": "127.0.0.1", "port": port}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCHERY_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "agent_kit.handler", "--config", str(config)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="simulated agents")
    parser.add_argument("--handlers", type=int, default=5, help="real handlers besides them")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    manager, procs = "benchmgr", []
    with tempfile.TemporaryDirectory(prefix="capbench-") as tmp:
        work = Path(tmp)
        broker, port = start_broker(work, args.count + args.handlers)
        procs.append(broker)
        try:
            sim = subprocess.Popen([sys.executable, str(ROOT / "bench" / "simfleet.py"), "--port",
                                    str(port), "--count", str(args.count), "--manager", manager,
                                    "--stop-on-stdin-eof"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
            procs.append(sim)
            ready = json.loads(sim.stdout.readline() or "{}")
            assert ready.get("ready") == args.count, ready
            handlers = [f"real-{i}" for i in range(args.handlers)]
            procs += [start_handler(work, port, manager, n) for n in handlers]
            names = [f"sim-{i:04d}" for i in range(args.count)] + handlers
            write_inventory(work / "fleet.yaml", port, manager, names)
            time.sleep(3)                       # the handlers' first heartbeats
            seconds, envelope = [], {}
            for _ in range(args.runs):
                started = time.perf_counter()
                done = subprocess.run([str(HATCHERY), "fleet.capacity", "--json", "--inventory",
                                       str(work / "fleet.yaml")], capture_output=True, text=True,
                                      timeout=300)
                seconds.append(time.perf_counter() - started)
                envelope = json.loads(done.stdout)
            [host] = envelope["items"]
            sources = {}
            for usage in host["agent_usage"]:
                sources[usage["source"]] = sources.get(usage["source"], 0) + 1
            figures = {"agents": len(names), "runs": args.runs,
                       "capacity_s_median": round(statistics.median(seconds), 3),
                       "capacity_s_max": round(max(seconds), 3),
                       "gather_s_last": envelope["gather_s"], "agents_counted": host["agents"],
                       "sources": sources, "fits": host["fits"], "limited_by": host["limited_by"],
                       "exit_ok": envelope["ok"]}
        finally:
            stop_all(procs)
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
