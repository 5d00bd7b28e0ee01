"""Day-2 benchmark: self-heal latency, rollout time, the supervisor's footprint.

With a fresh local broker and real local handlers (agent_kit.handler processes):

- kill to answering again: ``fleet.heal --watch`` runs (the CLI, as a service
  would run it); a handler is killed with SIGKILL and the time until that agent
  answers a health-check over the bus again is taken, ``--kills`` times (p50, max).
  The supervisor restarts only what the runtime confirms gone, so this includes
  asking the runtime;
- rollout time for 10 and 100 agents by batch size (``fleet.rollout``'s library
  call, gated on birth + health-check + version-report);
- a rollout of 10 agents (``fleet.rollout`` CLI, batch 1 and batch 3) while
  ``fleet.heal --watch`` supervises the same fleet: time, outcome, and whether
  any handler lost its lock to a second one (heal fighting the rollout);
- the supervisor's RSS and its CPU while the fleet is idle (``--idle`` seconds).

    .venv/bin/python bench/dayops_bench.py [--kills 20] [--sizes 10,100] [--idle 30] [--docker] [--out FILE]

Prints a markdown table; ``--out`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.errors import BusError  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.operate import rollout  # noqa: E402
from hatchery.operate.confirm import agent_state  # noqa: E402
from hatchery.provision.operations import (  # noqa: E402
    deploy_plan,
    hatch_plan,
    stop_broker_plan,
    stop_plan,
)
from hatchery.runtime import for_runtime  # noqa: E402

INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]
BATCHES = {10: ["1", "3", "10"], 100: ["10", "25", "50", "100"]}


def write_inventory(directory: Path, port: int, count: int, version: str) -> Path:
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local", "  host: 127.0.0.1",
             "  bind: 127.0.0.1", f"  port: {port}", "agents:"]
    for n in range(count):
        lines += [f"  b{n:03d}:", f"    version_command: 'echo {version}'", "    heartbeat_interval: 30"]
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Fleet:
    """A throw-away local fleet of ``count`` agents (broker + handlers) in ``directory``."""

    def __init__(self, directory: Path, count: int):
        self.directory, self.count, self.port = directory, count, free_port()
        self.path = write_inventory(directory, self.port, count, "v0")

    def inv(self, version: str | None = None):
        if version is not None:
            write_inventory(self.directory, self.port, self.count, version)
        return load_inventory(self.path, env={})

    def __enter__(self):
        inv = self.inv()
        assert apply_plan("deploy", deploy_plan(inv)).ok
        assert apply_plan("hatch", hatch_plan(inv, list(inv.agents.values()))).ok
        return self

    def __exit__(self, *exc):
        inv = self.inv()
        apply_plan("stop", stop_plan(inv, list(inv.agents.values()), orphans=True))
        apply_plan("broker stop", stop_broker_plan(inv))
        for_runtime("local").remove_fleet(inv)

    def handler_pid(self, name: str) -> int | None:
        pid = agent_state(self.inv(), name).pid
        return pid if isinstance(pid, int) else None

    def supervisor(self, *flags) -> subprocess.Popen:
        """``fleet.heal --watch`` on this fleet, as a service runs it (the CLI, its own session)."""
        env = {**os.environ, "FLEET_INVENTORY": str(self.path)}
        return subprocess.Popen([*INVOKE, "fleet.heal", "--watch", "--json", *flags],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True, text=True)


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def bench_heal(kills: int, idle: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, Fleet(Path(tmp), 10) as fleet:
        supervisor = fleet.supervisor("--budget", str(kills + 5))
        try:
            time.sleep(3.0)
            footprint = _footprint(supervisor.pid, idle)
            inv = fleet.inv()
            names = list(inv.agents)
            seconds = []
            with bus_for(inv) as bus:
                for index in range(kills):
                    name = names[index % len(names)]
                    seconds.append(_kill_and_wait(fleet, bus, name))
                    time.sleep(0.5)
        finally:
            os.killpg(supervisor.pid, signal.SIGINT)
            supervisor.wait(timeout=30)
    return {"kills": kills, "p50_s": round(statistics.median(seconds), 3),
            "max_s": round(max(seconds), 3), "all_s": [round(s, 3) for s in seconds], **footprint}


def _kill_and_wait(fleet: Fleet, bus, name: str, limit: float = 30.0) -> float:
    old = fleet.handler_pid(name)
    os.kill(old, signal.SIGKILL)
    killed = time.perf_counter()
    while time.perf_counter() - killed < limit:
        replies = bus.request([name], "health-check", timeout=0.25)
        if replies[0].ok:
            return time.perf_counter() - killed
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not come back within {limit}s")


def _footprint(pid: int, idle: float) -> dict:
    """RSS and CPU share of the supervisor (the invoke process and its children) while idle."""
    before = _cpu_seconds(pid)
    time.sleep(idle)
    used = _cpu_seconds(pid) - before
    rss = int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    return {"supervisor_rss_kb": rss, "supervisor_idle_cpu_percent": round(100 * used / idle, 3),
            "idle_s": idle}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- docker ---------------------------------------------------------------------------

# Inside the container: SIGKILL the handler only; "[.]" so this shell's own command line does not match.
KILL_IN_CONTAINER = ["sh", "-c", "for p in /proc/[0-9]*; do grep -q 'agent_kit[.]handler' $p/cmdline "
                     "2>/dev/null && kill -9 ${p#/proc/}; done; true"]


def bench_heal_docker(kills: int) -> dict:
    """The same kill -9 / answer-again timing for one docker agent, the supervisor in-process."""
    import secrets
    import threading

    from hatchery.inventory.model import DOCKER, AgentSpec, BrokerSpec, Inventory
    from hatchery.operate import heal
    from hatchery.provision.credentials import plan_auth
    from hatchery.provision.operations import auth_files, broker_conf

    runtime = for_runtime(DOCKER)
    prefix = f"hty-{secrets.token_hex(3)}-"
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerSpec(runtime=DOCKER, port=free_port(), image="hatchery/mosquitto:2.0.11",
                            network=f"{prefix}net", container=f"{prefix}broker", container_prefix=prefix)
        (Path(tmp) / "fleet_inventory.yaml").write_text("fleet:\n  manager: zephyr\n")
        agent = AgentSpec(f"{prefix}a", runtime=DOCKER, version_command="echo 1.0", main_command="sleep infinity")
        inv = Inventory(path=Path(tmp) / "fleet_inventory.yaml", broker=broker,
                        state_dir=Path(tmp) / ".hatchery", agents={agent.name: agent})
        stop = threading.Event()
        try:
            auth = plan_auth(inv)
            assert apply_plan("deploy", [auth.change(), *runtime.broker_plan(
                inv, conf_text=broker_conf(inv), auth_files=auth_files(auth))]).ok
            _wait_port(inv)
            assert apply_plan("hatch", hatch_plan(inv, [agent])).ok
            with bus_for(inv) as bus:
                _until_answers(bus, agent.name, 120)
                threading.Thread(target=heal.watch, args=(inv, bus, heal.Policy(budget=kills + 5)),
                                 kwargs={"stop": stop}, daemon=True).start()
                time.sleep(1.0)
                seconds = []
                for _ in range(kills):
                    runtime.exec_in_agent(inv, agent, KILL_IN_CONTAINER, 10)
                    killed = time.perf_counter()
                    _until_answers(bus, agent.name, 60)
                    seconds.append(time.perf_counter() - killed)
                    time.sleep(1.0)
        finally:
            stop.set()
            runtime.remove_fleet(inv)
    return {"kills": kills, "p50_s": round(statistics.median(seconds), 3),
            "max_s": round(max(seconds), 3), "all_s": [round(s, 3) for s in seconds]}


def _wait_port(inv, timeout: float = 60.0) -> None:
    from hatchery.core.ports import listening
    deadline = time.monotonic() + timeout
    while not listening(inv.broker.host, inv.broker.port) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)     # Docker's proxy listens before Mosquitto inside does


def _until_answers(bus, name: str, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        try:
            if bus.request([name], "health-check", timeout=0.25)[0].ok:
                return
        except BusError:
            pass        # a SUBACK late on a busy machine: ask again
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not answer within {limit}s")


def bench_rollout(count: int) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Fleet(Path(tmp), count) as fleet:
        for index, batch in enumerate(BATCHES.get(count, ["1", str(count)]), 1):
            version = f"v{index}"
            inv = fleet.inv(version)
            agents = list(inv.agents.values())
            with bus_for(inv) as bus:
                report = rollout.rollout(inv, agents, bus, size=rollout.batch_size(batch, count),
                                         expect_version=version, timeout=60.0)
            assert report.ok, report.as_dict()
            rows.append({"agents": count, "batch": int(batch), "batches": len(report.batches),
                         "seconds": round(report.seconds, 2)})
    return rows


def bench_rollout_supervised(count: int = 10, batches=("1", "3")) -> list:
    """fleet.rollout (the CLI) of ``count`` agents while fleet.heal --watch supervises them."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, Fleet(Path(tmp), count) as fleet:
        supervisor = fleet.supervisor()
        try:
            time.sleep(3.0)
            for index, batch in enumerate(batches, 1):
                version = f"s{index}"
                fleet.inv(version)
                started = time.perf_counter()
                done = subprocess.run([*INVOKE, "fleet.rollout", "--batch", batch, "--expect-version", version,
                                       "--timeout", "30", "--json"], capture_output=True, text=True,
                                      env={**os.environ, "FLEET_INVENTORY": str(fleet.path)}, timeout=600)
                seconds = time.perf_counter() - started
                report = json.loads(done.stdout)
                outcomes = sorted({item["outcome"] for item in report["items"]})
                rows.append({"agents": count, "batch": int(batch), "exit": done.returncode,
                             "outcomes": outcomes, "seconds": round(seconds, 2),
                             "lost_locks": _lost_locks(Path(tmp) / ".hatchery")})
        finally:
            os.killpg(supervisor.pid, signal.SIGINT)
            out, _ = supervisor.communicate(timeout=30)
    restarts = sum(1 for line in out.splitlines() if '"action":"restarted"' in line)
    for row in rows:
        row["supervisor_restarts_during_all_rollouts"] = restarts
    return rows


def _lost_locks(state: Path) -> int:
    """Handler logs saying a second handler found the first one holding the agent's lock."""
    return sum(1 for log in (state / "agents").glob("*/handler.log") if "holds" in log.read_text(errors="replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--docker", action="store_true", help="also time kills of a container's handler")
    parser.add_argument("--only", choices=("heal", "rollout", "supervised", "docker"),
                        help="run one part only (the figures of the others are left out)")
    parser.add_argument("--out")
    args = parser.parse_args()
    wanted = {args.only} if args.only else {"heal", "rollout", "supervised", *(["docker"] if args.docker else [])}
    result = {"machine": f"{platform.node()} {os.cpu_count()} cpu, Python {platform.python_version()}"}
    if "heal" in wanted:
        result["heal_local"] = bench_heal(args.kills, args.idle)
    if "rollout" in wanted:
        result["rollout_local"] = [r for size in args.sizes.split(",") if size for r in bench_rollout(int(size))]
    if "supervised" in wanted:
        result["rollout_supervised"] = bench_rollout_supervised()
    if "docker" in wanted:
        result["heal_docker"] = bench_heal_docker(args.kills)
    show(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


def show(result: dict) -> None:
    for key, where in (("heal_local", "local"), ("heal_docker", "docker")):
        if key in result:
            heal = result[key]
            print(f"kill -9 to answering again ({where}, {heal['kills']} kills, the runtime asked first): "
                  f"p50 {heal['p50_s']} s, max {heal['max_s']} s")
    if "supervisor_rss_kb" in result.get("heal_local", {}):
        heal = result["heal_local"]
        print(f"supervisor: RSS {heal['supervisor_rss_kb'] / 1024:.1f} MiB, idle CPU "
              f"{heal['supervisor_idle_cpu_percent']} % over {heal['idle_s']:g} s")
    if result.get("rollout_local"):
        print("\n| agents | batch | batches | rollout s |\n|---:|---:|---:|---:|")
        for row in result["rollout_local"]:
            print(f"| {row['agents']} | {row['batch']} | {row['batches']} | {row['seconds']} |")
    if result.get("rollout_supervised"):
        print("\nwith fleet.heal --watch running:\n| agents | batch | exit | outcomes | rollout s | lost locks |"
              "\n|---:|---:|---:|---|---:|---:|")
        for row in result["rollout_supervised"]:
            print(f"| {row['agents']} | {row['batch']} | {row['exit']} | {', '.join(row['outcomes'])} | "
                  f"{row['seconds']} | {row['lost_locks']} |")

if __name__ == "__main__":
    main()
