"""Agent selection at fleet scale: CPU of each selector over a fixture inventory.

    .venv/bin/python bench/select_bench.py [--agents 3000,10000] [--baseline main]

The inventory is built in memory (a third of the agents on a declared Docker
host, the rest local; two groups), then each selector runs in a fresh process
per code tree (bench/coderefs.py): best CPU of 3 runs, in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import coderefs

SELECTORS = {
    "--host local": {"host": "local"},
    "--group evens,all": {"group": "evens,all"},
    "--name (1,000 names)": {"names": ",".join(f"agent-{i:05d}" for i in range(0, 2000, 2))},
    "--pattern 'agent-0*1'": {"pattern": "agent-0*1"},
}

WORKER = """
import json, sys, time
from pathlib import Path
from hatchery.inventory.model import AgentSpec, BrokerSpec, HostSpec, Inventory
from hatchery.inventory.select import select_names
count, selectors = int(sys.argv[1]), json.loads(sys.argv[2])
agents = {}
for i in range(count):
    name, remote = f"agent-{i:05d}", i % 3 == 0
    agents[name] = AgentSpec(name, runtime="docker" if remote else "local",
                             host="h2" if remote else None,
                             docker_host="ssh://root@10.0.0.2" if remote else None)
names = list(agents)
inv = Inventory(Path("/nonexistent/fleet_inventory.yaml"), broker=BrokerSpec(), agents=agents,
                hosts={"h2": HostSpec("h2", "ssh://root@10.0.0.2", "10.0.0.2")},
                groups={"evens": tuple(names[::2]), "all": tuple(names)})
out = {}
for label, chosen in selectors.items():
    times = []
    for _ in range(3):
        started = time.process_time()
        found = select_names(inv, **chosen)
        times.append(time.process_time() - started)
    out[label] = [round(min(times) * 1000, 2), len(found)]
print(json.dumps(out))
"""


def measure(tree, count: int) -> dict:
    done = subprocess.run([sys.executable, "-c", WORKER, str(count), json.dumps(SELECTORS)],
                          capture_output=True, text=True, env=coderefs.code_env(tree),
                          cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"bench: select worker failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="3000,10000")
    parser.add_argument("--baseline", default=None, metavar="REF")
    args = parser.parse_args()
    trees = coderefs.trees(args.baseline)
    load_before = os.getloadavg()[0]
    print("| code | agents | " + " | ".join(f"`{s}` ms" for s in SELECTORS) + " |")
    print("|---|---:|" + "---:|" * len(SELECTORS))
    for count in (int(n) for n in args.agents.split(",")):
        for label, tree in trees:
            figures = measure(tree, count)
            cells = " | ".join(f"{figures[s][0]:.1f} ({figures[s][1]:,} chosen)" for s in SELECTORS)
            print(f"| {label} ({coderefs.describe(tree)}) | {count:,} | {cells} |")
    print(f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
