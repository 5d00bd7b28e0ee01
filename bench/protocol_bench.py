"""MQTT 3.1.1 against MQTT 5, for the manager and for the agent's handler, in one run.

For each protocol, on one fresh Mosquitto, in this process:

- the **handler**: the real ``agent_kit.handler.CommandHandler``, its messages
  arriving through a paho client made by the one factory
  (``agent_kit.bus.new_client``) at that protocol;
- the **manager**: the real ``BusClient`` at that protocol.

It sends ``--n`` single-agent health-checks (``BusClient.request``) and
reads the CPU time of each side's threads from ``/proc/self/task`` (the
manager: the calling thread plus its network thread; the handler: its network
thread, which answers health-checks itself). Then the same for a broadcast
to 1,000 simulated agents (``bench/simfleet.py``), where the manager receives
one reply per agent.

    .venv/bin/python bench/protocol_bench.py [--n 500] [--agents 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import fleet_bench  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from agent_kit import bus  # noqa: E402
from agent_kit.config import AgentConfig  # noqa: E402
from agent_kit.handler import CommandHandler  # noqa: E402
from hatchery.bus import commands as fleet  # noqa: E402
from hatchery.bus.client import BusClient  # noqa: E402

PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(*native_ids: int) -> float:
    """CPU seconds (user + system) of these threads of this process."""
    total = 0
    for tid in native_ids:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def network_thread(client: mqtt.Client) -> int:
    return client._thread.native_id     # paho's loop_start thread


def handler_at(port: int, name: str, protocol: int) -> tuple:
    """A real CommandHandler whose messages arrive through a client at ``protocol``."""
    handler = CommandHandler(AgentConfig(name=name, broker_host="127.0.0.1", broker_port=port))
    client = bus.new_client(f"hatchery-agent-{name}", protocol=protocol)
    client.on_message = handler._on_message          # the handler's own entry point
    handler.client = client                            # ...and its replies go out on it
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: (c.subscribe(handler.topics["command"], 1),
                                                connected.set())
    bus.connect_and_wait(client, "127.0.0.1", port, timeout=5)
    connected.wait(5)
    time.sleep(0.2)                                    # the SUBACK
    return handler, client


def single_agent(port: int, protocol: int, n: int) -> dict:
    name = f"proto-{secrets.token_hex(3)}"
    handler, agent_client = handler_at(port, name, protocol)
    try:
        with BusClient("127.0.0.1", port, protocol=protocol) as manager:
            manager.request([name], "health-check", timeout=5)     # warm up
            manager_tids = (threading.get_native_id(), manager._link._thread.native_id)
            handler_tid = network_thread(agent_client)
            before = thread_cpu(*manager_tids), thread_cpu(handler_tid)
            rtts = [manager.request([name], "health-check", timeout=5)[0].rtt_ms
                    for _ in range(n)]
            after = thread_cpu(*manager_tids), thread_cpu(handler_tid)
    finally:
        agent_client.disconnect()
        agent_client.loop_stop()
    answered = [r for r in rtts if r is not None]
    return {"single_rtt_ms_p50": round(statistics.median(answered), 3),
            "single_answered": len(answered),
            "single_manager_cpu_us_per_request": round((after[0] - before[0]) / n * 1e6, 1),
            "single_handler_cpu_us_per_command": round((after[1] - before[1]) / n * 1e6, 1)}


def broadcast(port: int, protocol_name: str, agents: int, rounds: int = 10) -> dict:
    manager_name = f"proto-{secrets.token_hex(3)}"
    sim, _ = fleet_bench.start_simfleet(port, agents, manager_name, mqtt=protocol_name)
    try:
        inv = fleet_bench.inventory_for(port, agents, manager_name)
        with BusClient("127.0.0.1", port, protocol=PROTOCOLS[protocol_name]) as manager:
            fleet.collect(inv, timeout=10, bus=manager)        # warm up
            tids = (threading.get_native_id(), manager._link._thread.native_id)
            before, walls, answered = thread_cpu(*tids), [], 0
            for _ in range(rounds):
                result, ms = fleet_bench.timed(lambda: fleet.collect(inv, timeout=10, bus=manager))
                walls.append(ms)
                answered += len(result.answered)
            cpu = thread_cpu(*tids) - before
    finally:
        sim.stdin.close()
        fleet_bench.stop(sim)
    return {"broadcast_all_in_ms_p50": round(statistics.median(walls), 1),
            "broadcast_manager_cpu_us_per_reply": round(cpu / max(answered, 1) * 1e6, 1)}


def run(protocol_name: str, n: int, agents: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="hatchery-proto-") as tmp:
        broker, port = fleet_bench.start_broker(Path(tmp), agents)
        try:
            figures = {"mqtt": protocol_name,
                       **single_agent(port, PROTOCOLS[protocol_name], n)}
            if agents:
                figures.update(broadcast(port, protocol_name, agents))
            return figures
        finally:
            fleet_bench.stop(broker)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="single-agent requests")
    parser.add_argument("--agents", type=int, default=1000, help="broadcast fleet size (0: skip)")
    parser.add_argument("--repeat", type=int, default=2, help="alternate the protocols N times")
    args = parser.parse_args(argv)
    rows = [run(p, args.n, args.agents) for _ in range(args.repeat) for p in PROTOCOLS]
    print(json.dumps(rows, indent=1))
    keys = [k for k in rows[0] if k != "mqtt"]
    print("| MQTT | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for row in rows:
        print(f"| {row['mqtt']} | " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
