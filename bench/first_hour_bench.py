"""Time to a verified Docker fleet on an engine with none of hatchery's images and no registry.

    .venv/bin/python bench/first_hour_bench.py [--agents 2] [--runs 1]

What a new operator types, timed as they would see it: `hatchery broker.deploy`,
`hatchery agent.hatch`, `hatchery verify` as processes (interpreter start-up
included), on a fleet whose inventory gives nothing but `runtime: docker` and
the agents' names.

- cold: the engine lacks the broker and agent base images. They are hatchery's
  own under a tag unique to the run (`hatchery/mosquitto:2.0.11-b<run>`,
  `hatchery/agent-base:bookworm-b<run>`: the recipes build a suffixed tag the
  same way), so the run pays what an empty engine pays: the registry asked and
  refused, both images built from Debian packages (mmdebstrap + docker import;
  deb.debian.org must be reachable), every agent image built on a base no
  layer is cached for. Images the operator or other runs use are never touched.
- warm: a second fleet (another state directory, other agent names) on the same
  engine, the base images now there; its agent images still build.
- again: the warm fleet's three commands once more (nothing to do).

Everything it made is removed afterwards. Results: bench/results/first_hour_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.runtime import for_runtime  # noqa: E402
from hatchery.runtime.docker import engine  # noqa: E402

HATCHERY = Path(sys.executable).with_name("hatchery")
STEPS = ("broker.deploy", "agent.hatch", "verify")


def fleet(root: Path, agents: list, broker_image: str, base_image: str) -> Path:
    root.mkdir(parents=True)
    lines = [f"broker: {{runtime: docker, port: {free_port()}, image: {broker_image}}}", "agents:"]
    lines += [f"  {name}: {{runtime: docker, image: {base_image}}}" for name in agents]
    path = root / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_steps(path: Path) -> dict:
    """Seconds per command, and in all; SystemExit with its output if one fails."""
    seconds = {}
    for step in STEPS:
        started = time.perf_counter()
        done = subprocess.run([str(HATCHERY), step, "-i", str(path)], capture_output=True, text=True,
                              cwd=path.parent, timeout=1800)
        seconds[step] = round(time.perf_counter() - started, 2)
        if done.returncode != 0:
            raise SystemExit(f"{step} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    seconds["total"] = round(sum(seconds.values()), 2)
    return seconds


def clean(paths: list, images: list) -> None:
    client = engine(None)
    for path in paths:
        inv = load_inventory(path)
        for_runtime("docker").remove_fleet(inv)
        for name in inv.agents:
            for image in client.images.list(name=f"hatchery/agent-{name}"):
                client.images.remove(image.id, force=True)
    for ref in images:
        for image in client.images.list(name=ref):
            client.images.remove(image.id, force=True)


def one_run(count: int) -> dict:
    run = secrets.token_hex(3)
    broker_image, base_image = f"hatchery/mosquitto:2.0.11-b{run}", f"hatchery/agent-base:bookworm-b{run}"
    with tempfile.TemporaryDirectory(prefix="first-hour-") as tmp:
        cold = fleet(Path(tmp) / "cold", [f"c{run}-{i}" for i in range(count)], broker_image, base_image)
        warm = fleet(Path(tmp) / "warm", [f"w{run}-{i}" for i in range(count)], broker_image, base_image)
        try:
            return {"cold": run_steps(cold), "warm": run_steps(warm), "again": run_steps(warm)}
        finally:
            clean([cold, warm], [base_image, broker_image])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=2, help="agents per fleet (default 2)")
    parser.add_argument("--runs", type=int, default=1, help="cold/warm pairs to run (default 1)")
    args = parser.parse_args()
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    runs = [one_run(args.agents) for _ in range(args.runs)]
    result = {"agents": args.agents, "runs": runs, "load_before": load,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    for run in runs:
        for kind, seconds in run.items():
            print(f"{kind:6} " + "  ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    out = ROOT / "bench" / "results" / "first_hour_bench.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
