"""fleet.dashboard in a real headless Chromium, fed by real agents on a real Mosquitto."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path

import pytest
from viewhelpers import (  # noqa: F401 (fixture)
    HATCHERY,
    Agents,
    browser,
    clear_retained,
    dashboard_cli,
    http_get,
    publish,
    raw_client,
    serving,
    unique,
    wait_for,
    write_inventory,
)

from agent_kit import contract
from hatchery.core.ports import free_port, wait_until
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory
from hatchery.bus.client import Message
from hatchery.core.intent import IntentBook, Stopped
from hatchery.observe import dashboard as page
from hatchery.observe import live
from hatchery.observe.live import FleetModel

HOSTILE = ('<img src=x onerror="window.__pwned=1">', '</script><script>window.__pwned=2</script>',
           '"><svg onload=window.__pwned=3>', '\x1b[31mred\x1b[0m')


@pytest.fixture(scope="module")
def fleet(module_broker, tmp_path_factory):
    """Three live agents (two in group web) and one that never connects, on a dashboard."""
    work = tmp_path_factory.mktemp("dash")
    manager, names = unique("mgr"), [unique("web"), unique("web"), unique("db"), unique("gone")]
    inv = write_inventory(work / "fleet.yaml", module_broker, names, manager=manager,
                          groups={"web": names[:2]})
    agents = Agents(module_broker, manager, work)
    try:
        for name in names[:3]:
            agents.start(name)
        with dashboard_cli(inv) as url:
            yield {"url": url, "names": names, "agents": agents, "inventory": inv}
    finally:
        agents.stop_all()
        clear_retained(module_broker, names)


def row_state(driver, name):
    return driver.execute_script(
        "const r = document.querySelector(`tr[data-agent='${arguments[0]}']`);"
        "return r ? r.dataset.state : null;", name)


def cell(driver, name, column):
    return driver.execute_script(
        "const r = document.querySelector(`tr[data-agent='${arguments[0]}']`);"
        "return r ? r.querySelector('td.' + arguments[1]).textContent : null;", name, column)


def test_page_lists_every_agent_with_totals_and_filters(fleet, browser):
    browser.get(fleet["url"])
    names = fleet["names"]
    assert wait_for(lambda: all(row_state(browser, n) == "online" for n in names[:3]), 15), \
        [row_state(browser, n) for n in names]
    assert row_state(browser, names[3]) == "missing"      # never reported
    rows = browser.execute_script("return [...document.querySelectorAll('#rows tr')]"
                                  ".map(r => r.dataset.agent)")
    assert sorted(rows) == sorted(names)
    assert browser.find_element("id", "t-online").text == "3"
    asked = subprocess.run([str(HATCHERY), "fleet.version-report", "--inventory",
                            str(fleet["inventory"]), "--group", "web"],
                           capture_output=True, text=True, timeout=30)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert wait_for(lambda: cell(browser, names[0], "version") == "1.4.2", 10)
    # the version was there before (the heartbeat's slug); the round trips come with the replies
    assert wait_for(lambda: all(cell(browser, n, "rtt").endswith(" ms") for n in names[:2]), 10)
    browser.find_element("css selector", "#f-group option[value='web']").click()
    shown = browser.execute_script("return [...document.querySelectorAll('#rows tr')]"
                                   ".filter(r => !r.hidden).map(r => r.dataset.agent)")
    assert sorted(shown) == sorted(names[:2])
    browser.find_element("css selector", "#f-group option[value='']").click()


def test_an_agent_killed_with_sigkill_turns_offline_within_two_seconds(fleet, browser):
    browser.get(fleet["url"])
    name = fleet["names"][1]
    assert wait_for(lambda: row_state(browser, name) == "online", 15)
    version_before = browser.execute_script("return document.body.dataset.version")
    killed = time.monotonic()
    fleet["agents"].kill(name)
    assert wait_for(lambda: row_state(browser, name) == "offline", 2.0, step=0.02), \
        f"still {row_state(browser, name)} 2 s after SIGKILL"
    took = time.monotonic() - killed
    # no reload: the same document took a pushed change
    assert browser.execute_script("return document.body.dataset.version") != version_before
    print(f"offline on the page {took * 1000:.0f} ms after SIGKILL")


def test_hostile_strings_from_a_compromised_agent_stay_inert(fleet, browser, module_broker):
    browser.get(fleet["url"])
    name = fleet["names"][2]
    assert wait_for(lambda: row_state(browser, name) == "online", 15)
    before = int(cell(browser, name, "invalid"))
    client = raw_client(module_broker)
    try:
        for text in HOSTILE:
            beat = {"v": 1, "ts": contract.now_rfc3339(), "agent": name, "ok": True,
                    "uptime": 1, "version": text}
            publish(client, contract.topic(name, "heartbeat"), beat)
            publish(client, contract.topic(name, "alert"),
                    {"v": 1, "ts": contract.now_rfc3339(), "agent": name, "kind": "alert",
                     "code": text})
            publish(client, contract.topic(name, "status"),
                    {"v": 1, "ts": contract.now_rfc3339(), "agent": name, "kind": "state",
                     "state": text})
        publish(client, contract.topic(name, "heartbeat"), text.encode())   # not JSON at all
    finally:
        client.disconnect()
        client.loop_stop()
    expected = before + 3 * len(HOSTILE) + 1
    assert wait_for(lambda: int(cell(browser, name, "invalid")) >= expected, 5), \
        cell(browser, name, "invalid")
    assert row_state(browser, name) == "online"          # dropped, counted; the agent stays
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, svg, script:not([src])')"
                                  ".length") == 0
    body = browser.find_element("tag name", "body").text
    assert "onerror" not in body and "<script" not in body


def test_text_that_reaches_the_page_is_shown_as_text(browser):
    """Defence in depth: even a string the contract would refuse renders inert."""
    inv = Inventory(Path("/nonexistent.yaml"), broker=BrokerSpec(),
                    agents={"x": AgentSpec("x")}, state_dir=Path("/nonexistent/.hatchery"))
    model = FleetModel(inv)
    poisoned = model.state.agents["x"]      # the fleet state, reached behind the decoder's back
    poisoned.version, poisoned.last_alert = HOSTILE[0], HOSTILE[1]
    model.places["x"] = ((HOSTILE[1],), HOSTILE[2])
    with serving(model) as url:
        browser.get(url)
        assert wait_for(lambda: cell(browser, "x", "version") == HOSTILE[0], 5)
        assert cell(browser, "x", "last_alert") == HOSTILE[1]
        assert cell(browser, "x", "host") == HOSTILE[2]
        assert browser.execute_script("return window.__pwned") is None
        assert browser.execute_script("return document.querySelectorAll('img, svg, "
                                      "script:not([src])').length") == 0


def test_intent_a_stopped_agent_says_so_and_a_retired_one_leaves_the_page(browser, tmp_path):
    inv = Inventory(tmp_path / "fleet_inventory.yaml", broker=BrokerSpec(), state_dir=tmp_path / ".hatchery",
                    agents={n: AgentSpec(n) for n in ("x", "y", "z")})
    book = [IntentBook()]
    model = FleetModel(inv, intent=lambda: book[0])
    for name in ("x", "y", "z"):
        model.observe(Message(contract.topic(name, "status"),
                              contract.encode(contract.make_state(name, "offline")), True, time.time()))
    with serving(model) as url:
        browser.get(url)
        assert wait_for(lambda: [row_state(browser, n) for n in "xyz"] == ["offline"] * 3, 5)
        book[0] = IntentBook(stopped={"x": Stopped(time.time(), "agent.stop")}, retired=frozenset({"y"}))
        assert wait_for(lambda: row_state(browser, "x") == "stopped" and row_state(browser, "y") is None,
                        5 + live.INTENT_EVERY), [row_state(browser, n) for n in "xyz"]
        assert browser.find_element("id", "t-stopped").text == "1"
        assert browser.find_element("id", "t-offline").text == "1"
        assert browser.find_element("id", "t-agents").text == "2"


def test_non_loopback_bind_without_a_login_is_refused(tmp_path, module_broker):
    inv = write_inventory(tmp_path / "fleet.yaml", module_broker, ["solo"], manager="mgr")
    port = free_port()
    result = subprocess.run([str(HATCHERY), "fleet.dashboard", "--inventory", str(inv),
                             "--addr", "0.0.0.0", "--port", str(port)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "without a login" in result.stderr and "HATCHERY_DASHBOARD_PASSWORD" in result.stderr
    assert not wait_until("127.0.0.1", port, timeout=0.2)
    with pytest.raises(Exception) as refused:
        page.check_bind("10.1.2.3", page.Login("hatchery", "short"))
    assert "at least" in str(refused.value)


def test_behind_a_login_the_page_its_scripts_and_its_history_load(browser):
    """The page is module scripts (app.js imports the others): the browser must fetch each,
    and /events and /history, with the login it holds, or the table stays empty."""
    inv = Inventory(Path("/nonexistent.yaml"), agents={"x": AgentSpec("x")},
                    state_dir=Path("/nonexistent/.hatchery"))
    with serving(FleetModel(inv), page.Login("hatchery", "correct-horse-battery")) as base:
        # Log in once, then open the page as a person would after the prompt: a page URL
        # holding credentials would pass them to every relative URL, which fetch() refuses.
        browser.get(base.replace("http://", "http://hatchery:correct-horse-battery@"))
        browser.get(base)
        assert wait_for(lambda: row_state(browser, "x") == "missing", 10)
        assert browser.find_element("id", "link").get_attribute("data-state") == "live"
        assert wait_for(lambda: browser.execute_script("return document.body.dataset.historyMs"), 10)


def test_a_login_is_demanded_and_headers_are_strict():
    inv = Inventory(Path("/nonexistent.yaml"), agents={"x": AgentSpec("x")},
                    state_dir=Path("/nonexistent/.hatchery"))
    login = page.Login("hatchery", "correct-horse-battery")
    good = "Basic " + base64.b64encode(b"hatchery:correct-horse-battery").decode()
    bad = "Basic " + base64.b64encode(b"hatchery:wrong-password-xx").decode()
    with serving(FleetModel(inv), login) as base:
        assert http_get(base)[0] == 401
        assert http_get(base, {"Authorization": bad})[0] == 401
        status, headers, body = http_get(base, {"Authorization": good})
        assert status == 200 and b"hatchery fleet" in body
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert http_get(base + "nothing", {"Authorization": good})[0] == 404
    with serving(FleetModel(inv)) as base:   # no login: loopback only, and a rebinding Host header is refused
        assert http_get(base)[0] == 200
        assert http_get(base, {"Host": "evil.example:80"})[0] == 403
