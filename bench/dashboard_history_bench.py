"""What an hour of history costs fleet.dashboard at 1,000 agents: memory, and the /history answer.

The dashboard's model (``observe.live.FleetModel``) and its HTTP server run in
this process, as in ``hatchery fleet.dashboard``; only the clock is ours. An
hour is fed at high speed: the model's clock starts an hour ago and moves in
steps of ``--step`` seconds; at each step every agent publishes a heartbeat
(memory and CPU that drift), every sixth step each agent answers a
health-check (a round trip), a few agents go offline and come back, raise
alerts, and fleet.heal acts on one; then the model re-judges every agent (as
its one-second tick does), which records the sparklines and the fleet's
counts. The messages are the contract's own, folded by the one fleet state.

Reported: the process's RSS before the model and after the hour, the
history's own bytes (the rings' arrays, measured), /history's size and time
for a first load and for a refresh, and, with --browser, how long Chromium
takes to draw the page with the hour.

    .venv/bin/python bench/dashboard_history_bench.py --count 1000
"""

from __future__ import annotations

import argparse
import gc
import os
import json
import statistics
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from benchkit import chromium, report  # noqa: E402
from fleet_bench import rss_kb  # noqa: E402

from agent_kit import contract  # noqa: E402
from hatchery.bus.client import Message  # noqa: E402
from hatchery.inventory.model import AgentSpec, Inventory  # noqa: E402


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return time.time() if self.now is None else self.now


def _ts(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _msg(topic: str, body: dict, at: float) -> Message:
    return Message(topic, json.dumps(body).encode(), False, at)


def feed_hour(model, names: list, clock: Clock, step: float, manager: str) -> dict:
    start = clock.now
    sent = 0
    for name in names:
        model.observe(_msg(contract.topic(name, "status"), contract.make_state(name, "online"), start))
    for i in range(int(3600 / step)):
        now = clock.now = start + i * step
        for k, name in enumerate(names):
            down = k % 100 == 0 and 1200 <= i * step < 1500          # 1 % of agents: 5 minutes down
            if down:
                if i * step == 1200:
                    model.observe(_msg(contract.topic(name, "status"), {**contract.make_state(name, "offline"), "ts": _ts(now)}, now))
                continue
            if k % 100 == 0 and i * step == 1500:
                model.observe(_msg(contract.topic(name, "status"), {**contract.make_state(name, "online"), "ts": _ts(now)}, now))
            beat = {"v": 1, "ts": _ts(now), "agent": name, "ok": True, "uptime": int(now - start),
                    "mem_kb": 20000 + (k * 37 + i * 11) % 9000, "cpu": round(((k + i) % 13) / 100, 3),
                    "interval": step}
            model.observe(_msg(contract.topic(name, "heartbeat"), beat, now))
            sent += 1
            if i % 6 == k % 6:
                command = contract.make_command("health-check", f"c{i}-{k}")
                model.observe(_msg(contract.topic(name, "command"), command, now))
                reply = {"v": 1, "ts": _ts(now), "agent": name, "kind": "reply", "id": command["id"],
                         "verb": "health-check", "ok": True, "result": {}}
                model.observe(_msg(contract.topic(name, "status"), reply, now + 0.002 + (k % 7) / 1000))
                sent += 2
            if k % 250 == 1 and i % 30 == 0:
                alert = {**contract.make_alert(name, "disk-pressure", level="warning"), "ts": _ts(now)}
                model.observe(_msg(contract.topic(name, "alert"), alert, now))
                sent += 1
        if i % 120 == 60:
            heal = {**contract.make_alert(names[0], "heal-restart", reason="offline", count=1), "ts": _ts(now)}
            model.observe(_msg(contract.topic(manager, "alert"), heal, now))
        model.refresh()
    return {"messages": sent, "simulated_s": 3600, "step_s": step}


def history_bytes(model) -> int:
    rings = model.history.sparks._rings
    arrays = sum(sys.getsizeof(r) + sys.getsizeof(r.stamps) + sys.getsizeof(r.values) for r in rings.values())
    fleet = model.history.fleet
    return arrays + sys.getsizeof(rings) + sys.getsizeof(fleet.stamps) + sys.getsizeof(fleet.counts)


def fetch(url: str) -> tuple:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--step", type=float, default=10.0, help="simulated seconds between heartbeats")
    parser.add_argument("--browser", action="store_true", help="also time Chromium drawing the page")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from hatchery.core.intent import IntentBook
    from hatchery.observe import dashboard, history
    from hatchery.observe.live import FleetModel

    names = [f"agent-{i:04d}" for i in range(args.count)]
    inv = Inventory(Path("/nonexistent/fleet_inventory.yaml"), manager="benchmgr",
                    state_dir=Path("/nonexistent/.hatchery"),
                    agents={n: AgentSpec(n, heartbeat_interval=args.step) for n in names})
    gc.collect()
    figures = {"agents": args.count, "rss_kb_before_model": rss_kb(os.getpid())}
    clock = Clock(time.time() - 3600)
    model = FleetModel(inv, clock=clock, intent=IntentBook)      # no state dir: no intent
    started = time.perf_counter()
    figures.update(feed_hour(model, names, clock, args.step, inv.manager))
    figures["feed_s"] = round(time.perf_counter() - started, 1)
    clock.now = None
    now = time.time()                   # one live round, so a refresh carries this slot
    for k, name in enumerate(names):
        model.observe(_msg(contract.topic(name, "heartbeat"),
                           {"v": 1, "ts": _ts(now), "agent": name, "ok": True, "uptime": 3600,
                            "mem_kb": 20000 + k, "cpu": 0.01}, now))
    model.refresh()
    gc.collect()
    figures["rss_kb_after_hour"] = rss_kb(os.getpid())
    figures["history_bytes"] = history_bytes(model)
    figures["history_bytes_per_agent"] = round(figures["history_bytes"] / args.count)
    figures["ring_data_bytes_per_agent"] = history.SPARK_BYTES
    figures["events_kept"] = len(model.history.timeline.after(0))
    import threading
    from hatchery.core.ports import free_port
    port, stop, ready = free_port(), threading.Event(), threading.Event()
    server = threading.Thread(target=dashboard.serve, args=(model,), daemon=True,
                              kwargs={"port": port, "stop": stop, "on_ready": lambda a: ready.set()})
    server.start()
    assert ready.wait(10)
    url = f"http://127.0.0.1:{port}/"
    first = [fetch(url + "history") for _ in range(3)]
    data = json.loads(first[-1][1])
    # what the page asks every ten seconds: from the last slot it has
    again = [fetch(url + f"history?spark={data['sparks']['last']}&fleet={data['fleet']['last']}"
                   f"&after={data['seq']}") for _ in range(5)]
    figures["history_first_load_bytes"] = len(first[-1][1])
    figures["history_first_load_s_median"] = round(statistics.median(t for t, _ in first), 3)
    figures["history_refresh_bytes"] = len(again[-1][1])
    figures["history_refresh_s_median"] = round(statistics.median(t for t, _ in again), 4)
    if args.browser:
        driver = chromium()
        try:
            loaded = time.perf_counter()
            driver.get(url)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and driver.execute_script(
                    "return document.querySelectorAll('#rows tr[data-agent]').length") < args.count:
                time.sleep(0.1)
            figures["browser_table_s"] = round(time.perf_counter() - loaded, 2)
            while time.monotonic() < deadline and not driver.execute_script(
                    "return document.body.dataset.historyMs"):
                time.sleep(0.1)
            figures["browser_history_drawn_s"] = round(time.perf_counter() - loaded, 2)
            time.sleep(3)
            figures["browser_history_merge_ms"] = float(driver.execute_script(
                "return document.body.dataset.historyMs"))
            figures["browser_tick_ms"] = float(driver.execute_script(
                "return document.body.dataset.tickMs") or "nan")
        finally:
            driver.quit()
    figures["rss_kb_serving"] = rss_kb(os.getpid())
    stop.set()
    server.join(5)
    report(figures, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
