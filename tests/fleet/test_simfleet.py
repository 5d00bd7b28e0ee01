"""The simulated fleet speaks the real contract: the control side sees it like real agents."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from responders import inventory, unique

from hatchery.bus import commands as fleet
from hatchery.bus.client import BusClient
from hatchery.observe import health, monitor

SIMFLEET = Path(__file__).resolve().parents[2] / "bench" / "simfleet.py"
COUNT = 60   # above busclient.WILDCARD_ABOVE: exercises the wildcard subscription


@pytest.fixture
def simfleet(module_broker):
    prefix, manager = unique("sim"), unique("mgr")
    proc = subprocess.Popen([sys.executable, str(SIMFLEET), "--port", str(module_broker.port),
                             "--count", str(COUNT), "--prefix", prefix, "--manager", manager,
                             "--silent", "2", "--crash", "--stop-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] == COUNT
        names = [f"{prefix}-{i:04d}" for i in range(COUNT)]
        yield inventory(module_broker, names, manager=manager), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_collect_monitor_and_health_on_a_simulated_fleet(module_broker, simfleet):
    inv, proc = simfleet
    with BusClient(module_broker.host, module_broker.port) as bus:
        started = time.perf_counter()
        result = fleet.collect(inv, timeout=1.0, bus=bus)
        elapsed = time.perf_counter() - started
        snap = monitor.snapshot(inv, bus)
        direct = fleet.run_command(inv, "version-report", names=list(inv.agents)[2:5], bus=bus)
        proc.terminate()           # --crash: the agents vanish, their Wills fire
        proc.wait(10)
        time.sleep(0.3)
        after = health.bus_health(inv, bus)
    assert len(result.answered) == COUNT - 2
    assert [m["state"] for m in result.missing] == ["silent", "silent"]
    assert 1.0 <= elapsed < 2.0, "waited the timeout for the two silent agents only"
    assert sum(row["state"] == "online" for row in snap.rows()) == COUNT
    assert {row["version"] for row in snap.rows()} == {"sim-1.0"}
    assert direct.ok and {r["answer"] for r in direct.rows()} == {"sim-1.0"}
    assert {a.verdict for a in after.agents} == {"offline"}


def test_a_fleet_split_over_processes_answers_and_its_wills_fire(module_broker):
    """--procs 2: two shard processes behind one ready line; a raw paho client
    sees every birth, and every Will when the shards vanish (--crash)."""
    import paho.mqtt.client as mqtt

    from agent_kit import contract
    prefix, manager, count = unique("shard"), unique("mgr"), 12
    names = [f"{prefix}-{i:04d}" for i in range(count)]
    inv = inventory(module_broker, names, manager=manager)
    proc = subprocess.Popen([sys.executable, str(SIMFLEET), "--port", str(module_broker.port),
                             "--count", str(count), "--prefix", prefix, "--manager", manager,
                             "--procs", "2", "--crash", "--stop-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["ready"] == count and ready["procs"] == 2 and len(ready["pids"]) == 2
        with BusClient(module_broker.host, module_broker.port) as bus:
            result = fleet.collect(inv, timeout=3.0, bus=bus)
            assert sorted(result.answered) == names
            states = {}
            raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

            def on_message(client, userdata, message):
                name = contract.parse_topic(message.topic)[0]
                if name in names:          # the module's broker holds other tests' agents
                    states[name] = contract.decode(message.payload)["state"]

            raw.on_message = on_message
            raw.connect(module_broker.host, module_broker.port)
            raw.subscribe("fleet/+/status")
            raw.loop_start()
            try:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and len(states) < count:
                    time.sleep(0.05)
                assert set(states.values()) == {"online"}
                proc.stdin.close()          # the parent stops; the shards vanish
                proc.wait(15)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and set(states.values()) != {"offline"}:
                    time.sleep(0.05)
            finally:
                raw.disconnect()
                raw.loop_stop()
        assert len(states) == count and set(states.values()) == {"offline"}
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def test_the_simulators_templates_write_what_the_contract_accepts():
    """simfleet builds heartbeats and replies from templates, not json.dumps: they must
    decode to valid payloads equal to what contract.make_* would have made."""
    sys.path.insert(0, str(SIMFLEET.parent))
    import simfleet as sim

    from agent_kit import contract
    ts = contract.now_rfc3339()
    beat = contract.decode((sim.BEAT % (1, ts, "sim-0001", 12.5, 600.0, sim.VERSION)).encode())
    assert contract.validate_heartbeat(beat)["uptime"] == 12.5
    for verb in contract.VERBS:
        command = contract.make_command(verb, "a1B2_c3-d4")
        reply = contract.decode((sim.REPLY % (1, ts, "sim-0001", command["id"], verb,
                                              sim.RESULTS.get(verb, "{}"))).encode())
        expected = contract.make_reply("sim-0001", command, True,
                                       result={"version": sim.VERSION}
                                       if verb == "version-report" else {})
        assert contract.validate_status(reply) == {**expected, "ts": ts}
