"""Fleet benchmark: the control side against 1,000 and 10,000 simulated agents.

For each fleet size it starts a fresh Mosquitto (fd limit raised,
``max_connections -1``) and ``bench/simfleet.py`` (lean agents, in as many
processes as it decides), then measures with the real library, in a process
of its own (``bench/fleet_worker.py``):

- broadcast health-check (``fleet.collect``) until every reply is in: p50 / p99,
  and the same inside a standing status subscription (``standing_*``: what
  long-running roles do) where the code has one,
- CPU per reply during those broadcasts, for the manager (the worker), the
  broker and the simulator (all its processes): CPU time / replies, in µs,
- ``monitor.snapshot`` and ``health.bus_health``, the exporter's fold and scrape,
- the broker's RSS,
- the single-agent command round trip (p50 / p99),
- with ``--cli``: the CPU of whole ``hatchery fleet.collect`` processes over
  every agent and over one (what the fleet's size adds to the command),
- the article's shell way on the same broker and fleet (a ``mosquitto_sub``
  and a ``mosquitto_pub`` process per agent, one agent after another: see
  ``bench/baselines.py``), sampled on a few agents and extrapolated.

With ``--mqtt 5,3.1.1`` the manager and the agents speak each protocol in
turn, in one run, so the two can be compared. With ``--baseline REF`` the
code of REF (unpacked by ``bench/coderefs.py``) is measured too, against the
same broker and fleet, alternating with the working tree ``--repeat`` times;
each figure is the median of its code's runs.

    .venv/bin/python bench/fleet_bench.py [--sizes 1000,10000] [--mqtt 5,3.1.1] [--out F]
    .venv/bin/python bench/fleet_bench.py --sizes 1000,10000 --no-shell --baseline main --repeat 3 --cli

Wall-clock figures depend on what else the machine runs; the CPU per reply
figures much less so. Writes JSON to ``--out`` (and stdout with ``--json``)
and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import coderefs  # noqa: E402  (a sibling script)

from hatchery.configs.broker import SYS_INTERVAL  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory  # noqa: E402
from hatchery.provision.credentials import plan_auth  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SIMFLEET = ROOT / "bench" / "simfleet.py"
WORKER = ROOT / "bench" / "fleet_worker.py"
BROADCAST_ROUNDS = 15
SNAPSHOT_ROUNDS = 5
RTT_SAMPLES = 300
SHELL_SAMPLE = 20          # agents asked the shell way; the fleet's time is extrapolated
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"mosquitto did not listen on {port}")


def _raise_nofile(limit: int):
    def preexec():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return preexec


def start_broker(workdir: Path, agents: int, auth=None) -> tuple:
    """``auth``: a hatchery FleetAuth; its password and ACL files are written and enforced."""
    port = free_port()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf = workdir / "mosquitto.conf"
    access = "allow_anonymous true\n"
    if auth is not None:
        (workdir / "passwd").write_text(auth.password_text())
        (workdir / "acl").write_text(auth.acl_text())
        access = (f"per_listener_settings false\nallow_anonymous false\n"
                  f"password_file {workdir}/passwd\nacl_file {workdir}/acl\n")
    conf.write_text(f"listener {port} 127.0.0.1\n{access}set_tcp_nodelay true\n"
                    "max_connections -1\nmax_packet_size 65536\npersistence false\n"
                    # as the rendered config: bus-health dates a broker restart by
                    # $SYS/broker/uptime, which Mosquitto publishes every sys_interval
                    f"sys_interval {SYS_INTERVAL}\n"
                    f"user {user}\nlog_dest stdout\nlog_type error\nlog_type warning\n")
    log = (workdir / "mosquitto.log").open("ab")
    # The broker's connection limit is its fd limit (FIELD-NOTES): raise it first.
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_raise_nofile(agents * 2 + 1024), start_new_session=True)
    wait_port(port)
    return proc, port


def start_simfleet(port: int, count: int, manager: str, secrets_dir: Optional[Path] = None,
                   signed: bool = True, mqtt: str = "5") -> tuple:
    """(process, seconds to bring every agent up); ``process.sim_pids``: every
    process that serves agents (for CPU accounting)."""
    extra = ["--secrets-dir", str(secrets_dir)] if secrets_dir else []
    extra += [] if signed else ["--unsigned"]
    extra += ["--mqtt", mqtt]
    proc = subprocess.Popen([sys.executable, str(SIMFLEET), "--port", str(port),
                             "--count", str(count), "--manager", manager,
                             "--stop-on-stdin-eof", "--prefix", "sim", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    ready = json.loads(line) if line else {}
    if ready.get("ready") != count:
        stop(proc)
        raise RuntimeError(f"simfleet: only {ready.get('ready')} of {count} agents came up")
    proc.sim_pids = ready.get("pids") or [proc.pid]
    return proc, ready["seconds"]


def cpu_seconds(pids: list) -> float:
    """User + system CPU of these processes so far (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])     # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def rss_kb(pid: int) -> Optional[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def inventory_for(port: int, count: int, manager: str, *, auth: bool = False,
                  state_dir: Path = Path("/nonexistent/.hatchery")) -> Inventory:
    agents = {n: AgentSpec(n) for n in (f"sim-{i:04d}" for i in range(count))}
    return Inventory(state_dir.parent / "bench.yaml", manager=manager,
                     broker=BrokerSpec(host="127.0.0.1", port=port, auth=auth), agents=agents,
                     state_dir=state_dir)


def timed(func) -> tuple:
    started = time.perf_counter()
    value = func()
    return value, (time.perf_counter() - started) * 1000


def run_worker(tree: Optional[Path], spec: dict) -> dict:
    """bench/fleet_worker.py under ``tree``'s code (None: the working tree): its figures."""
    done = subprocess.run([sys.executable, str(WORKER), json.dumps(spec)], capture_output=True,
                          text=True, env=coderefs.code_env(tree), cwd=tempfile.gettempdir(),
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"fleet_worker failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_figures(runs: list) -> dict:
    """Per figure, the median over interleaved runs of one code (lists and text: the first)."""
    merged = {}
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        merged[key] = round(statistics.median(numbers), 2) if len(numbers) == len(values) \
            else values[0]
    merged["runs"] = len(runs)
    return merged


def shell_way(port: int, names: list) -> dict:
    """The article's ``bus-command`` loop on a sample of agents, extrapolated to all."""
    import baselines  # a sibling script; imported late (it imports this module)
    result = baselines.shell_way(port, names[:SHELL_SAMPLE], budget_s=600, sample=SHELL_SAMPLE)
    return {"shell_way_ms": round(result.measured_ms * len(names) / max(result.asked, 1), 1),
            "shell_way_asked": result.asked, "shell_way_answered": result.answered}


OFF, ACL, SIGNED = "off", "acl", "signed"


def bench_size(count: int, mode: str = OFF, mqtt: str = "5", shell: bool = True,
               trees: Optional[list] = None, repeat: int = 1, cli: bool = False) -> list:
    """One fleet size, measured by each code tree in turn (interleaved ``repeat`` times).

    ``acl``: every client logs in and the ACL is enforced; ``signed``: also
    every command is signed and verified by the simulated agents (all 1,000
    verify on ONE simulator core, unlike a real fleet)."""
    trees = trees or [("new", None)]
    auth, signed = mode != OFF, mode == SIGNED
    manager = f"bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="hatchery-bench-") as tmp:
        state = Path(tmp) / ".hatchery"
        credentials = None
        if auth:
            credentials = plan_auth(inventory_for(0, count, manager, auth=True, state_dir=state))
            credentials.change().apply()
        broker, port = start_broker(Path(tmp), count, credentials)
        try:
            idle_rss = rss_kb(broker.pid)
            sim, ramp_s = start_simfleet(port, count, manager, state / "secrets" if auth else None,
                                         signed, mqtt)
            try:
                spec = {"port": port, "count": count, "manager": manager, "auth": auth,
                        "signed": signed, "mqtt": mqtt, "state_dir": str(state),
                        "pids": {"broker": [broker.pid], "simulator": sim.sim_pids},
                        "rounds": BROADCAST_ROUNDS if count <= 1000 else 5,
                        "snapshot_rounds": SNAPSHOT_ROUNDS, "rtt_samples": RTT_SAMPLES}
                runs: dict = {label: [] for label, _ in trees}
                for _ in range(repeat):
                    for label, tree in trees:
                        figures = run_worker(tree, spec)
                        if cli:
                            figures.update(cli_collect(tree, Path(tmp), port, count, manager))
                        runs[label].append(figures)
                common = {"agents": count, "auth": mode, "mqtt": mqtt, "simfleet_ramp_s": ramp_s,
                          "simfleet_procs": len(sim.sim_pids), "broker_rss_kb_idle": idle_rss,
                          "broker_rss_kb": rss_kb(broker.pid)}
                if shell:
                    common.update(shell_way(port, list(inventory_for(port, count, manager).agents)))
                return [{**median_figures(runs[label]), **common, "code": label,
                         "commit": coderefs.describe(tree)} for label, tree in trees]
            finally:
                sim.stdin.close()
                stop(sim)
        finally:
            stop(broker)


def cli_collect(tree: Optional[Path], folder: Path, port: int, count: int, manager: str,
                runs: int = 3) -> dict:
    """CPU of whole ``hatchery fleet.collect`` processes over ``count`` agents and over 1
    (back to back, median of ``runs`` differences): what the fleet's size adds."""
    big, one = (write_inventory(folder / f"cli-{n}", port, n, manager) for n in (count, 1))
    timeout = max(10.0, count / 250)       # as fleet_worker's: a timeout measures the timeout
    pairs = [(process_cpu(tree, big, timeout), process_cpu(tree, one, timeout))
             for _ in range(runs)]
    return {"cli_collect_cpu_ms": round(statistics.median(b for b, _ in pairs) * 1000, 1),
            "cli_collect_cpu_ms_one": round(statistics.median(o for _, o in pairs) * 1000, 1),
            "cli_collect_extra_cpu_ms": round(statistics.median(b - o for b, o in pairs) * 1000, 1)}


def write_inventory(folder: Path, port: int, count: int, manager: str) -> Path:
    """An inventory file for the bench broker (anonymous) and the first ``count`` agents."""
    folder.mkdir(parents=True, exist_ok=True)
    names = "".join(f"  sim-{i:04d}: {{}}\n" for i in range(count))
    path = folder / "fleet_inventory.yaml"
    path.write_text(f"fleet:\n  manager: {manager}\nbroker:\n  port: {port}\n  auth: false\n"
                    f"agents:\n{names}")
    return path


def process_cpu(tree: Optional[Path], inventory: Path, timeout: float) -> float:
    """User + system CPU seconds of one ``hatchery fleet.collect`` process (text output)."""
    hatchery = Path(sys.executable).with_name("hatchery")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([str(hatchery), "fleet.collect", "--inventory", str(inventory),
                           "--timeout", str(timeout)],
                          capture_output=True, text=True, env=coderefs.code_env(tree),
                          cwd=inventory.parent, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:      # someone silent: the run is still measured, and said so
        print(f"bench: fleet.collect over {inventory.parent.name} exited {done.returncode}: "
              f"{len(done.stderr.splitlines())} problem line(s)", file=sys.stderr)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


COLUMNS = [("agents", "agents"), ("code", "code"), ("commit", "commit"), ("auth", "auth"),
           ("mqtt", "MQTT"), ("broadcast_all_in_ms_p50", "broadcast all-in ms p50"),
           ("broadcast_all_in_ms_p99", "p99"), ("broadcast_answered_min", "answered (min)"),
           ("broadcast_cpu_us_per_reply_manager", "CPU µs/reply manager"),
           ("broadcast_cpu_us_per_reply_broker", "broker"),
           ("broadcast_cpu_us_per_reply_simulator", "simulator"),
           ("standing_all_in_ms_p50", "standing sub: all-in ms p50"),
           ("standing_cpu_us_per_reply_manager", "CPU µs/reply manager"),
           ("standing_cpu_us_per_reply_broker", "broker"),
           ("standing_cpu_us_per_reply_simulator", "simulator"),
           ("shell_way_ms", "shell way ms (extrapolated)"),
           ("snapshot_ms_median", "snapshot ms"), ("snapshot_read_ms_median", "of which bus read ms"),
           ("snapshot_online", "online seen (min)"),
           ("bus_health_ms_median", "bus-health ms"), ("exporter_fold_ms", "exporter fold ms"),
           ("exporter_scrape_ms", "scrape ms"), ("broker_rss_kb", "broker RSS kB"),
           ("rtt_ms_p50", "1-agent RTT p50 ms"), ("rtt_ms_p99", "p99 ms"),
           ("cli_collect_extra_cpu_ms", "fleet.collect extra CPU ms (vs 1 agent)")]


def markdown(results: list) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in results:
        lines.append("| " + " | ".join(str(row.get(key, "-")) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--mqtt", default="5", help="comma-separated: 5, 3.1.1 (e.g. 5,3.1.1)")
    parser.add_argument("--no-shell", action="store_true", help="skip the shell-way baseline")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    parser.add_argument("--json", action="store_true", help="also print the JSON")
    parser.add_argument("--auth", default=OFF,
                        help="comma-separated modes: off (anonymous), acl (credentials + ACL), "
                             "signed (acl + signed commands); e.g. off,acl,signed")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each code N times per fleet, interleaved; medians reported")
    parser.add_argument("--baseline", default=None, metavar="REF",
                        help="also measure the code of this git ref (e.g. main), same fleet")
    parser.add_argument("--cli", action="store_true",
                        help="also the CPU of whole `hatchery fleet.collect` processes")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.auth.split(",")]
    if not set(modes) <= {OFF, ACL, SIGNED}:
        parser.error(f"--auth takes off, acl, signed; got {args.auth}")
    protocols = [m.strip() for m in args.mqtt.split(",")]
    if not set(protocols) <= {"5", "3.1.1"}:
        parser.error(f"--mqtt takes 5, 3.1.1; got {args.mqtt}")
    trees = coderefs.trees(args.baseline)
    load_before = os.getloadavg()
    results: list = []
    document = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "mosquitto": _mosquitto_version(),
                            "load_before": [round(x, 2) for x in load_before]},
                "results": results}
    for n in args.sizes.split(","):
        for mode in modes:
            for mqtt in protocols:
                results += bench_size(int(n), mode, mqtt, shell=not args.no_shell, trees=trees,
                                      repeat=args.repeat, cli=args.cli)
                document["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
                if args.out:          # after every size: a later failure keeps what was measured
                    args.out.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
    print(markdown(results))
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    return 0


def _mosquitto_version() -> str:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5).stdout
    return out.splitlines()[0] if out else "unknown"


if __name__ == "__main__":
    sys.exit(main())
