"""fleet.dashboard's time context on real agents: real handlers on a real Mosquitto, the real
CLI serving the page, a real headless Chromium reading it. What an operator does (kill, heal,
roll out, retire, ask for a round trip, read a log) and what the page must then say."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from viewhelpers import (  # noqa: F401 (fixture)
    HATCHERY,
    Agents,
    browser,
    canvas_ink,
    clear_retained,
    dashboard_cli,
    js,
    publish,
    raw_client,
    unique,
    wait_for,
    write_inventory,
)

from agent_kit import contract
from hatchery.core.intent import owner_label, release_lease, take_lease
from hatchery.core.paths import state_paths
from hatchery.inventory.load import load_inventory
from hatchery.observe import live

INTERVAL = 1.0


@pytest.fixture(scope="module")
def fleet(module_broker, tmp_path_factory):
    """Four real handlers (heartbeat every second, logging where the local runtime reads
    logs) and the real fleet.dashboard."""
    work = tmp_path_factory.mktemp("dashfleet")
    manager, names = unique("mgr"), [unique("fa"), unique("fb"), unique("fc"), unique("fd")]
    path = write_inventory(work / "fleet.yaml", module_broker, names, manager=manager,
                           interval=INTERVAL)
    inv = load_inventory(path)
    agents = Agents(module_broker, manager, work)
    logs = {n: Path(state_paths(inv).agent_log(n)) for n in names}
    try:
        for name in names:
            agents.start(name, interval=INTERVAL, version="Fleet Agent 3.2.1", log=logs[name],
                         instance=f"{name.replace('-', '')}first")
        with dashboard_cli(path) as url:
            yield {"url": url, "names": names, "agents": agents, "inv": inv,
                   "path": path, "manager": manager, "logs": logs}
    finally:
        agents.stop_all()
        clear_retained(module_broker, names)


def cell(driver, name, column):
    return js(driver, "return document.querySelector(`tr[data-agent='${arguments[0]}'] td.` + "
                      "arguments[1])?.textContent ?? null", name, column)


def events(driver) -> list:
    return js(driver, "return [...document.querySelectorAll('#timeline li')].map(li => "
                      "[li.dataset.kind, li.querySelector('b')?.textContent ?? null, li.textContent])")


def online(driver, name) -> bool:
    return cell(driver, name, "state") == "online"


def test_real_agents_show_uptime_memory_cpu_their_version_and_a_sparkline(fleet, browser):
    browser.get(fleet["url"])
    name = fleet["names"][0]
    assert wait_for(lambda: all(online(browser, n) for n in fleet["names"]), 15)
    # the handler ran its version command by itself: no version-report was asked for
    assert wait_for(lambda: cell(browser, name, "version") == "fleet-agent-3.2.1", 10), \
        cell(browser, name, "version")
    assert cell(browser, name, "mem").endswith(" MB") and cell(browser, name, "cpu").endswith(" %")
    assert cell(browser, name, "uptime").endswith((" s", " min"))
    assert not cell(browser, name, "since").startswith("≤")            # its birth: exact
    assert wait_for(lambda: canvas_ink(browser, f"tr[data-agent='{name}'] td.spark canvas") > 0, 15)
    assert wait_for(lambda: "online" in (browser.find_element("id", "fleet-chart")
                                         .get_attribute("title") or ""), 15)


def test_a_kill_is_dated_and_lands_on_the_timeline_and_the_chart(fleet, browser):
    browser.get(fleet["url"])
    name = fleet["names"][1]
    assert wait_for(lambda: online(browser, name), 15)
    killed = time.time()
    fleet["agents"].kill(name)
    assert wait_for(lambda: cell(browser, name, "state") == "offline", 5, step=0.05)
    since = cell(browser, name, "since")
    shown = time.strptime(since.split(" ")[0], "%H:%M:%S")
    at = time.localtime(killed)
    assert abs((shown.tm_hour * 3600 + shown.tm_min * 60 + shown.tm_sec) -
               (at.tm_hour * 3600 + at.tm_min * 60 + at.tm_sec)) <= 3, (since, killed)
    assert wait_for(lambda: ["state", name, ] in [e[:2] for e in events(browser)
                                                  if "online → offline" in e[2]], 15), events(browser)
    assert browser.find_element("id", "t-offline").text == "1"
    assert wait_for(lambda: "1 offline" in (browser.find_element("id", "fleet-chart")
                                            .get_attribute("title") or ""), 15)
    assert js(browser, "return document.querySelector('#rows tr').dataset.agent") == name, \
        "worst first: the dead agent heads the table"


def test_heal_rollout_and_retirement_reach_the_timeline(fleet, browser, module_broker):
    browser.get(fleet["url"])
    inv, names = fleet["inv"], fleet["names"]
    assert wait_for(lambda: online(browser, names[2]), 15)
    client = raw_client(module_broker)          # fleet.heal's message, as it publishes it
    try:
        publish(client, contract.topic(fleet["manager"], "alert"),
                contract.make_alert(names[2], "heal-restart", reason="offline", count=1))
    finally:
        client.disconnect()
        client.loop_stop()
    assert wait_for(lambda: any(e[0] == "heal" and e[1] == names[2] and "heal-restart" in e[2]
                                for e in events(browser)), 15), events(browser)
    assert cell(browser, names[2], "last_alert") == "heal-restart"
    owner = owner_label("fleet.rollout")        # what fleet.rollout holds while it replaces a batch
    take_lease(inv, names[2:4], owner, 60)
    assert wait_for(lambda: any(e[0] == "rollout" and "batch 1 started" in e[2] and names[3] in e[2]
                                for e in events(browser)), 5 + live.INTENT_EVERY), events(browser)
    release_lease(inv, names[2:4], owner)
    assert wait_for(lambda: any("batch 1 done" in e[2] for e in events(browser)),
                    5 + live.INTENT_EVERY), events(browser)
    marker = Path(state_paths(inv).retired_marker(names[3]))   # what agent.retire leaves
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")
    try:
        assert wait_for(lambda: cell(browser, names[3], "state") is None, 5 + live.INTENT_EVERY)
        assert wait_for(lambda: any(e[0] == "retired" and e[1] == names[3] for e in events(browser)), 15)
    finally:
        marker.unlink()


def test_a_new_instance_drops_the_old_round_trip(fleet, browser):
    browser.get(fleet["url"])
    name = fleet["names"][0]
    assert wait_for(lambda: online(browser, name), 15)
    asked = subprocess.run([str(HATCHERY), "fleet.health-check", "--inventory", str(fleet["path"]),
                            "--name", name], capture_output=True, text=True, timeout=60)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert wait_for(lambda: cell(browser, name, "rtt").endswith(" ms"), 10)
    fleet["agents"].kill(name)                  # what heal does: a new start, a new instance
    fleet["agents"].start(name, interval=INTERVAL, version="Fleet Agent 3.2.2",
                          log=fleet["logs"][name], instance=f"{name.replace('-', '')}second")
    assert wait_for(lambda: online(browser, name) and cell(browser, name, "rtt") == "-", 15), \
        cell(browser, name, "rtt")
    assert wait_for(lambda: cell(browser, name, "version") == "fleet-agent-3.2.2", 15)


def test_the_log_link_shows_the_handlers_own_lines(fleet, browser):
    browser.get(fleet["url"])
    name = fleet["names"][0]
    assert wait_for(lambda: online(browser, name), 15)
    browser.find_element("css selector", f"tr[data-agent='{name}'] a.logs").click()
    assert wait_for(lambda: f"{name}: connected to" in browser.find_element("id", "logs").text, 10), \
        browser.find_element("id", "logs").text
    assert browser.find_element("id", "logs").get_attribute("data-ok") == "yes"
