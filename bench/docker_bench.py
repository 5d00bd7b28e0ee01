"""Docker runtime figures: hatch cold and warm, unchanged re-runs, memory.

    .venv/bin/python bench/docker_bench.py

Needs a running Docker engine and the offline base images (it bootstraps them
when missing). Uses its own random names and port, and removes everything it
made. Cold = the first agent image built on a base image the engine has never
built on (a fresh one-label child of hatchery/agent-base, so no layer is
cached); warm = a second agent on the same base, whose layers up to its own
files are cached; unchanged = hatch the first again, nothing to do.
"""

from __future__ import annotations

import io
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.model import DOCKER, AgentSpec, BrokerSpec, Inventory  # noqa: E402
from hatchery.provision.operations import deploy_plan, hatch_plan  # noqa: E402
from hatchery.runtime import for_runtime  # noqa: E402
from hatchery.runtime.docker import agent_container, bootstrap_images, engine  # noqa: E402


def timed_apply(title: str, changes: list) -> float:
    started = time.perf_counter()
    report = apply_plan(title, changes)
    if "-v" in sys.argv:
        print(title, [(r.item, r.status, r.action, r.reason) for r in report.results])
    if not report.ok:
        raise SystemExit(f"{title} failed: {[r.error for r in report.failed]}")
    return time.perf_counter() - started


def hatch(inv: Inventory, agent: AgentSpec) -> float:
    """Plan and apply, as `invoke agent.hatch` does (without the CLI's start-up)."""
    started = time.perf_counter()
    timed_apply(f"hatch {agent.name}", hatch_plan(inv, [agent]))
    return time.perf_counter() - started


def deploy(inv: Inventory) -> float:
    started = time.perf_counter()
    timed_apply("broker", deploy_plan(inv))
    return time.perf_counter() - started


def memory_mib(client, name: str) -> float:
    stats = client.containers.get(name).stats(stream=False)
    mem = stats["memory_stats"]
    cache = mem.get("stats", {}).get("inactive_file", 0)
    return (mem["usage"] - cache) / 2**20


def wait_answering(inv: Inventory, names: list) -> None:
    with bus_for(inv) as bus:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(r.state == "answered" for r in bus.request(names, "health-check", timeout=2)):
                return
    raise SystemExit("agents did not answer within 30 s")


def fresh_base(client, tag: str) -> str:
    """A child of the agent base image with a new id: nothing built on it is cached."""
    dockerfile = f"FROM hatchery/agent-base:bookworm\nLABEL bench.hatchery.cold-base={tag}\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


def remove_all(client, inv: Inventory, base: str) -> None:
    for_runtime(DOCKER).remove_fleet(inv)
    client.images.remove(base, force=True)


def main() -> None:
    client = engine(None)
    apply_plan("images", bootstrap_images(client))
    prefix = f"hb-{secrets.token_hex(3)}-"
    with tempfile.TemporaryDirectory(prefix="hatchery-dbench-") as tmp:
        broker = BrokerSpec(runtime=DOCKER, port=free_port(), image="hatchery/mosquitto:2.0.11",
                            network=f"{prefix}net", container=f"{prefix}broker",
                            container_prefix=prefix)
        base = fresh_base(client, f"{prefix}base:cold")
        agents = [AgentSpec(f"{prefix}{x}", runtime=DOCKER, image=base, version_command="echo 1")
                  for x in "ab"]
        inv = Inventory(path=Path(tmp) / "fleet_inventory.yaml", broker=broker,
                        agents={a.name: a for a in agents}, state_dir=Path(tmp) / ".hatchery")
        try:
            figures = {
                "broker deploy (s)": deploy(inv),
                "broker deploy unchanged (s)": deploy(inv),
                "hatch cold (s)": hatch(inv, agents[0]),
                "hatch warm, cached layers (s)": hatch(inv, agents[1]),
                "hatch unchanged (s)": hatch(inv, agents[0]),
            }
            wait_answering(inv, [a.name for a in agents])
            time.sleep(2)  # let start-up allocations settle before reading memory
            figures["agent container memory, handler + supervisor (MiB)"] = memory_mib(
                client, agent_container(inv, agents[0]))
            figures["broker container memory (MiB)"] = memory_mib(client, inv.broker.container)
        finally:
            remove_all(client, inv, base)
    print("| measure | value |\n|---|---:|")
    for key, value in figures.items():
        print(f"| {key} | {value:.2f} |")
    out = ROOT / "bench" / "results" / "docker_bench.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
