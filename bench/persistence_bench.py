"""What saving retained state more often costs the broker: CPU and memory.

    .venv/bin/python bench/persistence_bench.py [--agents 1000] [--rate 200] [--seconds 15]

Starts a real Mosquitto on a free loopback port for each persistence setting,
publishes retained heartbeats (about 200 bytes, QoS 1) for --agents distinct
agents at --rate messages per second for --seconds, and reads the broker's
CPU time and peak resident memory from /proc. Prints a markdown table and
writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent_kit import contract  # noqa: E402
from fleet_bench import cpu_seconds  # noqa: E402
from hatchery.core.ports import free_port, wait_until  # noqa: E402

SETTINGS = {
    "autosave_interval 60 (before)": "autosave_interval 60\n",
    "autosave_interval 5 (chosen)": "autosave_interval 5\n",
    "autosave_interval 1": "autosave_interval 1\n",
    "autosave_on_changes, every 100 changes": "autosave_on_changes true\nautosave_interval 100\n",
    "autosave_on_changes, every 10 changes": "autosave_on_changes true\nautosave_interval 10\n",
    "autosave_on_changes, every change": "autosave_on_changes true\nautosave_interval 1\n",
}


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run(setting: str, agents: int, rate: float, seconds: float) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="hatchery-persist-"))
    port = free_port()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {user}\n"
                    f"persistence true\npersistence_location {workdir}/\n{setting}"
                    "log_dest none\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("127.0.0.1", port)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.max_inflight_messages_set(100)
        client.connect("127.0.0.1", port)
        client.loop_start()
        names = [f"bench-{i:05d}" for i in range(agents)]
        cpu_before, started, sent = cpu_seconds([broker.pid]), time.monotonic(), 0
        while time.monotonic() - started < seconds:
            name = names[sent % agents]
            beat = contract.make_heartbeat(name, True, float(sent), mem_kb=20000, cpu=0.1,
                                           errors={"dropped": 0}, interval=30.0, version="1.0.0")
            info = client.publish(contract.topic(name, "heartbeat"), contract.encode(beat), 1, True)
            sent += 1
            if sent % 100 == 0:
                info.wait_for_publish(10)
            pause = started + sent / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        info.wait_for_publish(10)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds([broker.pid]) - cpu_before
        result = {"setting": setting.strip().replace("\n", "; "), "messages": sent,
                  "msg_per_s": round(sent / elapsed, 1),
                  "broker_cpu_percent": round(100 * cpu / elapsed, 2),
                  "broker_peak_rss_kb": peak_rss_kb(broker.pid),
                  "db_bytes": (workdir / "mosquitto.db").stat().st_size
                  if (workdir / "mosquitto.db").exists() else 0}
        client.disconnect()
        client.loop_stop()
        return result
    finally:
        broker.kill()
        broker.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="retained heartbeats per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "persistence_bench.json"))
    args = parser.parse_args()
    rows = [dict(run(setting, args.agents, args.rate, args.seconds), name=name)
            for name, setting in SETTINGS.items()]
    print(f"{args.agents} agents, {args.rate:g} retained heartbeats/s, {args.seconds:g} s each\n")
    print("| persistence | msg/s | broker CPU | broker peak RSS | db size |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['msg_per_s']} | {row['broker_cpu_percent']} % | "
              f"{row['broker_peak_rss_kb'] / 1024:.1f} MiB | {row['db_bytes'] / 1024:.0f} KiB |")
    Path(args.out).write_text(json.dumps({"agents": args.agents, "rate": args.rate,
                                          "seconds": args.seconds, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
