"""The snapshot's fold and judgement, without a broker: CPU over N agents' retained messages.

    .venv/bin/python bench/fold_bench.py [--agents 10000] [--baseline main] [--rounds 5] [--out FILE]

What ``monitor.snapshot`` does after the bus read, fed from memory: a fresh
``FleetState`` folds every agent's retained ``online`` state and heartbeat
(the payloads ``bench/simfleet.py`` sends, plus the broker's uptime), then
``monitor.build_snapshot`` judges every agent against an empty intent book
(fold + judge is what ``monitor.snapshot`` adds to the bus read), then the
table's rows are built. Each code tree runs in its own fresh process
(bench/coderefs.py), the trees take turns round by round; the figures are
the best and the median CPU of ``--rounds`` rounds, in ms. The raw figures go
to ``bench/results/fold_bench.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from pathlib import Path

import coderefs

RESULTS = Path(__file__).resolve().parent / "results" / "fold_bench.json"

WORKER = r"""
import gc, inspect, json, sys, time
from pathlib import Path
from agent_kit import contract
from hatchery.bus.messages import Message
from hatchery.core.intent import IntentBook
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import monitor
from hatchery.observe.fleetstate import FleetState

count, rounds = int(sys.argv[1]), int(sys.argv[2])
BEAT = ('{"v":1,"ts":"%s","agent":"%s","ok":true,"uptime":%r,"mem_kb":20480,"cpu":0.1,'
        '"errors":{},"interval":600.0,"version":"sim-1.0","instance":"%s"}')
STATE = '{"v":1,"ts":"%s","agent":"%s","kind":"state","state":"online","instance":"%s"}'
now = time.time()

def stamp(i):       # every agent's own time, ms precision, within its last interval
    at = now - (i * 0.0617) % 600
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"

names = [f"agent-{i:05d}" for i in range(count)]
inv = Inventory(Path("/nonexistent/fleet_inventory.yaml"),
                agents={n: AgentSpec(n) for n in names})
batch = [Message("$SYS/broker/uptime", b"3600 seconds", True, now)]
for i, name in enumerate(names):
    token = f"{i:08x}abcd"
    batch.append(Message(f"fleet/{name}/status", (STATE % (stamp(i + 7), name, token)).encode(), True, now))
    batch.append(Message(f"fleet/{name}/heartbeat",
                         (BEAT % (stamp(i), name, 12.5 + i, token)).encode(), True, now))
book = IntentBook(stopped={}, retired=frozenset(), leases={})
# as monitor.snapshot calls it (a code that has the keyword judges its own state's facts uncopied)
how = {"live": True} if "live" in inspect.signature(monitor.build_snapshot).parameters else {}
fold, judged, total, table = [], [], [], []
for _ in range(rounds):
    gc.collect()        # the collector stays on: what the code pauses, it pauses itself
    started = time.process_time()
    state = FleetState.for_inventory(inv).observe_all(batch)
    folded = time.process_time()
    snap = monitor.build_snapshot(state, book, now, **how)
    done = time.process_time()
    rows = snap.rows()
    shown = time.process_time()
    online = sum(row["state"] == "online" for row in rows)
    assert online == count, f"{online} online of {count}"
    fold.append(folded - started)
    judged.append(done - folded)
    total.append(done - started)
    table.append(shown - done)
print(json.dumps({"fold": fold, "judge": judged, "total": total, "rows": table}))
"""


def measure(tree, count: int, rounds: int) -> dict:
    done = subprocess.run([sys.executable, "-c", WORKER, str(count), str(rounds)],
                          capture_output=True, text=True, env=coderefs.code_env(tree),
                          cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"bench: fold worker failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)


def cell(times: list) -> str:
    return f"{min(times) * 1000:.0f} / {statistics.median(times) * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="10000")
    parser.add_argument("--baseline", default=None, metavar="REF")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=3, help="fresh processes per tree, interleaved")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    trees = coderefs.trees(args.baseline)
    load_before = os.getloadavg()[0]
    print("| code | agents | fold ms (best / median) | judge ms | fold + judge ms | rows ms |")
    print("|---|---:|---:|---:|---:|---:|")
    report = {"load_before": load_before, "runs": []}
    for count in (int(n) for n in args.agents.split(",")):
        runs = {label: {"fold": [], "judge": [], "total": [], "rows": []} for label, _ in trees}
        for _ in range(args.turns):
            for label, tree in trees:
                for key, values in measure(tree, count, args.rounds).items():
                    runs[label][key].extend(values)
        for label, tree in trees:
            got = runs[label]
            print(f"| {label} ({coderefs.describe(tree)}) | {count:,} | {cell(got['fold'])} | "
                  f"{cell(got['judge'])} | {cell(got['total'])} | {cell(got['rows'])} |")
            report["runs"].append({"code": label, "commit": coderefs.describe(tree), "agents": count,
                                   "seconds": got})
    report["load_after"] = os.getloadavg()[0]
    print(f"load average before {load_before:.2f}, after {report['load_after']:.2f}")
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
