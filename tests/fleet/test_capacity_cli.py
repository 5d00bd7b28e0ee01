"""fleet.capacity on a real local fleet: a real Mosquitto and real handlers started by the
real CLI, measured from /proc, with the heartbeats for what the runtime cannot measure; and
the parsers on captured /proc text."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port
from fleetcli import run

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.inventory.load import load_inventory
from hatchery.provision.credentials import user_secret
from hatchery.core import procfs

# an engine that refuses at once: its agents can only be seen through their heartbeats
DEAD_ENGINE = "tcp://127.0.0.1:9"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("capacity")
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local", "  host: 127.0.0.1",
             "  bind: 127.0.0.1", f"  port: {free_port()}", "capacity:", "  headroom: 0%", "agents:"]
    for name in ("cap-a", "cap-b", "cap-c"):
        lines += [f"  {name}:", "    heartbeat_interval: 2"]
    lines += ["  far-away:", "    heartbeat_interval: 2"]     # never hatched: only its heartbeats tell
    inventory = directory / "fleet_inventory.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    run("broker.deploy", inventory=inventory, check=0)
    run("agent.hatch", "--name", "cap-a,cap-b,cap-c", inventory=inventory, check=0)
    yield inventory
    run("agent.stop", inventory=inventory)
    run("broker.stop", inventory=inventory)


def _handler_rss_kb(inventory: Path, name: str) -> int:
    pid = (inventory.parent / ".hatchery" / "agents" / name / "handler.pid").read_text().strip()
    return procfs.rss_kb(Path(f"/proc/{pid}/status").read_text())


def _usages(envelope: dict) -> dict:
    return {u["agent"]: u for host in envelope["items"] for u in host["agent_usage"]}


def test_each_host_its_agents_and_how_many_more_fit(fleet):
    # far-away's heartbeat, as its agent would publish it (its runtime runs no handler for it)
    inv = load_inventory(fleet)
    beat = contract.make_heartbeat("far-away", True, 50, mem_kb=40960, cpu=0.05)
    with bus_for(inv, username="far-away", password=user_secret(inv, "far-away")) as bus:
        bus.publish(contract.topic("far-away", "heartbeat"), contract.encode(beat), qos=1,
                    retain=True, timeout=5)
    time.sleep(2.5)                      # the handlers have used some CPU
    started = time.monotonic()
    envelope = json.loads(run("fleet.capacity", "--json", inventory=fleet, check=0).stdout)
    took = time.monotonic() - started
    [local] = envelope["items"]
    meminfo = procfs.parse_meminfo(Path("/proc/meminfo").read_text())
    assert local["agents"] == 4 and local["mem_total_kb"] == meminfo[0]
    assert abs(local["mem_available_kb"] - meminfo[1]) < meminfo[0] * 0.1
    assert local["cpus"] == os.cpu_count() and local["cpu_busy"] is not None
    usages = _usages(envelope)
    for name in ("cap-a", "cap-b", "cap-c"):
        assert usages[name]["source"] == "runtime: process RSS and CPU time"
        assert abs(usages[name]["mem_kb"] - _handler_rss_kb(fleet, name)) < 4096
        assert usages[name]["cpu"] is not None and usages[name]["cpu"] >= 0
    assert usages["far-away"] == {"agent": "far-away", "host": "local", "mem_kb": 40960,
                                  "cpu": 0.05, "source": "heartbeat"}
    median = envelope["median_agent"]
    assert median["sample"] == 4 and envelope["headroom"] == 0.0
    expected = (local["mem_available_kb"]) // median["mem_kb"]
    assert local["limited_by"] in ("memory", "cpu")
    if local["limited_by"] == "memory":
        assert local["fits"] == expected
    assert envelope["ok"] and envelope["problems"] == []
    print(f"fleet.capacity, 4 agents: {took:.2f} s (gather {envelope['gather_s']} s)")


def test_past_the_headroom_it_warns_and_exits_1_for_cron(fleet):
    result = run("fleet.capacity", "--headroom", "99%", inventory=fleet, check=1)
    assert "local: past its 99% headroom: memory" in result.stderr
    envelope = json.loads(run("fleet.capacity", "--headroom", "99%", "--json", inventory=fleet,
                              check=1).stdout)
    assert envelope["ok"] is False and "past its 99% headroom" in envelope["problems"][0]["message"]
    refused = run("fleet.capacity", "--headroom", "150%", inventory=fleet, check=2)
    assert "--headroom" in refused.stderr


def test_the_text_table_lists_hosts_and_with_agents_each_agent(fleet):
    out = run("fleet.capacity", "--agents", inventory=fleet, check=0).stdout
    assert "cap-b" in out and "runtime: process RSS and CPU time" in out
    header = next(line for line in out.splitlines() if line.startswith("HOST"))
    assert header.split()[:4] == ["HOST", "AGENTS", "AGENTS_MEMORY", "AGENTS_CPU"]
    assert any(line.startswith("local ") and " 4 " in line for line in out.splitlines())


def test_a_stopped_agent_leaves_the_count(fleet):
    run("agent.stop", "--name", "cap-c", inventory=fleet, check=0)
    try:
        envelope = json.loads(run("fleet.capacity", "--json", inventory=fleet, check=0).stdout)
        local = next(h for h in envelope["items"] if h["host"] == "local")
        assert local["agents"] == 3 and "cap-c" not in _usages(envelope)
    finally:
        run("agent.hatch", "--name", "cap-c", inventory=fleet, check=0)


def test_the_monitor_snapshot_shows_each_handlers_version_without_asking(fleet):
    """The VERSION column: the handlers put their version command's answer (roles/agent:
    python3 --version) in their heartbeats as a slug; no version-report was sent."""
    answer = subprocess.run(["python3", "--version"], capture_output=True, text=True).stdout
    expected = answer.strip().lower().replace(" ", "-")            # "Python 3.11.7": python-3.11.7
    deadline = time.monotonic() + 15
    while True:
        rows = json.loads(run("fleet.monitor", "--json", inventory=fleet, check=0).stdout)["items"]
        versions = {r["agent"]: r["version"] for r in rows}
        if all(versions.get(n) == expected for n in ("cap-a", "cap-b", "cap-c")) \
                or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert all(versions[n] == expected for n in ("cap-a", "cap-b", "cap-c")), versions
    text = run("fleet.monitor", inventory=fleet, check=0).stdout
    assert expected in next(line for line in text.splitlines() if line.startswith("cap-a"))


def test_the_exporter_serves_the_same_numbers_per_host(fleet):
    import urllib.request

    from tests.fleet.responders import serving_exporter
    inv, port = load_inventory(fleet), free_port()
    meminfo = procfs.parse_meminfo(Path("/proc/meminfo").read_text())
    with bus_for(inv, role="exporter") as bus, serving_exporter(inv, bus, port):
        def scrape():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            return text if 'hatchery_host_agents{host="local"} 4.0' in text else ""
        deadline = time.monotonic() + 15
        while not (text := scrape()) and time.monotonic() < deadline:
            time.sleep(0.3)
    assert text, "no capacity figures on /metrics"
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("hatchery_")}
    assert values['hatchery_host_memory_total_bytes{host="local"}'] == meminfo[0] * 1024
    assert values['hatchery_host_cpus{host="local"}'] == os.cpu_count()
    assert values['hatchery_host_past_headroom{host="local"}'] == 0.0
    assert values["hatchery_capacity_headroom_ratio"] == 0.0
    assert 'hatchery_host_agent_fits{host="local"}' in values


def test_an_unreachable_engine_and_a_stopped_broker_still_get_an_answer(tmp_path):
    """Nothing to ask but a dead engine and a broker that is not there: the host is listed
    with its problem and no figures, the notes say why, and nothing is past a headroom."""
    inventory = tmp_path / "fleet_inventory.yaml"
    inventory.write_text("broker:\n  runtime: local\n  host: 127.0.0.1\n  bind: 0.0.0.0\n"
                         f"  allow_plain: true\n  port: {free_port()}\nagents:\n  far-away:\n"
                         f"    runtime: docker\n    docker_host: {DEAD_ENGINE}\n")
    result = run("fleet.capacity", "--json", "--timeout", "1", inventory=inventory, check=0)
    envelope = json.loads(result.stdout)
    [far] = envelope["items"]
    assert far["host"] == DEAD_ENGINE and far["fits"] is None and far["mem_total_kb"] is None
    assert "cannot talk to the Docker engine" in far["problem"]
    assert any(n.startswith("heartbeats not read") for n in envelope["notes"])
    text = run("fleet.capacity", "--timeout", "1", inventory=inventory, check=0)
    assert "heartbeats not read" in text.stderr


# --- the parsers, on captured text -----------------------------------------------------------

MEMINFO = """MemTotal:       24684120 kB
MemFree:        19112764 kB
MemAvailable:   21453328 kB
Buffers:          191840 kB
"""


def test_proc_parsers():
    assert procfs.parse_meminfo(MEMINFO) == (24684120, 21453328)
    assert procfs.parse_meminfo("MemTotal: 12 kB\n") == (12, None)
    assert procfs.parse_loadavg("11.54 8.99 7.53 5/1043 12345\n") == 11.54
    assert procfs.parse_loadavg("") is None
    stat = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 2105 0 0 0 120 35 0 0 20 0 3 0"
    assert procfs.cpu_ticks(stat) == 155
    assert procfs.cpu_ticks("garbage") is None
    assert procfs.rss_kb("Name:\tpython\nVmRSS:\t   25344 kB\n") == 25344
