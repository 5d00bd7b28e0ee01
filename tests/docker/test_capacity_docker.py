"""fleet.capacity on the docker runtime: real agent containers on the real engine, measured
by the engine's stats and `docker info`; the stats parser on captured answers."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from dockerhelpers import cli, client, hatched_fleet  # noqa: F401 (fixture)

from hatchery.core import procfs
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory
from hatchery.runtime.docker import container_usage


@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):
    prefix = f"hcap-{secrets.token_hex(3)}-"
    root = tmp_path_factory.mktemp("capdocker")
    agents = [AgentSpec(n, runtime=DOCKER, heartbeat_interval=5.0) for n in (f"{prefix}a", f"{prefix}b")]
    yield from hatched_fleet(root, prefix, agents, cli_extra="capacity:\n  headroom: 0%\n")


def _capacity(inv: Inventory, *flags) -> subprocess.CompletedProcess:
    return cli(inv, "fleet.capacity", *flags, timeout=120)


@pytest.mark.docker
def test_the_engine_answers_for_its_host_and_its_containers(client, fleet):
    started = time.monotonic()
    result = _capacity(fleet, "--json")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    envelope = json.loads(result.stdout)
    [host] = envelope["items"]
    info = client.info()
    assert host["host"] == "local" and host["agents"] == 2
    assert host["mem_total_kb"] == info["MemTotal"] // 1024 and host["cpus"] == info["NCPU"]
    assert "/proc through a container" in host["source"], host["source"]
    # a container sees the host's /proc/meminfo: the same machine as ours
    total, available = procfs.parse_meminfo(Path("/proc/meminfo").read_text())
    assert abs(host["mem_available_kb"] - available) < total * 0.1
    usages = {u["agent"]: u for u in host["agent_usage"]}
    assert set(usages) == set(fleet.agents)
    for name, found in usages.items():
        assert found["source"] == "runtime: container stats" and found["cpu"] is not None
        stats = client.api.stats(f"{fleet.broker.container_prefix}agent-{name}", stream=False,
                                 one_shot=True)
        assert abs(found["mem_kb"] - container_usage(None, stats)[0]) < 8192   # within 8 MiB
        assert 1024 < found["mem_kb"] < 512 * 1024
    print(f"fleet.capacity, 2 docker agents: {took:.2f} s (gather {envelope['gather_s']} s)")


@pytest.mark.docker
def test_a_stopped_container_is_not_counted(client, fleet):
    name = next(iter(fleet.agents))
    container = client.containers.get(f"{fleet.broker.container_prefix}agent-{name}")
    container.stop(timeout=5)
    try:
        envelope = json.loads(_capacity(fleet, "--json").stdout)
        [host] = envelope["items"]
        assert host["agents"] == 1 and name not in {u["agent"] for u in host["agent_usage"]}
    finally:
        container.start()


# --- the parser, on the engine's answers (API 1.41, cgroup v2) ---------------------------------

BEFORE = {"read": "2026-12-03T10:26:02.490790605Z",
          "cpu_stats": {"cpu_usage": {"total_usage": 202_267_227}, "online_cpus": 2},
          "memory_stats": {"usage": 31_088_640, "limit": 25_276_538_880,
                           "stats": {"inactive_file": 5_242_880, "active_file": 1_048_576, "anon": 23_068_672}}}
AFTER = {"read": "2026-12-03T10:26:02.991290605Z",
         "cpu_stats": {"cpu_usage": {"total_usage": 227_292_227}, "online_cpus": 2},
         "memory_stats": {"usage": 31_096_832, "limit": 25_276_538_880,
                          "stats": {"inactive_file": 5_242_880, "active_file": 1_048_576, "anon": 23_076_864}}}


def test_container_usage_reads_memory_less_cache_and_cpu_between_samples():
    memory, cpu = container_usage(BEFORE, AFTER)
    assert memory == (31_096_832 - 5_242_880) // 1024
    assert cpu == 0.05                           # 25 ms of CPU in 500.5 ms
    assert container_usage(None, AFTER) == (memory, None)
    v1 = {**AFTER, "memory_stats": {"usage": 10_485_760, "stats": {"total_inactive_file": 1_048_576}}}
    assert container_usage(None, v1)[0] == 9216
    assert container_usage(AFTER, BEFORE)[1] is None, "time going backwards is no figure"
    assert container_usage(None, {"memory_stats": {}})[0] is None
