"""The docs' picture of the dashboard (docs/img/dashboard.png): 22 real handlers on a real
Mosquitto, the real CLI serving the page, a real headless Chromium; two killed, one frozen
(stale), two alerting, one healed, one rollout batch. The hosts are the inventory's
placement (docker_host) of real local handlers: the page only reads where the inventory
says an agent runs.

With HATCHERY_DOCS_IMG=1 the fleet runs for two and a half minutes first, so the sparklines
and the fleet chart have a few minutes of history; otherwise 20 seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from viewhelpers import (  # noqa: F401 (fixture)
    HATCHERY,
    IMG,
    Agents,
    browser,
    canvas_ink,
    clear_retained,
    dashboard_cli,
    js,
    publish,
    raw_client,
    shown_agents,
    unique,
    wait_for,
)

from agent_kit import contract
from hatchery.core.intent import release_lease, take_lease
from hatchery.inventory.load import load_inventory

RUN_FOR = 150 if os.environ.get("HATCHERY_DOCS_IMG") else 20
INTERVAL = 2
PLACES = [("web", None)] * 6 + [("batch", None)] * 6 + \
         [("nas", "ssh://root@nas-1")] * 5 + [("edge", "ssh://root@pi-2")] * 5


def _inventory(path, broker, manager, names):
    lines = ["fleet:", f"  manager: {manager}", f"  state_dir: {path.parent / 'state'}",
             "broker:", "  runtime: local", f"  host: {broker.host}", f"  port: {broker.port}",
             # the agents placed on nas-1 and pi-2 would reach the broker over a trusted
             # network: the inventory has to say so (the test's broker stays on loopback)
             "  bind: 0.0.0.0", "  allow_plain: true", "  auth: false", "agents:"]
    for name, (_, engine) in zip(names, PLACES):
        lines += [f"  {name}:", f"    heartbeat_interval: {INTERVAL}"]
        if engine:
            lines += ["    runtime: docker", f"    docker_host: {engine}"]
    lines.append("groups:")
    for group in dict.fromkeys(g for g, _ in PLACES):
        members = [n for n, (g, _) in zip(names, PLACES) if g == group]
        lines += [f"  {group}:", f"    agents: [{', '.join(members)}]"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_docs_picture_of_a_fleet_with_trouble(module_broker, tmp_path, browser):
    browser.set_window_size(1500, 1180)
    manager = unique("mgr")
    names = [f"{group}-{unique('')[1:5]}{i}" for i, (group, _) in enumerate(PLACES)]
    path = _inventory(tmp_path / "fleet.yaml", module_broker, manager, names)
    agents = Agents(module_broker, manager, tmp_path)
    frozen = names[14]
    for i, name in enumerate(names):
        agents.start(name, interval=INTERVAL, version="Fleet Agent 3.2.1" if i % 7 else "Fleet Agent 3.1.9",
                     keepalive=120 if name == frozen else 2)
    client = raw_client(module_broker)
    try:
        with dashboard_cli(path, timeout=40) as url:
            browser.get(url)
            state = "return document.querySelector(`tr[data-agent='${arguments[0]}']`)?.dataset.state"
            assert wait_for(lambda: all(js(browser, state, n) == "online" for n in names), 30)
            subprocess.run([str(HATCHERY), "fleet.health-check", "--inventory", str(path)],
                           capture_output=True, timeout=60)          # round trips for the rtt column
            time.sleep(RUN_FOR / 2)
            # trouble: two killed, one frozen (its connection lives: stale, not offline), alerts
            for victim in (names[3], names[19]):
                agents.kill(victim)
            os.kill(agents.procs[frozen].pid, signal.SIGSTOP)
            publish(client, contract.topic(names[8], "alert"),
                    contract.make_alert(names[8], "disk-pressure", level="warning"))
            publish(client, contract.topic(names[16], "alert"),
                    contract.make_alert(names[16], "auth-failed", count=3))
            publish(client, contract.topic(manager, "alert"),
                    contract.make_alert(names[3], "heal-restart", reason="offline", count=1))
            inv = load_inventory(path)
            owner = "fleet.rollout pid 4242 on manager"        # owner_label's shape, no host name
            take_lease(inv, names[6:9], owner, 60)
            time.sleep(3)
            release_lease(inv, names[6:9], owner)
            time.sleep(RUN_FOR / 2)
            assert wait_for(lambda: js(browser, state, frozen) == "stale", 15)
            order = shown_agents(browser)
            assert len(order) == len(names) >= 20
            assert {js(browser, state, n) for n in order[:2]} == {"offline"}
            assert order[2] == frozen and set(order[3:5]) == {names[8], names[16]}, order[:6]
            assert wait_for(lambda: all(canvas_ink(browser, f"tr[data-agent='{n}'] td.spark canvas") > 0
                                        for n in (names[0], names[20])), 15)
            assert wait_for(lambda: len(js(browser, "return [...document.querySelectorAll("
                                                    "'#timeline li')]")) >= 6, 15)
            time.sleep(11)                  # the next history fetch has the last slot
            IMG.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(IMG / "dashboard.png"))
    finally:
        if frozen in agents.procs:
            os.kill(agents.procs[frozen].pid, signal.SIGCONT)
        client.disconnect()
        client.loop_stop()
        agents.stop_all()
        clear_retained(module_broker, names)
