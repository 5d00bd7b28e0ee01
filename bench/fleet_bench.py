"""Fleet benchmark: the control side against 1,000 and 10,000 simulated agents.

For each fleet size it starts a fresh Mosquitto (fd limit raised,
``max_connections -1``) and ``bench/simfleet.py`` (lean agents, in as many
processes as it decides), then measures with the real library:

- broadcast health-check (``fleet.collect``) until every reply is in: p50 / p99,
- CPU per reply during those broadcasts, for the manager (this process), the
  broker and the simulator (all its processes): CPU time / replies, in µs,
- ``monitor.snapshot`` and ``health.bus_health``,
- the broker's RSS,
- the single-agent command round trip (p50 / p99),
- the article's shell way on the same broker and fleet (a ``mosquitto_sub``
  and a ``mosquitto_pub`` process per agent, one agent after another: see
  ``bench/baselines.py``), sampled on a few agents and extrapolated.

With ``--mqtt 5,3.1.1`` the manager and the agents speak each protocol in
turn, in one run, so the two can be compared.

    .venv/bin/python bench/fleet_bench.py [--sizes 1000,10000] [--mqtt 5,3.1.1] [--out F]

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

import paho.mqtt.client as paho  # noqa: E402

from hatchery.bus import commands as fleet  # noqa: E402
from hatchery.bus.client import BusClient  # noqa: E402
from hatchery.configs.broker import SYS_INTERVAL  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory  # noqa: E402
from hatchery.observe import (
    health,
    monitor,  # noqa: E402
)
from hatchery.provision.credentials import plan_auth, signing_keys, user_secret  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SIMFLEET = ROOT / "bench" / "simfleet.py"
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


def percentile(samples: list, pct: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(func) -> tuple:
    started = time.perf_counter()
    value = func()
    return value, (time.perf_counter() - started) * 1000


def timeout_for(count: int) -> float:
    """Generous: a round that times out measures the timeout, not the fleet."""
    return max(10.0, count / 250)


def broadcasts(inv: Inventory, bus: BusClient, rounds: int, pids: dict) -> dict:
    """``rounds`` broadcasts, all-in times and CPU µs per reply for each process."""
    times, answered = [], []
    timeout = timeout_for(len(inv.agents))
    before = {who: cpu_seconds(p) for who, p in pids.items()}
    manager_before = time.process_time()
    for _ in range(rounds):
        result, ms = timed(lambda: fleet.collect(inv, timeout=timeout, bus=bus))
        times.append(ms)
        answered.append(len(result.answered))
    replies = max(1, sum(answered))
    cpu = {who: (cpu_seconds(p) - before[who]) / replies * 1e6 for who, p in pids.items()}
    cpu["manager"] = (time.process_time() - manager_before) / replies * 1e6
    return {
        "broadcast_all_in_ms_p50": round(percentile(times, 50), 2),
        "broadcast_all_in_ms_p99": round(percentile(times, 99), 2),
        "broadcast_answered_min": min(answered),
        "broadcast_rounds_ms": [round(m, 1) for m in times],
        **{f"cpu_us_per_reply_{who}": round(us, 1) for who, us in cpu.items()},
    }


def measure(inv: Inventory, bus: BusClient, pids: dict) -> dict:
    rounds = BROADCAST_ROUNDS if len(inv.agents) <= 1000 else 5
    figures = broadcasts(inv, bus, rounds, pids)
    timeout = timeout_for(len(inv.agents))
    snaps = [timed(lambda: monitor.snapshot(inv, bus, timeout=timeout))
             for _ in range(SNAPSHOT_ROUNDS)]
    reports = [timed(lambda: health.bus_health(inv, bus, timeout=timeout))
               for _ in range(SNAPSHOT_ROUNDS)]
    figures.update(exporter(inv, bus))
    one = [next(iter(inv.agents))]
    rtts = [bus.request(one, "health-check", timeout=5.0)[0].rtt_ms for _ in range(RTT_SAMPLES)]
    # the fewest agents any snapshot saw: a marker that overtook retained messages shows here
    online = min(sum(row["state"] == "online" for row in snap.rows()) for snap, _ in snaps)
    return {
        **figures,
        "snapshot_ms_median": round(statistics.median(ms for _, ms in snaps), 2),
        "snapshot_ms_max": round(max(ms for _, ms in snaps), 2),
        "snapshot_online": online,
        "bus_health_ms_median": round(statistics.median(ms for _, ms in reports), 2),
        "bus_health_online": min(sum(a.verdict == "online" for a in report.agents)
                                  for report, _ in reports),
        "rtt_ms_p50": round(percentile([r for r in rtts if r is not None], 50), 3),
        "rtt_ms_p99": round(percentile([r for r in rtts if r is not None], 99), 3),
        "rtt_answered": sum(r is not None for r in rtts),
    }


def exporter(inv: Inventory, bus: BusClient) -> dict:
    """The exporter's work at this size: fold every retained message, then one scrape."""
    from prometheus_client import generate_latest

    from hatchery.observe.exporter import BusMetrics, exporter_filters, registry_for
    messages = bus.retained_messages(exporter_filters(inv.manager),
                                     timeout=timeout_for(len(inv.agents)))
    metrics = BusMetrics(inv)
    _, fold_ms = timed(lambda: [metrics.observe(m) for m in messages])
    registry = registry_for(metrics)
    scrapes = [timed(lambda: generate_latest(registry)) for _ in range(3)]
    return {"exporter_fold_ms": round(fold_ms, 1), "exporter_messages": len(messages),
            "exporter_scrape_ms": round(statistics.median(ms for _, ms in scrapes), 1),
            "exporter_scrape_kb": round(len(scrapes[0][0]) / 1024)}


def shell_way(port: int, names: list) -> dict:
    """The article's ``bus-command`` loop on a sample of agents, extrapolated to all."""
    import baselines  # a sibling script; imported late (it imports this module)
    result = baselines.shell_way(port, names[:SHELL_SAMPLE], budget_s=600, sample=SHELL_SAMPLE)
    return {"shell_way_ms": round(result.measured_ms * len(names) / max(result.asked, 1), 1),
            "shell_way_asked": result.asked, "shell_way_answered": result.answered}


OFF, ACL, SIGNED = "off", "acl", "signed"


def bench_size(count: int, mode: str = OFF, mqtt: str = "5", shell: bool = True) -> dict:
    """One fleet size. ``acl``: every client logs in and the ACL is enforced;
    ``signed``: also every command is signed and verified by the simulated
    agents (all 1,000 verify on ONE simulator core, unlike a real fleet)."""
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
                inv = inventory_for(port, count, manager, auth=auth, state_dir=state)
                pids = {"broker": [broker.pid], "simulator": sim.sim_pids}
                with _bus(inv, signed, mqtt) as bus:
                    figures = measure(inv, bus, pids)
                if shell:
                    figures.update(shell_way(port, list(inv.agents)))
                figures.update(agents=count, auth=mode, mqtt=mqtt, simfleet_ramp_s=ramp_s,
                               simfleet_procs=len(sim.sim_pids),
                               broker_rss_kb_idle=idle_rss, broker_rss_kb=rss_kb(broker.pid))
                return figures
            finally:
                sim.stdin.close()
                stop(sim)
        finally:
            stop(broker)


def _bus(inv: Inventory, signed: bool, mqtt: str = "5") -> BusClient:
    protocol = paho.MQTTv5 if mqtt == "5" else paho.MQTTv311
    client_id = f"{inv.manager}-bench-{secrets.token_hex(4)}"    # a fixed id can be kicked
    if not inv.broker.auth:
        return BusClient("127.0.0.1", inv.broker.port, client_id=client_id, protocol=protocol)
    return BusClient("127.0.0.1", inv.broker.port, client_id=client_id,
                     username=inv.manager, password=user_secret(inv, inv.manager),
                     signing_keys=signing_keys(inv) if signed else None, protocol=protocol)


COLUMNS = [("agents", "agents"), ("auth", "auth"), ("mqtt", "MQTT"),
           ("broadcast_all_in_ms_p50", "broadcast all-in ms p50"),
           ("broadcast_all_in_ms_p99", "p99"), ("broadcast_answered_min", "answered (min)"),
           ("cpu_us_per_reply_manager", "CPU µs/reply manager"),
           ("cpu_us_per_reply_broker", "broker"), ("cpu_us_per_reply_simulator", "simulator"),
           ("shell_way_ms", "shell way ms (extrapolated)"),
           ("snapshot_ms_median", "snapshot ms"), ("snapshot_online", "online seen (min)"),
           ("bus_health_ms_median", "bus-health ms"), ("exporter_fold_ms", "exporter fold ms"),
           ("exporter_scrape_ms", "scrape ms"), ("broker_rss_kb", "broker RSS kB"),
           ("rtt_ms_p50", "1-agent RTT p50 ms"), ("rtt_ms_p99", "p99 ms")]


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
    parser.add_argument("--repeat", type=int, default=1, help="run each size and mode N times, interleaved")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.auth.split(",")]
    if not set(modes) <= {OFF, ACL, SIGNED}:
        parser.error(f"--auth takes off, acl, signed; got {args.auth}")
    protocols = [m.strip() for m in args.mqtt.split(",")]
    if not set(protocols) <= {"5", "3.1.1"}:
        parser.error(f"--mqtt takes 5, 3.1.1; got {args.mqtt}")
    results = [bench_size(int(n), mode, mqtt, shell=not args.no_shell)
               for n in args.sizes.split(",") for _ in range(args.repeat)
               for mode in modes for mqtt in protocols]
    document = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "mosquitto": _mosquitto_version()},
                "results": results}
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
    print(markdown(results))
    return 0


def _mosquitto_version() -> str:
    out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5).stdout
    return out.splitlines()[0] if out else "unknown"


if __name__ == "__main__":
    sys.exit(main())
