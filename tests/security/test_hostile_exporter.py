"""Issue 18 item 2: an agent we gave credentials to attacks the exporter's series.

A real Mosquitto enforcing the fleet's passwords and ACL, hatchery's exporter
serving /metrics from it, and the attacker: a raw paho client logged in with
agent a1's own password, publishing on a1's own heartbeat topic. It sends
heartbeats with 400 error keys, new keys each time (once 420 series per
scrape, 2,100 distinct over 5 heartbeats), and keys the contract refuses
(markup, U+202E, NUL, 200 characters), which were once exported as label
values. Controls: only contract-valid heartbeats are exported; an agent's
first 16 error codes get a series each and the rest are summed into
``code="other"`` and counted; refused heartbeats are counted per agent.

The broker's log: ``hatchery_broker_auth_failures_total`` counts Mosquitto's
refusal line exactly. A successful login with a client id that reads "not
authorised" once moved it; here such logins happen on the real broker and only
a refused password counts.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.observe import exporter
from tests.fleet.responders import free_port, inventory
from tests.security.secbroker import start_fleet_broker

MANAGER, AGENT = "zephyr", "a1"
REFUSED_KEYS = ["<b>x</b>", "e\u202eexe", "nul\x00key", "k" * 200]
TIMESTAMPS = "log_timestamp_format %Y-%m-%dT%H:%M:%S"    # as templates/mosquitto.conf.j2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile-exporter")
    log = work / "mosquitto.log"
    broker, secrets = start_fleet_broker(
        work, MANAGER, [AGENT], extra=("connection_messages true", TIMESTAMPS, f"log_dest file {log}",
                                       "log_type error", "log_type warning", "log_type notice"))
    inv = inventory(broker, [AGENT], manager=MANAGER, interval=30)
    port, stop, ready = free_port(), threading.Event(), threading.Event()
    with BusClient(broker.host, broker.port, username="exporter", password=secrets["exporter"],
                   client_id=f"exporter-{port}") as bus:
        worker = threading.Thread(target=exporter.serve, args=(inv, bus), daemon=True,
                                  kwargs={"port": port, "stop": stop, "broker_log": log,
                                          "on_ready": lambda address: ready.set()})
        worker.start()
        try:
            assert ready.wait(5), "the exporter did not start"
            yield {"broker": broker, "secrets": secrets, "port": port, "log": log}
        finally:
            stop.set()
            worker.join(5)
            broker.stop()


def _client(fleet, user: str, password: str, client_id: str):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    answers = []
    client.on_connect = lambda c, u, f, rc, p: answers.append(rc)
    client.connect("127.0.0.1", fleet["broker"].port, keepalive=10)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not answers and time.monotonic() < deadline:
        time.sleep(0.01)
    return client, answers


def _beat(errors: dict) -> bytes:
    return json.dumps({"v": 1, "ts": contract.now_rfc3339(), "agent": AGENT, "ok": True,
                       "uptime": 5, "errors": errors}, separators=(",", ":")).encode()


def _scrape(fleet) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet['port']}/metrics", timeout=5) as response:
        return response.read().decode()


def _error_series(text: str) -> set:
    return set(re.findall(r'^hatchery_agent_errors\{agent="a1",code="([^"]*)"\}', text, re.M))


def _sample(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


def test_an_agent_cannot_mint_error_series_or_labels(fleet):
    attacker, answers = _client(fleet, AGENT, fleet["secrets"][AGENT], f"{AGENT}-raw")
    assert answers and not answers[0].is_failure
    topic = contract.topic(AGENT, "heartbeat")
    seen, scrapes = set(), []
    try:
        attacker.publish(contract.topic(AGENT, "status"),
                         contract.encode(contract.make_state(AGENT, "online")), 1, True).wait_for_publish(5)
        for round_ in range(5):
            errors = {f"{'abcde'[round_]}{i:03x}": 1 for i in range(400)}
            assert len(_beat(errors)) <= contract.MAX_PAYLOAD_BYTES     # the contract's own bound
            attacker.publish(topic, _beat(errors), 1, True).wait_for_publish(5)
            time.sleep(0.2)
            scrapes.append(_scrape(fleet))
            seen |= _error_series(scrapes[-1])
        for key in REFUSED_KEYS:
            attacker.publish(topic, _beat({key: 1}), 1, True).wait_for_publish(5)
        time.sleep(0.3)
        last = _scrape(fleet)
    finally:
        attacker.disconnect()
        attacker.loop_stop()
    per_scrape = [len(_error_series(text)) for text in scrapes]
    assert max(per_scrape) == exporter.ERROR_CODES_PER_AGENT + 1, per_scrape    # 16 codes + other
    assert len(seen) == exporter.ERROR_CODES_PER_AGENT + 1, sorted(seen)        # the same ones, every time
    # the first heartbeat's first 16 codes are the agent's series; later heartbeats carry none
    # of them, so all their counts go to "other"
    assert per_scrape == [exporter.ERROR_CODES_PER_AGENT + 1, 1, 1, 1, 1], per_scrape
    assert _sample(scrapes[-1], 'hatchery_agent_errors{agent="a1",code="other"}') == 400
    folded = _sample(last, 'hatchery_exporter_folded_error_codes_total{agent="a1"}')
    assert folded == 400 - exporter.ERROR_CODES_PER_AGENT + 4 * 400, folded
    assert _sample(last, 'hatchery_agent_invalid_messages_total{agent="a1"}') == len(REFUSED_KEYS)
    assert _sample(last, 'hatchery_bus_invalid_messages_total{kind="heartbeat"}') == len(REFUSED_KEYS)
    for key in REFUSED_KEYS:        # never a label, escaped or not
        assert key not in last and json.dumps(key)[1:-1] not in last
    assert "e\\u202e" not in last and "<b>" not in last


def test_only_a_refused_login_counts_as_an_auth_failure(fleet):
    before = _sample(_scrape(fleet), "hatchery_broker_auth_failures_total")
    baits = ("x disconnected, not authorised.", "not authorised", "Client y disconnected, not authorised.")
    for client_id in baits:
        client, answers = _client(fleet, AGENT, fleet["secrets"][AGENT], client_id)
        assert answers and not answers[0].is_failure, client_id      # a successful login
        client.disconnect()
        client.loop_stop()
    client, answers = _client(fleet, AGENT, "not-the-password", "refused-once")
    client.loop_stop()
    assert answers and answers[0].is_failure
    text = fleet["log"].read_text()
    assert "as x disconnected, not authorised. (p2" in text           # the bait is in the log
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d: Client \S+ disconnected, not authorised\.$",
                     text, re.M), text[-2000:]                          # and so is one refusal
    deadline, after = time.monotonic() + 10, before
    while time.monotonic() < deadline and after < before + 1:
        time.sleep(0.3)                 # follow_log polls the file once a second
        after = _sample(_scrape(fleet), "hatchery_broker_auth_failures_total")
    time.sleep(1.5)                     # and nothing more arrives after it
    assert _sample(_scrape(fleet), "hatchery_broker_auth_failures_total") == before + 1


@pytest.mark.parametrize("line, counted", [
    ("2026-01-01T00:00:00: Client <unknown> disconnected, not authorised.\n", True),
    ("1796288725: Client <unknown> disconnected, not authorised.", True),
    ("2026-01-01T00:00:00: Client a1 disconnected, not authorised.", True),
    ("1796288724: New client connected from 127.0.0.1:41831 as x disconnected, not authorised. "
     "(p2, c1, k60, u'a1').", False),
    ("1796288724: Client x disconnected, not authorised. disconnected.", False),
    ("1796288724: Received DISCONNECT from Client y disconnected, not authorised.", False),
    ("1796288724: Sending CONNACK to not authorised (0, 0)", False),
    ("Client y disconnected, not authorised.", False),
])
def test_the_refusal_line_is_matched_whole(line, counted):
    metrics = exporter.BusMetrics(inventory(type("B", (), {"host": "h", "port": 1}), ["a"]))
    metrics.observe_log_line(line)
    assert metrics.auth_failures == (1 if counted else 0)
