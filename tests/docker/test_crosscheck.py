"""Threat 3, poisoned telemetry: the bus is advisory, the Docker API decides.

The pure comparison runs on ``docker inspect`` State captured from a real
engine (running, unhealthy, exited, restarting). The docker tests hatch one
real agent container on a hermetic fleet (random prefix, removed even when a
test fails), then lie on the bus with the agent's own credentials, the way a
compromised agent could: the ACL lets it speak only about itself, and that
is exactly what it forges.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from dockerhelpers import cli, client, hatch_changes, hatched_fleet  # noqa: F401 (fixture)

from agent_kit import contract, messages
from hatchery.bus.connection import bus_for
from hatchery.core.plan import apply_plan
from hatchery.inventory.model import DOCKER, AgentSpec, Inventory
from hatchery.observe import crosscheck
from hatchery.core.intent import Intent
from hatchery.observe.crosscheck import (
    CONSISTENT,
    INCONSISTENT,
    compare,
    runtime_text,
)
from hatchery.observe.fleetstate import AgentFacts, Judgement
from hatchery.observe.health import OFFLINE, ONLINE, STALE, STOPPED, bus_health
from hatchery.runtime.base import AgentState
from hatchery.observe.verify import verify
from hatchery.provision.credentials import user_secret
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import state_of

rt = for_runtime(DOCKER)
NOW = datetime(2026, 11, 24, 19, 21, 0, tzinfo=timezone.utc)
# `docker inspect` State and RestartCount, captured from Docker's engine on this host
CAPTURED = {
    "running": {"State": {"Status": "running", "Running": True, "Restarting": False, "Pid": 16051,
                          "ExitCode": 0, "StartedAt": "2026-11-24T19:20:41.853576078Z",
                          "FinishedAt": "0001-01-01T00:00:00Z"}, "RestartCount": 0},
    "unhealthy": {"State": {"Status": "running", "Running": True, "Restarting": False,
                            "Pid": 16118, "ExitCode": 0,
                            "StartedAt": "2026-11-24T19:20:42.02445081Z",
                            "FinishedAt": "0001-01-01T00:00:00Z",
                            "Health": {"Status": "unhealthy", "FailingStreak": 6}},
                  "RestartCount": 0},
    "exited": {"State": {"Status": "exited", "Running": False, "Restarting": False, "Pid": 0,
                         "ExitCode": 3, "StartedAt": "2026-11-24T19:20:42.189577125Z",
                         "FinishedAt": "2026-11-24T19:20:42.191795554Z"}, "RestartCount": 0},
    "restarting": {"State": {"Status": "restarting", "Running": True, "Restarting": True,
                             "Pid": 0, "ExitCode": 3,
                             "StartedAt": "2026-11-24T19:20:46.676252262Z",
                             "FinishedAt": "2026-11-24T19:20:47.69420915Z"}, "RestartCount": 4},
}


def docker_state(name: str, attrs):
    """The docker runtime's AgentState of a captured ``docker inspect`` (None: no container)."""
    if attrs is None:
        return AgentState(name, DOCKER, False, status="missing")
    return state_of(name, attrs, host="local")


def _bus_view(verdict, uptime: float = 5, sent: datetime = NOW, intent=Intent.RUNNING) -> tuple:
    facts = AgentFacts("a", online=verdict != OFFLINE,
                       beat=messages.Heartbeat("a", sent.timestamp(), True, uptime))
    return facts, Judgement("a", verdict, "", 1.0, 10.0, intent)


# --- the pure comparison, on captured data ------------------------------------------------

def test_captured_states_read_as_typed_agent_states():
    running = docker_state("a", CAPTURED["running"])
    assert running.up and running.health is None and running.runtime == "docker"
    assert running.started_at == datetime(2026, 11, 24, 19, 20, 41, 853576, tzinfo=timezone.utc).timestamp()
    assert not docker_state("a", CAPTURED["unhealthy"]).up
    assert runtime_text(docker_state("a", CAPTURED["exited"])) == "exited, 0 restarts"
    stopped = {"State": {**CAPTURED["exited"]["State"], "Health": {"Status": "unhealthy"}}}
    assert docker_state("a", stopped).health is None    # stale: kept from when it ran
    restarting = docker_state("a", CAPTURED["restarting"])
    assert restarting.restarting and restarting.restarts == 4     # compare counts it as down
    assert docker_state("a", None).status == "missing"


@pytest.mark.parametrize("captured, bus, intent, expected", [
    ("running", ONLINE, Intent.RUNNING, CONSISTENT),
    ("exited", ONLINE, Intent.RUNNING, INCONSISTENT),       # the forged heartbeat of a stopped agent
    ("unhealthy", ONLINE, Intent.RUNNING, INCONSISTENT),
    ("restarting", ONLINE, Intent.RUNNING, INCONSISTENT),
    (None, ONLINE, Intent.RUNNING, INCONSISTENT),           # no container at all
    ("running", OFFLINE, Intent.RUNNING, INCONSISTENT),     # running, but the bus says its Will fired
    ("running", STALE, Intent.RUNNING, INCONSISTENT),
    ("exited", OFFLINE, Intent.RUNNING, CONSISTENT),        # both say down
    ("restarting", STALE, Intent.RUNNING, CONSISTENT),
    ("exited", STOPPED, Intent.STOPPED, CONSISTENT),        # the operator stopped it, and it is
    ("running", STOPPED, Intent.STOPPED, INCONSISTENT),     # stopped on purpose, yet it runs
    ("running", OFFLINE, Intent.IN_ROLLOUT, CONSISTENT),    # a rollout is replacing it
])
def test_compare_flags_every_disagreement(captured, bus, intent, expected):
    facts, judged = _bus_view(bus, sent=NOW - timedelta(seconds=2), intent=intent)
    state = docker_state("a", CAPTURED[captured] if captured else None)
    result = compare(facts, judged, state, NOW.timestamp())
    assert result.verdict == expected, result.reason
    assert result.docker == runtime_text(state) and result.bus == bus


def test_a_heartbeat_claiming_more_uptime_than_the_container_has_is_inconsistent():
    state = docker_state("a", CAPTURED["running"])            # started 19:20:41.85
    now = NOW.timestamp()
    honest = compare(*_bus_view(ONLINE, uptime=15), state, now)
    assert honest.verdict == CONSISTENT
    lying = compare(*_bus_view(ONLINE, uptime=3600), state, now)
    assert lying.verdict == INCONSISTENT and "3600s of uptime" in lying.reason
    # a heartbeat from before the last start belongs to an earlier life: no claim about this one
    earlier = compare(*_bus_view(ONLINE, uptime=3600, sent=NOW - timedelta(seconds=60)), state, now)
    assert earlier.verdict == CONSISTENT


def test_a_container_that_just_started_may_not_have_reported_yet():
    facts, judged = _bus_view(OFFLINE)
    fresh = AgentState("a", "docker", True, started_at=NOW.timestamp() - 3, status="running")
    assert compare(facts, judged, fresh, NOW.timestamp()).verdict == CONSISTENT
    starting = replace(docker_state("a", CAPTURED["running"]), health="starting")
    assert compare(facts, judged, starting, NOW.timestamp()).verdict == CONSISTENT


def test_a_runtime_that_cannot_be_asked_is_no_disagreement():
    facts, judged = _bus_view(ONLINE)
    unreachable = AgentState("a", "docker", None, status="unreachable", problem="engine down")
    result = compare(facts, judged, unreachable, NOW.timestamp())
    assert result.verdict == CONSISTENT and "could not be asked (engine down)" in result.reason


# --- a real agent container on a real engine ---------------------------------------------------

@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):
    prefix = f"hxc-{secrets.token_hex(3)}-"
    root = tmp_path_factory.mktemp("crosscheck")
    yield from hatched_fleet(root, prefix, [AgentSpec(f"{prefix}a", runtime=DOCKER, heartbeat_interval=5.0)])


def _bus_health_cli(inv: Inventory, *flags) -> subprocess.CompletedProcess:
    return cli(inv, "fleet.bus-health", *flags, timeout=60)


def _agent(inv: Inventory) -> AgentSpec:
    return next(iter(inv.agents.values()))


def _check(inv: Inventory, threshold=None):
    with bus_for(inv, role="monitor") as bus:
        health, docker = crosscheck.bus_and_docker(inv, bus, threshold=threshold)
    return health.agents[0], docker


def _wait_for(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            assert value, f"{what} after {timeout}s"
            return value
        time.sleep(0.3)


def _forge(inv: Inventory, kind: str, payload: dict) -> None:
    """Publish retained on the agent's own topic with the agent's own credentials."""
    name = _agent(inv).name
    with bus_for(inv, username=name, password=user_secret(inv, name)) as liar:
        liar.publish(contract.topic(name, kind), contract.encode(payload), qos=1, retain=True,
                     timeout=5)


def _docker_crosscheck(report) -> list:
    return [c for c in report.checks if "agrees with the Docker API" in c.name]


@pytest.mark.docker
def test_a_running_agent_that_reports_online_is_consistent(fleet):
    # both sources settle: the heartbeat arrives, Docker's healthcheck passes its start period
    health, docker = _wait_for(lambda: (r := _check(fleet))[0].verdict == ONLINE
                               and r[1].agents[0].docker.startswith("running (healthy)") and r,
                               40, "the hatched agent never became healthy on bus and Docker")
    assert docker.ok and docker.agents[0].verdict == CONSISTENT


@pytest.mark.docker
def test_a_forged_offline_state_for_a_running_container_is_inconsistent(fleet):
    name = _agent(fleet).name
    _forge(fleet, "status", contract.make_state(name, contract.STATE_OFFLINE))
    try:
        health, docker = _check(fleet, threshold=1.0)   # the container is older than 1 s
        assert health.verdict == OFFLINE
        assert not docker.ok and docker.problems == [
            f"{name}: inconsistent: Docker says running (healthy), 0 restarts, the bus says offline"]
    finally:
        _forge(fleet, "status", contract.make_state(name, contract.STATE_ONLINE))


@pytest.mark.docker
def test_a_forged_heartbeat_for_a_stopped_container_is_inconsistent(client, fleet):
    agent = _agent(fleet)
    assert apply_plan("agent.stop", rt.agent_stop_plan(fleet, agent)).ok
    _wait_for(lambda: _check(fleet)[0].verdict == OFFLINE, 10, "no offline state after stop")
    # the lie: a fresh ok heartbeat and an online state, while the container is stopped
    _forge(fleet, "heartbeat", contract.make_heartbeat(agent.name, True, 86400))
    _forge(fleet, "status", contract.make_state(agent.name, contract.STATE_ONLINE))
    with bus_for(fleet, role="monitor") as bus:
        assert bus_health(fleet, bus).ok            # the bus alone believes it
    health, docker = _check(fleet)
    assert health.verdict == ONLINE
    assert not docker.ok and docker.agents[0].verdict == INCONSISTENT
    assert docker.agents[0].reason == "the bus says online, Docker says exited, 0 restarts"
    # through the CLI: plain bus-health is fooled, --verify-docker is not
    assert _bus_health_cli(fleet).returncode == 0
    # forged again: a loaded machine can take more than the 10 s threshold for two CLI starts
    _forge(fleet, "heartbeat", contract.make_heartbeat(agent.name, True, 86400))
    done = _bus_health_cli(fleet, "--verify-docker", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [a["verdict"] for a in report["items"]] == [ONLINE] and not report["ok"]
    assert report["docker"]["problems"] == [
        {"message": f"{agent.name}: inconsistent: the bus says online, Docker says exited, 0 restarts"}]
    # invoke verify carries the same cross-check and fails on it
    checks = _docker_crosscheck(verify(fleet, timeout=2))
    assert [c.ok for c in checks] == [False] and "Docker says exited" in checks[0].detail


@pytest.mark.docker
def test_after_docker_starts_it_again_both_agree(client, fleet):
    agent = _agent(fleet)
    changes = hatch_changes(fleet, agent)
    assert [c.action for c in changes] == ["start"] and apply_plan("agent.hatch", changes).ok
    _, docker = _wait_for(lambda: (r := _check(fleet))[1].ok and r, 30,
                          "bus and Docker never agreed after the restart")
    assert docker.agents[0].docker.startswith("running")
    checks = _docker_crosscheck(verify(fleet, timeout=5))
    assert [c.ok for c in checks] == [True], [(c.name, c.detail) for c in checks]
