"""Fleet benchmark: the control side against 10, 100 and 1,000 simulated agents.

For each fleet size it starts a fresh Mosquitto (fd limit raised,
``max_connections -1``) and ``bench/simfleet.py`` in its own process, then
measures with the real library:

- broadcast health-check (``fleet.collect``) until every reply is in,
- ``monitor.snapshot`` and ``health.bus_health``,
- the broker's RSS,
- the single-agent command round trip (p50 / p99).

    .venv/bin/python bench/fleet_bench.py [--sizes 10,100,1000] [--out bench.json]

Writes JSON to ``--out`` (and stdout with ``--json``) and a markdown table to stdout.
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

from hatchery.bus import commands as fleet
from hatchery.bus.client import BusClient  # noqa: E402
from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory  # noqa: E402
from hatchery.observe import (
    health,
    monitor,  # noqa: E402
)
from hatchery.provision.credentials import plan_auth, signing_keys, user_secret  # noqa: E402

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SIMFLEET = ROOT / "bench" / "simfleet.py"
BROADCAST_ROUNDS = 7
SNAPSHOT_ROUNDS = 7
RTT_SAMPLES = 300


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
                    f"user {user}\nlog_dest stdout\nlog_type error\nlog_type warning\n")
    log = (workdir / "mosquitto.log").open("ab")
    # The broker's connection limit is its fd limit (FIELD-NOTES): raise it first.
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_raise_nofile(agents * 2 + 1024), start_new_session=True)
    wait_port(port)
    return proc, port


def start_simfleet(port: int, count: int, manager: str, secrets_dir: Optional[Path] = None,
                   signed: bool = True) -> subprocess.Popen:
    extra = ["--secrets-dir", str(secrets_dir)] if secrets_dir else []
    extra += [] if signed else ["--unsigned"]
    proc = subprocess.Popen([sys.executable, str(SIMFLEET), "--port", str(port),
                             "--count", str(count), "--manager", manager,
                             "--stop-on-stdin-eof", "--prefix", "sim", *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    ready = json.loads(line) if line else {}
    if ready.get("ready") != count:
        stop(proc)
        raise RuntimeError(f"simfleet: only {ready.get('ready')} of {count} agents came up")
    return proc, ready["seconds"]


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


def measure(inv: Inventory, bus: BusClient) -> dict:
    broadcasts = []
    for _ in range(BROADCAST_ROUNDS):
        result, ms = timed(lambda: fleet.collect(inv, timeout=10.0, bus=bus))
        broadcasts.append((ms, len(result.answered)))
    snaps = [timed(lambda: monitor.snapshot(inv, bus)) for _ in range(SNAPSHOT_ROUNDS)]
    reports = [timed(lambda: health.bus_health(inv, bus)) for _ in range(SNAPSHOT_ROUNDS)]
    one = [next(iter(inv.agents))]
    rtts = [bus.request(one, "health-check", timeout=5.0)[0].rtt_ms for _ in range(RTT_SAMPLES)]
    # the fewest agents any snapshot saw: a marker that overtook retained messages shows here
    online = min(sum(v.state == "online" for v in snap.agents.values()) for snap, _ in snaps)
    return {
        "broadcast_all_in_ms_median": round(statistics.median(m for m, _ in broadcasts), 2),
        "broadcast_all_in_ms_max": round(max(m for m, _ in broadcasts), 2),
        "broadcast_answered_min": min(n for _, n in broadcasts),
        "broadcast_rounds_ms": [round(m, 1) for m, _ in broadcasts],
        "snapshot_ms_median": round(statistics.median(ms for _, ms in snaps), 2),
        "snapshot_ms_max": round(max(ms for _, ms in snaps), 2),
        "snapshot_online": online,
        "bus_health_ms_median": round(statistics.median(ms for _, ms in reports), 2),
        "bus_health_healthy": min(sum(a.verdict == "healthy" for a in report.agents)
                                  for report, _ in reports),
        "rtt_ms_p50": round(percentile([r for r in rtts if r is not None], 50), 3),
        "rtt_ms_p99": round(percentile([r for r in rtts if r is not None], 99), 3),
        "rtt_answered": sum(r is not None for r in rtts),
    }


OFF, ACL, SIGNED = "off", "acl", "signed"


def bench_size(count: int, mode: str = OFF) -> dict:
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
                                         signed)
            try:
                inv = inventory_for(port, count, manager, auth=auth, state_dir=state)
                with _bus(inv, signed) as bus:
                    figures = measure(inv, bus)
                figures.update(agents=count, auth=mode, simfleet_ramp_s=ramp_s,
                               broker_rss_kb_idle=idle_rss, broker_rss_kb=rss_kb(broker.pid))
                return figures
            finally:
                sim.stdin.close()
                stop(sim)
        finally:
            stop(broker)


def _bus(inv: Inventory, signed: bool) -> BusClient:
    if not inv.broker.auth:
        return bus_for(inv)
    client_id = f"{inv.manager}-bench-{secrets.token_hex(4)}"    # a fixed id can be kicked
    return BusClient("127.0.0.1", inv.broker.port, client_id=client_id,
                     username=inv.manager, password=user_secret(inv, inv.manager),
                     signing_keys=signing_keys(inv) if signed else None)


COLUMNS = [("agents", "agents"), ("auth", "auth"), ("broadcast_all_in_ms_median", "broadcast all-in ms (median)"),
           ("broadcast_all_in_ms_max", "max"), ("broadcast_answered_min", "answered (min)"),
           ("snapshot_ms_median", "snapshot ms"), ("snapshot_online", "online seen (min)"),
           ("bus_health_ms_median", "bus-health ms"), ("broker_rss_kb", "broker RSS kB"),
           ("rtt_ms_p50", "1-agent RTT p50 ms"), ("rtt_ms_p99", "p99 ms")]


def markdown(results: list) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in results:
        lines.append("| " + " | ".join(str(row.get(key, "-")) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
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
    results = [bench_size(int(n), mode) for n in args.sizes.split(",")
               for _ in range(args.repeat) for mode in modes]
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
