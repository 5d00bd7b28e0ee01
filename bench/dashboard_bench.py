"""How fast fleet.dashboard shows a change at 1,000 agents, and what it costs in memory.

Starts a real Mosquitto, ``bench/simfleet.py`` with N simulated agents, a few
real agent handlers (the victims), and ``hatchery fleet.dashboard`` as its own
process. Then, for each victim: SIGKILL it and time until the change is seen
(a) on the page's event stream and, with --browser, (b) in the table of a
headless Chromium. Reports the medians and the dashboard process's RSS.

    .venv/bin/python bench/dashboard_bench.py --count 1000 --victims 5 --browser
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from benchkit import chromium, report, stop_all  # noqa: E402
from fleet_bench import rss_kb, start_broker  # noqa: E402

from hatchery.core.ports import free_port, wait_until  # noqa: E402

HATCHERY = Path(sys.executable).with_name("hatchery")


def write_inventory(path: Path, port: int, manager: str, names: list) -> None:
    lines = ["fleet:", f"  manager: {manager}", f"  state_dir: {path.parent / 'state'}",
             "broker:", "  runtime: local", "  host: 127.0.0.1", f"  port: {port}",
             "  auth: false", "agents:"]
    lines += [f"  {n}: {{}}" for n in names]
    path.write_text("\n".join(lines) + "\n")


def start_victim(work: Path, port: int, manager: str, name: str) -> subprocess.Popen:
    config = work / f"{name}.json"
    config.write_text(json.dumps({"name": name, "manager": manager,
                                  "broker": {"host": "127.0.0.1", "port": port}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCHERY_")}
    env.update(HATCHERY_AGENT_CONFIG=str(config), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "agent_kit.handler"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")


class Stream:
    """An SSE reader on its own thread: the state of each agent, and when it changed."""

    def __init__(self, port: int):
        self.states: dict = {}
        self.changed: dict = {}           # agent -> monotonic time of its last state change
        self.first_full = None            # (seconds to receive, bytes)
        self.cond = threading.Condition()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.monotonic()
        self.conn.request("GET", "/events")
        self.response = self.conn.getresponse()
        self.started = started
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.response:
            if not raw.startswith(b"data: "):
                continue
            event, now = json.loads(raw[6:]), time.monotonic()
            with self.cond:
                if self.first_full is None:
                    self.first_full = (now - self.started, len(raw))
                for row in event["rows"]:
                    if self.states.get(row["agent"]) != row["state"]:
                        self.states[row["agent"]] = row["state"]
                        self.changed[row["agent"]] = now
                self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


def browser_page(url: str):
    driver = chromium()
    started = time.monotonic()
    driver.get(url)
    return driver, started


def page_state(driver, name: str):
    return driver.execute_script(
        "const r = document.querySelector(`tr[data-agent='${arguments[0]}']`);"
        "return r ? r.dataset.state : null;", name)


def until(predicate, timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--victims", type=int, default=5)
    parser.add_argument("--heartbeat-every", type=float, default=30.0,
                        help="simulated agents' heartbeat period (background traffic)")
    parser.add_argument("--browser", action="store_true", help="also time it in headless Chromium")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    manager = "benchmgr"
    victims = [f"victim-{i}" for i in range(args.victims)]
    procs: list = []
    driver = None
    with tempfile.TemporaryDirectory(prefix="dashbench-") as tmp:
        work = Path(tmp)
        broker, port = start_broker(work, args.count + args.victims)
        procs.append(broker)
        try:
            sim = subprocess.Popen([sys.executable, str(ROOT / "bench" / "simfleet.py"),
                                    "--port", str(port), "--count", str(args.count),
                                    "--manager", manager, "--stop-on-stdin-eof",
                                    "--heartbeat-every", str(args.heartbeat_every)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(sim)
            ready = json.loads(sim.stdout.readline() or "{}")
            assert ready.get("ready") == args.count, ready
            names = [f"sim-{i:04d}" for i in range(args.count)] + victims
            write_inventory(work / "fleet.yaml", port, manager, names)
            running = {v: start_victim(work, port, manager, v) for v in victims}
            procs.extend(running.values())
            dash_port = free_port()
            dash = subprocess.Popen([str(HATCHERY), "fleet.dashboard", "--inventory",
                                     str(work / "fleet.yaml"), "--port", str(dash_port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(dash)
            assert wait_until("127.0.0.1", dash_port, timeout=30)
            stream = Stream(dash_port)
            assert stream.wait(lambda: all(stream.states.get(v) == "online" for v in victims)
                               and sum(s == "online" for s in stream.states.values())
                               >= args.count + args.victims, 60), "the fleet never came up"
            figures = {"agents": args.count + args.victims,
                       "first_event_s": round(stream.first_full[0], 4),
                       "first_event_bytes": stream.first_full[1],
                       "rss_kb_one_viewer": rss_kb(dash.pid)}
            if args.browser:
                driver, loaded = browser_page(f"http://127.0.0.1:{dash_port}/")
                assert until(lambda: driver.execute_script(
                    "return document.querySelectorAll('#rows tr').length") >= len(names), 60)
                figures["browser_full_table_s"] = round(time.monotonic() - loaded, 3)
            stream_ms, page_ms = [], []
            for victim in victims:
                killed, killed_wall = time.monotonic(), time.time()
                running[victim].send_signal(signal.SIGKILL)
                running[victim].wait(5)
                assert stream.wait(lambda: stream.states.get(victim) == "offline", 10)
                stream_ms.append((stream.changed[victim] - killed) * 1000)
                if driver:
                    assert until(lambda: page_state(driver, victim) == "offline", 10, 0.05)
                    # the page stamps the change itself: selenium's polling is not counted
                    since = int(driver.execute_script(
                        "return document.querySelector(`tr[data-agent='${arguments[0]}']`)"
                        ".dataset.seen", victim))
                    page_ms.append(since - killed_wall * 1000)
                time.sleep(0.5)
            figures["kill_to_stream_ms_median"] = round(statistics.median(stream_ms), 1)
            figures["kill_to_stream_ms_max"] = round(max(stream_ms), 1)
            if page_ms:
                figures["kill_to_page_ms_median"] = round(statistics.median(page_ms), 1)
                figures["kill_to_page_ms_max"] = round(max(page_ms), 1)
            figures["rss_kb_after"] = rss_kb(dash.pid)
        finally:
            if driver:
                driver.quit()
            stop_all(procs)
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
