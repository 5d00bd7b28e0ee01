"""Where the broker's time goes in a broadcast: its system calls and a CPU profile.

    .venv/bin/python bench/broker_profile.py [--agents 10000]      # needs strace and perf, as root

Starts the bench broker and simulated fleet (bench/fleet_bench.py's), makes
broadcasts inside a standing status subscription, and meanwhile
  * counts the broker's system calls during one broadcast (``strace -c``),
  * samples its CPU during three (``perf record``) and prints the share of
    kernel, Mosquitto and libc, and the top symbols.
Mosquitto is single-threaded: its CPU per broadcast is the floor of the
broadcast's wall time however fast the manager is.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fleet_bench

from hatchery.bus import commands as fleet
from hatchery.bus.client import BusClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10000)
    args = parser.parse_args()
    missing = [tool for tool in ("strace", "perf") if not shutil.which(tool)]
    if missing:
        raise SystemExit(f"bench: needs {' and '.join(missing)} (apt-get install strace linux-perf)")
    count = args.agents
    with tempfile.TemporaryDirectory(prefix="hatchery-broker-profile-") as tmp:
        broker, port = fleet_bench.start_broker(Path(tmp), count)
        try:
            sim, _ = fleet_bench.start_simfleet(port, count, "profile")
            try:
                inv = fleet_bench.inventory_for(port, count, "profile")
                with BusClient("127.0.0.1", port) as bus, bus.standing_status(timeout=60):
                    collect = lambda: fleet.collect(inv, timeout=60, bus=bus)  # noqa: E731
                    collect()
                    syscalls = Path(tmp) / "strace.txt"
                    with attached(["strace", "-c", "-f", "-o", str(syscalls), "-p", str(broker.pid)]):
                        collect()
                    samples = Path(tmp) / "perf.data"
                    with attached(["perf", "record", "-o", str(samples), "-p", str(broker.pid)]):
                        for _ in range(3):
                            collect()
                print(f"broker system calls during one {count}-agent broadcast:")
                print(syscalls.read_text())
                print("broker CPU samples by binary, then by symbol (three broadcasts):")
                for sort in ("dso", "symbol"):
                    report = subprocess.run(["perf", "report", "-i", str(samples), "--no-children",
                                             "--sort", sort, "--stdio", "-g", "none"],
                                            capture_output=True, text=True).stdout
                    lines = [li for li in report.splitlines() if "%" in li and not li.startswith("#")]
                    print("\n".join(lines[:12 if sort == "symbol" else 5]))
            finally:
                sim.stdin.close()
                fleet_bench.stop(sim)
        finally:
            fleet_bench.stop(broker)


class attached:
    """A tracer attached to the broker for the block (given a second to attach)."""

    def __init__(self, argv: list):
        self.argv = argv

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
