"""The dashboard's new panels in a real headless Chromium: worst first and sortable columns,
the hour of history (sparklines, the fleet chart), grouping by host, and the log panel with
its route's bounds. The server runs in this process on a FleetModel we feed contract
messages, with our own clock where an hour has to pass in a second."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from viewhelpers import (  # noqa: F401 (fixture)
    browser,
    canvas_ink,
    http_get,
    js,
    serving,
    shown_agents,
    wait_for,
)

from agent_kit import contract
from hatchery.bus.client import Message
from hatchery.core.intent import IntentBook, Stopped
from hatchery.core.paths import state_paths
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import dashboard, dashroutes, history
from hatchery.observe.live import FleetModel


class Clock:
    """The model's clock: ours while an hour is fed in, the real one afterwards."""

    def __init__(self, now=None):
        self.now = now

    def __call__(self) -> float:
        return time.time() if self.now is None else self.now


def _ts(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _msg(topic: str, body: dict, at: float) -> Message:
    return Message(topic, json.dumps(body).encode(), False, at)


def beat(name, at, mem_kb=20000, cpu=0.01):
    return _msg(contract.topic(name, "heartbeat"), {"v": 1, "ts": _ts(at), "agent": name, "ok": True,
                                                    "uptime": 100, "mem_kb": mem_kb, "cpu": cpu}, at)


def state(name, online, at):
    return _msg(contract.topic(name, "status"), {"v": 1, "ts": _ts(at), "agent": name,
                                                 "kind": "state",
                                                 "state": "online" if online else "offline"}, at)


def alert(name, code, at):
    return _msg(contract.topic(name, "alert"), {"v": 1, "ts": _ts(at), "agent": name,
                                                "kind": "alert", "code": code}, at)


def round_trip(model, name, command_id, at, ms):
    command = contract.make_command("health-check", command_id)
    model.observe(_msg(contract.topic(name, "command"), command, at))
    reply = {"v": 1, "ts": _ts(at), "agent": name, "kind": "reply", "id": command_id,
             "verb": "health-check", "ok": True, "result": {}}
    model.observe(_msg(contract.topic(name, "status"), reply, at + ms / 1000))


def inventory(tmp_path, names, hosts=None, interval=10):
    hosts = hosts or {}
    return Inventory(tmp_path / "fleet_inventory.yaml", manager="mgr", state_dir=tmp_path / "state",
                     agents={n: AgentSpec(n, heartbeat_interval=interval, docker_host=hosts.get(n))
                             for n in names})


def click(driver, selector):
    driver.find_element("css selector", selector).click()


# --- worst first, sortable ---------------------------------------------------------------

def test_rows_come_worst_first_and_every_column_sorts(browser, tmp_path):
    now = time.time()
    names = ["a-ok", "b-down", "c-quiet", "d-loud", "e-held", "f-never"]
    book = IntentBook(stopped={"e-held": Stopped(now - 60, "agent.stop")})
    model = FleetModel(inventory(tmp_path, names), intent=lambda: book)
    for message in [state("a-ok", True, now - 300), beat("a-ok", now - 1, mem_kb=30000),
                    state("b-down", True, now - 900), beat("b-down", now - 200, mem_kb=90000),
                    state("b-down", False, now - 5),
                    state("c-quiet", True, now - 900), beat("c-quiet", now - 60, mem_kb=10000),
                    state("d-loud", True, now - 100), beat("d-loud", now - 2, mem_kb=50000),
                    alert("d-loud", "disk-pressure", now - 3), state("e-held", False, now - 60)]:
        model.observe(message)
    with serving(model) as url:
        browser.get(url)
        assert wait_for(lambda: len(shown_agents(browser)) == 6, 5)
        # offline, then the other problems (missing, stale), then alerting, then the rest
        assert shown_agents(browser) == ["b-down", "f-never", "c-quiet", "d-loud", "a-ok", "e-held"]
        assert js(browser, "return document.querySelector(\"tr[data-agent='d-loud']\")"
                           ".dataset.alerting") == "yes"
        assert browser.find_element("id", "t-alerting").text == "1"
        click(browser, "th[data-sort='agent']")
        assert shown_agents(browser) == sorted(names)
        click(browser, "th[data-sort='agent']")
        assert shown_agents(browser) == sorted(names, reverse=True)
        click(browser, "th[data-sort='mem']")                 # numbers: the largest first
        assert shown_agents(browser)[:4] == ["b-down", "d-loud", "a-ok", "c-quiet"]
        assert "memory ▼" in browser.find_element("id", "sorted").text
        click(browser, "th[data-sort='mem']")                 # again: the smallest first
        assert shown_agents(browser)[:4] == ["c-quiet", "a-ok", "d-loud", "b-down"]
        assert shown_agents(browser)[4:] == ["e-held", "f-never"], "no figure: last either way"
        click(browser, "th[data-sort='state']")
        assert shown_agents(browser)[0] == "b-down"
        assert browser.find_element("id", "sorted").text == "sorted: worst first"


def test_every_state_and_alert_has_a_since(browser, tmp_path):
    now = time.time()
    model = FleetModel(inventory(tmp_path, ["up", "down", "loud"]))
    for message in [state("up", True, now - 3700), beat("up", now - 1),
                    state("down", True, now - 900), beat("down", now - 120), state("down", False, now - 900),
                    state("loud", True, now - 30), beat("loud", now - 1), alert("loud", "auth-failed", now - 4)]:
        model.observe(message)

    def cell(name, column):
        return js(browser, "return document.querySelector(`tr[data-agent='${arguments[0]}'] td.` + "
                           "arguments[1])?.textContent", name, column)
    with serving(model) as url:
        browser.get(url)
        assert wait_for(lambda: cell("loud", "alert_at") not in (None, "-"), 5)
        up = cell("up", "since")
        assert up.endswith("(62 min)") and not up.startswith("≤"), up    # its birth: exact
        assert cell("down", "since").startswith("≤ ") and cell("down", "since").endswith("(2.0 min)"), \
            "an offline agent found at start: at most since its last word"
        assert cell("loud", "alert_at").endswith(" s)") and cell("loud", "last_alert") == "auth-failed"
        assert cell("up", "uptime") == "1 min" and cell("up", "mem") == "19.5 MB" and cell("up", "cpu") == "1.0 %"
        model.observe(state("up", False, time.time()))
        assert wait_for(lambda: cell("up", "state") == "offline", 3)
        assert cell("up", "since").endswith(" s)") and not cell("up", "since").startswith("≤")


# --- the hour of history -------------------------------------------------------------------

def test_an_hour_of_history_draws_sparklines_and_the_fleet_chart(browser, tmp_path):
    start = time.time() - 3600
    clock = Clock(start)
    names = ["h1", "h2", "h3"]
    model = FleetModel(inventory(tmp_path, names), clock=clock)
    for name in names:
        model.observe(state(name, True, start))
    step = history.FLEET_STEP
    for i in range(int(3600 / step)):
        clock.now = start + i * step
        for k, name in enumerate(names):
            if name == "h3" and 1200 <= i * step < 1800:
                if i * step == 1200:
                    model.observe(state("h3", False, clock.now))     # down for ten minutes
                continue
            if name == "h3" and i * step == 1800:
                model.observe(state("h3", True, clock.now))
            model.observe(beat(name, clock.now, mem_kb=20000 + 50 * i + 5000 * k, cpu=0.01 * (i % 7)))
        if i % 6 == 0:
            round_trip(model, "h1", f"c{i}", clock.now, 2 + i % 5)
        model.refresh()
    clock.now = None                      # from here on, the real clock
    with serving(model) as url:
        base = url
        browser.get(url)
        points = "return document.querySelector(`tr[data-agent='${arguments[0]}'] td.spark canvas`)" \
                 "?.dataset.points"
        assert wait_for(lambda: js(browser, points, "h1") is not None, 10)
        assert int(js(browser, points, "h1")) >= history.SPARK_SLOTS - 2
        assert int(js(browser, points, "h3")) < int(js(browser, points, "h1")) - 20, "a gap while down"
        for name in names:
            assert canvas_ink(browser, f"tr[data-agent='{name}'] td.spark canvas") > 50
        title = js(browser, "return document.querySelector(\"tr[data-agent='h1'] td.spark canvas\").title")
        assert "memory" in title and "round trip" in title
        chart = browser.find_element("id", "fleet-chart")
        assert int(chart.get_attribute("data-slots")) >= history.FLEET_SLOTS - 5
        assert canvas_ink(browser, "#fleet-chart") > 500
        assert "3 online" in chart.get_attribute("title")
        with urllib.request.urlopen(base + "history", timeout=5) as response:
            body = response.read()
        data = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} in /history"))
        assert set(data["sparks"]["agents"]) == set(names) and len(body) < 40_000


# --- grouping by host ----------------------------------------------------------------------

def test_grouping_by_host_puts_each_agent_under_its_host(browser, tmp_path):
    now = time.time()
    hosts = {"n1": "ssh://root@nas-1", "n2": "ssh://root@nas-1", "p1": "ssh://root@pi-2"}
    model = FleetModel(inventory(tmp_path, ["l1", "n1", "n2", "p1"], hosts=hosts))
    for name in ["l1", "n1", "n2", "p1"]:
        model.observe(state(name, True, now - 60))
        model.observe(beat(name, now - 1))
    model.observe(state("n2", False, now - 1))
    with serving(model) as url:
        browser.get(url)
        assert wait_for(lambda: len(shown_agents(browser)) == 4, 5)
        click(browser, "#by-host")
        order = js(browser, "return [...document.querySelectorAll('#rows tr')].map(r => "
                            "r.dataset.agent || ('# ' + r.textContent))")
        assert order == ["# nas-1 · 2 agents · 1 with a problem", "n2", "n1",
                         "# localhost · 1 agent", "l1", "# pi-2 · 1 agent", "p1"], order
        click(browser, "#by-host")
        assert js(browser, "return document.querySelectorAll('#rows tr.host-head').length") == 0


# --- logs -----------------------------------------------------------------------------------

HOSTILE_LOG = ['<img src=x onerror="window.__pwned=1">', "\x1b[2J\x1b[31mred\x1b[0m",
               "</pre><script>window.__pwned=2</script>", "\u202eevil"]


def _write_log(inv, name, lines):
    path = Path(state_paths(inv).agent_log(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_the_log_link_shows_recent_lines_as_text(browser, tmp_path):
    inv = inventory(tmp_path, ["alpha", "beta"])
    model = FleetModel(inv)
    _write_log(inv, "alpha", [f"line {i}" for i in range(300)] + HOSTILE_LOG + ["x" * 5000, "the last line"])
    with serving(model) as url:
        browser.get(url)
        assert wait_for(lambda: js(browser, "return document.querySelector(\"tr[data-agent='alpha'] a.logs\")") is not None, 5)
        click(browser, "tr[data-agent='alpha'] a.logs")
        assert wait_for(lambda: "the last line" in browser.find_element("id", "logs").text, 5)
        shown = js(browser, "return document.getElementById('logs').textContent").splitlines()
        assert len(shown) == dashroutes.DEFAULT_LOG_LINES and shown[-1] == "the last line"
        assert shown[-2] == "x" * (dashroutes.MAX_LINE_CHARS - 1) + "…"
        assert '<img src=x onerror="window.__pwned=1">' in shown and "?[2J?[31mred?[0m" in shown
        assert "?evil" in shown
        assert js(browser, "return window.__pwned") is None
        assert js(browser, "return document.querySelectorAll('img, svg, script:not([src])').length") == 0
        assert browser.find_element("id", "logs-agent").text == "alpha"
        click(browser, "tr[data-agent='beta'] a.logs")         # no log yet: said so, as text
        assert wait_for(lambda: "has no log yet" in browser.find_element("id", "logs").text, 5)
        assert browser.current_url == url, "the page never navigated"


def test_the_log_route_takes_only_inventory_names_and_is_bounded(tmp_path):
    inv = inventory(tmp_path, ["alpha"])
    _write_log(inv, "alpha", [f"line {i}" for i in range(5000)])
    secret = tmp_path / "state" / "secrets"
    secret.mkdir(parents=True)
    (secret / "alpha.password").write_text("s3cret-not-for-the-page")
    with serving(FleetModel(inv)) as url:
        for attack in ["../secrets/alpha.password", "..%2Fsecrets%2Falpha.password", "alpha/../alpha",
                       "alpha%00", "ALPHA", "alpha%0a", "%2e%2e", "", "alpha&agent=beta"]:
            status, headers, body = http_get(f"{url}logs?agent={attack}")
            assert status in (400, 404), (attack, status)
            assert b"s3cret" not in body and b"line " not in body
        status, headers, body = http_get(f"{url}logs?agent=alpha&lines=99999")
        assert status == 200 and body.count(b"\n") == dashroutes.MAX_LOG_LINES
        assert body.endswith(b"line 4999\n")
        assert headers["Content-Type"].startswith("text/plain")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert http_get(f"{url}logs?agent=alpha&lines=ten")[0] == 400
        assert http_get(f"{url}logs?agent=alpha&lines=-5")[0] == 400
        assert http_get(f"{url}history?after=1e9")[0] == 400
        assert http_get(f"{url}history?" + "x" * 600)[0] == 400


def test_history_and_logs_want_the_login_too(tmp_path):
    inv = inventory(tmp_path, ["alpha"])
    _write_log(inv, "alpha", ["hello"])
    login = dashboard.Login("hatchery", "correct-horse-battery")
    good = {"Authorization": "Basic " + base64.b64encode(b"hatchery:correct-horse-battery").decode()}
    with serving(FleetModel(inv), login=login) as url:
        for route in ("history", "logs?agent=alpha"):
            assert http_get(url + route)[0] == 401
            status, _, body = http_get(url + route, good)
            assert status == 200 and body
