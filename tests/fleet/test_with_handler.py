"""The control side against the REAL agent_kit CommandHandler (not a test responder)."""

from __future__ import annotations

import time

import pytest
from responders import clear_retained, inventory, unique

from agent_kit.config import AgentConfig
from agent_kit.handler import CommandHandler
from hatchery.bus import commands as fleet
from hatchery.bus.client import BusClient
from hatchery.observe import health, monitor


@pytest.fixture
def handlers(module_broker):
    names = [unique("hnd"), unique("hnd")]
    inv = inventory(module_broker, names)
    running = []
    for name in names:
        config = AgentConfig(name=name, manager=inv.manager, broker_host=module_broker.host,
                             broker_port=module_broker.port, version_command="echo 4.5.6",
                             session_expiry=0)
        handler = CommandHandler(config)
        handler.start()
        assert handler.wait_connected(5)
        running.append(handler)
    time.sleep(0.1)   # birth and first heartbeat are retained
    yield inv, running
    for handler in running:
        if handler.connected:
            handler.stop()
    clear_retained(module_broker, names)


def test_commands_collect_snapshot_and_health_with_real_handlers(module_broker, handlers):
    inv, running = handlers
    with BusClient(module_broker.host, module_broker.port) as bus:
        versions = fleet.run_command(inv, "version-report", timeout=3, bus=bus)
        collected = fleet.collect(inv, timeout=3, bus=bus)
        reload = fleet.run_command(inv, "config-reload", timeout=3, bus=bus)
        snap = monitor.snapshot(inv, bus)
        running[1].stop()
        report = health.bus_health(inv, bus)
    assert versions.ok and [r["answer"] for r in versions.rows()] == ["4.5.6", "4.5.6"]
    assert collected.ok and collected.mode == "broadcast"
    assert not reload.ok and {r.error for r in reload.replies} == {"no-reload-configured"}
    assert all(line.split(":")[1].strip() == "answered with an error" for line in reload.problems)
    assert [row["state"] for row in snap.rows()] == ["online", "online"]
    assert all(row["errors"] == 0 for row in snap.rows())
    assert [a.verdict for a in report.agents] == ["online", "offline"]
