"""Benchmark the command handler on a real Mosquitto (not collected by pytest).

    .venv/bin/python tests/agent_kit/bench_handler.py [--n 1000]

Prints one JSON object: handler time per health-check (in process, median and
p99), the QoS 1 command->reply round trip through the broker to a handler
subprocess (p50/p99), and that subprocess's RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]  # a script, not under pytest

from akhelpers import Probe, unique_name  # noqa: E402

from agent_kit import contract  # noqa: E402
from agent_kit.config import AgentConfig  # noqa: E402
from agent_kit.handler import CommandHandler  # noqa: E402


def load_fixtures():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def handler_time(broker, n: int) -> dict:
    """Time handle_message() for health-checks on a connected in-process handler."""
    handler = CommandHandler(AgentConfig(name=unique_name(), broker_host=broker.host,
                                         broker_port=broker.port))
    handler.start()
    assert handler.wait_connected(5)
    topic = handler.topics["command"]
    payloads = [contract.encode(contract.make_command("health-check", uuid.uuid4().hex))
                for _ in range(n)]
    samples = []
    for payload in payloads:
        started = time.perf_counter_ns()
        handler.handle_message(topic, payload)
        samples.append((time.perf_counter_ns() - started) / 1000)
        time.sleep(0.0005)  # let the network thread drain, as between real commands
    handler.stop()
    return {"handler_us_median": round(statistics.median(samples), 1),
            "handler_us_p99": round(percentile(samples, 0.99), 1)}


def round_trip(broker, n: int, workdir: Path) -> dict:
    """QoS 1 command -> reply through the broker to a handler subprocess."""
    name = unique_name()
    config = workdir / "agent.json"
    config.write_text(json.dumps({"name": name, "broker": {"host": broker.host,
                                                           "port": broker.port}}))
    env = dict(os.environ, PYTHONPATH=str(ROOT), HATCHERY_AGENT_CONFIG=str(config))
    proc = subprocess.Popen([sys.executable, "-m", "agent_kit.handler"], env=env,
                            stderr=subprocess.DEVNULL)
    probe = Probe(broker.host, broker.port)
    try:
        probe.subscribe(contract.topic(name, "status"))
        probe.wait_for(contract.topic(name, "status"), lambda p: p.get("state") == "online", 10)
        samples = []
        for _ in range(n):
            command = contract.make_command("health-check", uuid.uuid4().hex)
            started = time.perf_counter()
            probe.client.publish(contract.topic(name, "command"), contract.encode(command), qos=1)
            probe.reply_to(name, command["id"], timeout=5)
            samples.append((time.perf_counter() - started) * 1000)
            with probe._cond:  # keep the probe's scan short
                probe.messages.clear()
        rss = rss_kb(proc.pid)
    finally:
        probe.close()
        proc.terminate()
        proc.wait(10)
    return {"rtt_ms_p50": round(percentile(samples, 0.50), 3),
            "rtt_ms_p99": round(percentile(samples, 0.99), 3),
            "handler_rss_kb": rss}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    fixtures = load_fixtures()
    with tempfile.TemporaryDirectory() as tmp:
        broker = fixtures.start_broker(Path(tmp) / "broker")
        try:
            result = {"n": args.n, **handler_time(broker, args.n),
                      **round_trip(broker, args.n, Path(tmp))}
        finally:
            broker.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
