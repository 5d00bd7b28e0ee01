"""The exporter's own /metrics text: what Prometheus reads from it is what it read from
prometheus_client's generate_latest over the same state, and the server it runs
answers any scraper (gzip or not) and survives a failing render. No broker: the
exporter is fed messages the way the bus feeds it."""

from __future__ import annotations

import gzip
import time
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent_kit import contract
from hatchery.bus.messages import Message
from hatchery.core.intent import IntentBook
from hatchery.core.ports import free_port
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import exporter
from hatchery.observe.metrics_http import start_server
from hatchery.observe.metrics_text import CONTENT_TYPE


def fed_metrics(count: int = 50, book=None, clock=None) -> exporter.BusMetrics:
    names = [f"agent-{i:03d}" for i in range(count)]
    inv = Inventory(Path("/nonexistent/fleet_inventory.yaml"), manager="zephyr",
                    agents={n: AgentSpec(n) for n in names},
                    state_dir=Path("/nonexistent/.hatchery"))
    now = time.time()
    metrics = exporter.BusMetrics(inv, clock=clock or (lambda: now + 1.5),
                                  intent=lambda: book[0] if book else IntentBook())
    for i, name in enumerate(names):
        state = "offline" if i % 7 == 0 else "online"
        metrics.observe(Message(contract.topic(name, "status"),
                                contract.encode(contract.make_state(name, state)), True, now))
        errors = {"bad-json": i, f"code-{i % 3}": 1}
        beat = contract.make_heartbeat(name, i % 5 != 0, 12.5 + i, mem_kb=2048 + i, cpu=0.25,
                                       errors=errors, interval=600, version="1.2.3")
        metrics.observe(Message(contract.topic(name, "heartbeat"), contract.encode(beat), True, now))
        alert = contract.make_alert(name, "dropped-message", count=i + 1)
        metrics.observe(Message(contract.topic(name, "alert"), contract.encode(alert), False, now))
    return metrics


def parsed(text: str) -> dict:
    return {f.name: (f.type, f.documentation,
                     sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in f.samples))
            for f in text_string_to_metric_families(text)}


def test_the_text_reads_back_as_the_registry_would_have_written_it():
    metrics = fed_metrics()
    ours = parsed(metrics.render().decode())
    theirs = parsed(generate_latest(exporter.registry_for(metrics)).decode())
    assert ours == theirs
    assert ours["hatchery_agent_up"][2][:2] == [
        ("hatchery_agent_up", (("agent", "agent-000"),), 0.0),
        ("hatchery_agent_up", (("agent", "agent-001"),), 1.0)]
    assert ("hatchery_agent_dropped_commands_total", (("agent", "agent-003"),), 4.0) in \
        ours["hatchery_agent_dropped_commands"][2]


def test_cached_lines_follow_every_change_the_state_and_the_intent_go_through():
    """Scrape, change things, scrape again: each time the same as rendering from scratch."""
    now = [time.time() + 1.5]
    book = [IntentBook()]
    metrics = fed_metrics(30, book=book, clock=lambda: now[0])

    def same():
        assert parsed(metrics.render().decode()) == \
            parsed(generate_latest(exporter.registry_for(metrics)).decode())

    same()
    received = time.time()
    beat = contract.make_heartbeat("agent-001", True, 99.0, mem_kb=1, cpu=0.5,
                                   errors={f"new-{i}": i for i in range(20)}, interval=600)
    metrics.observe(Message(contract.topic("agent-001", "heartbeat"), contract.encode(beat),
                            False, received))
    metrics.observe(Message(contract.topic("agent-002", "status"),
                            contract.encode(contract.make_state("agent-002", "offline")), False,
                            received))
    metrics.observe(Message(contract.topic("stranger", "status"),
                            contract.encode(contract.make_state("stranger", "online")), False,
                            received))
    same()
    now[0] += 30                                  # ages move on without any message
    same()
    book[0] = IntentBook(stopped={"agent-003": None}, retired=frozenset({"agent-004"}))
    metrics._book_at = float("-inf")              # read the intent again now
    same()
    text = metrics.render().decode()
    assert 'hatchery_agent_stopped{agent="agent-003"} 1.0' in text
    assert 'agent="agent-004"' not in text


def test_the_server_answers_plain_and_gzip_and_survives_a_failing_render():
    metrics = fed_metrics(5)
    broken = {"now": False}

    def render():
        if broken["now"]:
            raise ValueError("boom")
        return metrics.render()

    port = free_port()
    server, thread = start_server(port, "127.0.0.1", render)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            plain = answer.read()
            assert answer.headers["Content-Type"] == CONTENT_TYPE
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert parsed(gzip.decompress(answer.read()).decode()) == parsed(plain.decode())
        broken["now"] = True
        try:
            urllib.request.urlopen(url, timeout=5)
            raise AssertionError("a failing render must answer 500")
        except urllib.error.HTTPError as error:
            assert error.code == 500
        broken["now"] = False
        with urllib.request.urlopen(url, timeout=5) as answer:
            assert parsed(answer.read().decode()) == parsed(plain.decode())
        assert server.failures == 1
    finally:
        server.shutdown()
        thread.join(5)
