"""Docker Swarm runtime figures: swarm.up, deploy + hatch (cold and warm, 3 and 30 agents
across 3 nodes), failover after node losses, rollout by batch size, memory per node.

    .venv/bin/python bench/swarm_bench.py [--agents 3,30] [--losses 6] [--batches 3,10,30]

Run as root on Linux with Docker: it makes three hosts on this machine (network
namespaces, each with its own dockerd and sshd, see tests/hosts/netns.py), forms a
3-manager swarm with ``swarm.up``, and removes everything it made. The engines
start with no image: cold = the broker and base images reach each node by docker
save | load over SSH and every agent image is built on every node; warm = the same
hatch again, nothing to do. A node loss cuts the node off the network, kills its
containers and stops its engine (a power loss); failover time = from the loss
until every agent answers a health-check again; every third loss is the Raft
leader's node (a new leader is elected first), as often as a random loss among
three managers would hit it. Each loss also records when each step of the failover
happened (bench/swarm_timeline.py: new leader, node down, broker task running, broker
accepting, every agent's task running). Rollout by batch size = fleet.rollout of a new release
(a new version_command: a new config, so a new task per agent) to the last fleet,
gated on each agent answering the new version. Figures go to
bench/results/swarm_bench.json (a partial run replaces only what it measured).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "hosts"))

from answering import wait_answering  # noqa: E402
from netns import MultiHost  # noqa: E402
from swarm_timeline import Timeline, births_since, engine_log_steps, node_id  # noqa: E402

from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.hosts import apply_per_host  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.operate.rollout import rollout  # noqa: E402
from hatchery.provision.operations import deploy_plan, hatch_plans  # noqa: E402
from hatchery.runtime import for_runtime  # noqa: E402
from hatchery.runtime.docker import bootstrap_images, engine, forget_connections  # noqa: E402
from hatchery.runtime.swarm import published_port, service_name, swarm_status, up_plan  # noqa: E402

AGENT_IMAGE = "hatchery/agent-base:bookworm-clients"
BROKER_IMAGE = "hatchery/mosquitto:2.0.11"
RESULTS = ROOT / "bench" / "results" / "swarm_bench.json"


def inventory(multi: MultiHost, folder: Path, count: int) -> Path:
    zones = {"h1": "a", "h2": "b", "h3": "c"}
    hosts = "".join(f"  {h.name}: {{docker_host: \"{h.docker_host}\", labels: {{zone: {zones[h.name]}}}}}\n"
                    for h in multi.hosts)
    agents = "".join(f"  s{i:02d}: {{runtime: swarm, version_command: \"echo v1\", heartbeat_interval: 30, "
                     f"image: \"{AGENT_IMAGE}\", placement: {{preferences: [\"spread=node.labels.zone\"]}}}}\n"
                     for i in range(count))
    path = folder / "fleet_inventory.yaml"
    path.write_text("hosts:\n" + hosts + textwrap.dedent(f"""\
        swarm: {{managers: [h1, h2, h3]}}
        broker: {{runtime: swarm, tls: true, image: "{BROKER_IMAGE}", network: hty-bench-net,
                  container: hty-bench-broker, container_prefix: hty-bench-}}
        agents:
        """) + agents)
    return path


def applied(title: str, changes: list) -> float:
    started = time.monotonic()
    report = apply_plan(title, changes)
    if not report.ok:
        raise SystemExit(f"{title} failed: {[(r.item, r.error) for r in report.failed]}")
    return round(time.monotonic() - started, 1)


def hatch(inv) -> tuple:
    started = time.monotonic()
    common, per_host = hatch_plans(inv, list(inv.agents.values()))
    report = apply_per_host("agent.hatch", common, per_host)
    if not report.ok:
        raise SystemExit(f"hatch failed: {[(r.item, r.error) for r in report.failed]}")
    return round(time.monotonic() - started, 1), len(report.changed)


def deploy_and_hatch(multi: MultiHost, folder: Path, count: int) -> dict:
    """Cold (no image on any node) and warm, for ``count`` agents; the fleet is left running."""
    inv = load_inventory(inventory(multi, folder, count), env={})
    figures = {}
    for run in ("cold", "warm"):
        started = time.monotonic()
        deploy = applied("broker.deploy", deploy_plan(inv))
        seconds, changed = hatch(inv)
        figures[run] = {"deploy (s)": deploy, "hatch (s)": seconds, "changed": changed,
                        "deploy + hatch (s)": round(time.monotonic() - started, 1)}
        if run == "cold":
            figures[run]["all answering after the hatch (s)"] = round(
                wait_answering(inv, list(inv.agents), within=300), 1)
    return inv, figures


def rollouts(inv, sizes: list) -> tuple:
    """fleet.rollout of a new release to every agent, once per batch size: its seconds."""
    figures = {}
    for release, size in enumerate(sizes, start=2):
        path = Path(inv.path)
        path.write_text(re.sub(r'version_command: "echo v\d+"', f'version_command: "echo v{release}"',
                               path.read_text()))
        inv = load_inventory(path, env={})
        started = time.monotonic()
        with bus_for(inv, connect_timeout=30.0) as bus:
            report = rollout(inv, list(inv.agents.values()), bus, size=size,
                             expect_version=f"v{release}", timeout=60.0)
        figures[f"batch {size}"] = {"batches": len(report.batches), "ok": report.ok,
                                    "seconds": round(time.monotonic() - started, 1),
                                    "outcomes": _counts(o.outcome for o in report.outcomes.values()),
                                    "failed": {o.agent: o.detail for o in report.outcomes.values()
                                               if o.agent in report.failed}}
        print(size, figures[f"batch {size}"], flush=True)
    return inv, figures


def _counts(outcomes) -> dict:
    found: dict = {}
    for outcome in outcomes:
        found[outcome] = found.get(outcome, 0) + 1
    return found


def clear(multi: MultiHost, inv) -> None:
    """Remove the fleet and every image from the nodes: the next run starts cold again."""
    for_runtime("swarm").remove_fleet(inv)
    for host in multi.hosts:
        images = multi.docker(host, "images", "-q", check=False).stdout.split()
        if images:
            multi.docker(host, "rmi", "-f", *set(images), check=False)


def leader(multi: MultiHost, inv) -> str:
    rows, _, _ = swarm_status(inv)
    return next((r["host"] for r in rows if "leader" in r["reachability"]), "?")


def victims(multi: MultiHost, inv, index: int, last: str):
    """Every third loss is the Raft leader's node, the others a follower's (not the one lost
    last): as often as a random node of three managers is the leader."""
    lead = leader(multi, inv)
    if index % 3 == 2:
        return next(h for h in multi.hosts if h.name == lead)
    return next(h for h in multi.hosts if h.name not in (lead, last))


def failovers(multi: MultiHost, inv, losses: int) -> dict:
    rounds, last = [], ""
    for index in range(losses):
        victim = victims(multi, inv, index, last)
        last = victim.name
        was_leader = leader(multi, inv) == victim.name
        broker = for_runtime("swarm").broker_status(inv).get("node")
        survivors = [h for h in multi.hosts if h is not victim]
        victim_node = node_id(victim)
        lost, lost_wall = time.monotonic(), time.time()
        with Timeline(survivors, victim_node, inv.broker.container,
                      {service_name(inv, a) for a in inv.agents}, published_port(inv), lost) as timeline:
            # The engine's own stop takes up to 20 s: the observer asks meanwhile (it waited
            # for it before, and a loss with nothing to move measured 15 s).
            multi.partition(victim)         # cut off first: nothing answers from there after this
            losing = threading.Thread(target=multi.lose, args=(victim,))
            losing.start()
            try:
                seconds, missed = wait_answering(inv, list(inv.agents), within=180, since=lost), ""
            except AssertionError as exc:   # recorded as 180 s and said: the other losses still count
                seconds, missed = 180.0, str(exc)[:300]
            losing.join()
        rounds.append({"lost": victim.name, "leader": was_leader, "broker there": broker == victim.name,
                       "every agent answering (s)": round(seconds, 1), "steps (s after the loss)": timeline.marks,
                       "engine logs (s after the loss)": _safely(engine_log_steps, survivors, lost_wall),
                       **_safely(births_since, inv, lost_wall), **({"missed": missed} if missed else {})})
        print(rounds[-1], flush=True)
        multi.restore(victim)
        _wait_ready(inv)
        forget_connections()
    times = [r["every agent answering (s)"] for r in rounds]
    by_kind = {kind: [r["every agent answering (s)"] for r in rounds if r["leader"] == lead]
               for kind, lead in (("follower lost", False), ("leader lost", True))}
    return {"rounds": rounds, "p50 (s)": round(statistics.median(times), 1), "max (s)": max(times),
            **{f"{kind}: p50 / max (s)": [round(statistics.median(t), 1), max(t)] for kind, t in by_kind.items() if t}}


def _safely(measure, *args) -> dict:
    """A side measurement that failed is written down, not the end of the run."""
    try:
        return measure(*args)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def _wait_ready(inv, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            rows, problems, _ = swarm_status(inv)
            if not problems:
                return
        except Exception:  # noqa: BLE001 - a manager still electing: ask again
            pass
        time.sleep(1)
    raise SystemExit("the swarm did not come back to every node ready")


def memory(multi: MultiHost) -> dict:
    """Per node: the engine's RSS (dockerd + containerd) and its containers' memory (MiB)."""
    found = {}
    for host in multi.hosts:
        engine_kib = 0
        for pid in [host.dockerd.pid, *_children(host.dockerd.pid)]:
            engine_kib += _rss_kib(pid)
        usage = multi.docker(host, "stats", "--no-stream", "--format", "{{.MemUsage}}", check=False).stdout
        containers = [_mib(line.split("/")[0]) for line in usage.splitlines() if line.strip()]
        found[host.name] = {"engine (MiB)": round(engine_kib / 1024, 1), "containers": len(containers),
                            "containers (MiB)": round(sum(containers), 1)}
    return found


def _children(pid: int) -> list:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _mib(text: str) -> float:
    text = text.strip()
    for unit, factor in (("GiB", 1024), ("MiB", 1), ("KiB", 1 / 1024), ("B", 1 / 1024 / 1024)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="3,30")
    parser.add_argument("--losses", type=int, default=6)
    parser.add_argument("--batches", default="3,10,30", help="rollout batch sizes ('' for none)")
    args = parser.parse_args()
    # Killed (timeout, kill): exit through the finally below, so no engine or namespace is left.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    apply_plan("images", bootstrap_images(engine(None), which=("broker", "agent-clients")))
    results: dict = {"machine": "2 cores, shared; three dockerds in network namespaces"}
    multi = MultiHost(count=3, swarm=True)
    try:
        multi.start()
        import os
        os.environ.update(multi.env())
        os.environ.pop("SSH_AUTH_SOCK", None)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            first = load_inventory(inventory(multi, folder, 1), env={})
            results["swarm.up, 3 managers (s)"] = applied("swarm.up", up_plan(first))
            inv = None
            for count in [int(n) for n in args.agents.split(",")]:
                if inv is not None:
                    clear(multi, inv)
                inv, figures = deploy_and_hatch(multi, folder, count)
                results[f"{count} agents"] = figures
                print(count, figures, flush=True)
            results["memory per node, 30 agents"] = memory(multi)
            if args.batches:
                inv, results[f"rollout of {len(inv.agents)} agents"] = rollouts(
                    inv, [int(n) for n in args.batches.split(",")])
            if args.losses:
                results["failover"] = failovers(multi, inv, args.losses)
            clear(multi, inv)
    finally:
        forget_connections()
        multi.close()
    # A partial run (--losses 0, --batches '') replaces only the figures it measured.
    kept = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**kept, **results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
