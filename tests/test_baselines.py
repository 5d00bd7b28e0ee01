"""The fleet benchmark's baselines, on 3 agents, so the bench code cannot rot silently.

Real parts: a fresh Mosquitto and bench/simfleet.py (through fleet_bench's
helpers), real mosquitto_pub/mosquitto_sub processes, a real sshd on a
loopback port with generated keys under tmp.
"""

from __future__ import annotations

import secrets
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import baselines  # noqa: E402
import fleet_bench  # noqa: E402

from agent_kit import contract  # noqa: E402

AGENTS = 3


@pytest.fixture(scope="module")
def fleet3(tmp_path_factory):
    """(port, names): 3 simulated agents on their own broker."""
    manager = f"t-{secrets.token_hex(3)}"
    broker, port = fleet_bench.start_broker(tmp_path_factory.mktemp("baselines-broker"), AGENTS)
    try:
        sim, _ = fleet_bench.start_simfleet(port, AGENTS, manager)
        try:
            yield port, list(fleet_bench.inventory_for(port, AGENTS, manager).agents)
        finally:
            baselines._stop_simfleet(sim)
    finally:
        fleet_bench.stop(broker)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines-ssh")
    with baselines.ssh_server(root / "ssh") as target:
        yield target, root


@pytest.fixture
def health(sshd, fleet3):
    _, root = sshd
    _, names = fleet3
    return baselines.write_health_files(root / f"health-{secrets.token_hex(2)}", names), names


def test_shell_way_gets_every_agents_reply(fleet3):
    port, names = fleet3
    result = baselines.shell_way(port, names)
    assert (result.asked, result.answered, result.missing) == (AGENTS, AGENTS, [])
    assert not result.extrapolated and result.ms == result.measured_ms > 0


def test_shell_fanout_gets_every_agents_reply(fleet3):
    port, names = fleet3
    result = baselines.shell_fanout(port, names)
    assert (result.answered, result.missing) == (AGENTS, [])


def test_shell_ask_one_returns_the_reply_to_its_own_command(fleet3):
    port, names = fleet3
    answer = baselines.shell_ask_one(port, names[1])
    reply = answer[names[1]]
    assert (reply["kind"], reply["agent"], reply["verb"], reply["ok"]) == \
        ("reply", names[1], "health-check", True)


def test_a_reply_to_another_command_does_not_count():
    command = contract.make_command("health-check", "mine")
    other = contract.make_reply("sim-0000", contract.make_command("health-check", "theirs"), True)
    assert baselines._matching_reply(contract.encode(other), command) is None
    mine = contract.make_reply("sim-0000", command, True)
    assert baselines._matching_reply(contract.encode(mine), command)["id"] == "mine"


def test_ssh_polling_reads_every_agents_health(sshd, health):
    target, _ = sshd
    health_dir, names = health
    result = baselines.ssh_polling(target, names, health_dir)
    assert (result.asked, result.answered, result.missing) == (AGENTS, AGENTS, [])


def test_ssh_group_reads_each_agent_its_own_health(sshd, health):
    target, _ = sshd
    health_dir, names = health
    answers = baselines.ssh_ask_group(target, names, health_dir)
    assert {name: beat["agent"] for name, beat in answers.items()} == {n: n for n in names}


def test_ssh_refuses_a_host_key_other_than_the_pinned_one(sshd, health, tmp_path):
    target, _ = sshd
    health_dir, names = health
    baselines._keygen(tmp_path / "impostor")     # same type as the real one: only the key differs
    impostor = baselines._public_key(tmp_path / "impostor.pub")
    wrong = baselines.SshTarget(target.port, target.user, target.client_key, impostor,
                                target.config)
    assert baselines.ssh_ask_one(wrong, names[0], health_dir) == {}
    assert baselines.ssh_ask_one(target, names[0], health_dir)[names[0]]["agent"] == names[0]


def _slow_ask(asked: list, seconds: float):
    def ask(chunk):
        time.sleep(seconds)
        asked.extend(chunk)
        return {n: True for n in chunk}
    return ask


def test_sweep_projected_past_its_budget_stops_at_the_sample_and_extrapolates():
    asked = []
    names = [f"a-{i}" for i in range(10)]
    # 2 x 30 ms measured, 10 agents projected at 300 ms: over the 200 ms budget
    result = baselines.sweep(names, _slow_ask(asked, 0.03), budget_s=0.2, sample=2)
    assert asked == ["a-0", "a-1"]
    assert (result.asked, result.answered, result.extrapolated) == (2, 2, True)
    assert result.ms == pytest.approx(result.measured_ms * 5)


def test_sweep_within_its_budget_asks_everyone():
    asked = []
    result = baselines.sweep(["a", "b", "c"], _slow_ask(asked, 0), budget_s=60, sample=1)
    assert asked == ["a", "b", "c"] and not result.extrapolated and result.answered == 3


def test_sweep_stops_once_the_budget_is_spent_even_before_the_sample():
    asked = []
    result = baselines.sweep(["a", "b", "c"], _slow_ask(asked, 0), budget_s=0.0, sample=100)
    assert asked == ["a"] and result.extrapolated
    assert result.ms == pytest.approx(result.measured_ms * 3)


def test_markdown_shows_ratios_against_hatchery():
    sweep = baselines.Sweep(agents=10, asked=10, answered=10, measured_ms=50.0, ms=50.0,
                            extrapolated=False).as_dict()
    sampled = dict(sweep, ms=2000.0, extrapolated=True)
    row = {"agents": 10, "hatchery": {"ms": 5.0, "answered": 10}, "shell_way": sweep,
           "shell_fanout": sweep, "ssh_polling": sampled, "ssh_group": sweep}
    table = baselines.markdown([row])
    assert "| 10 | 5.0 (10) | 50 (×10; 10/10) |" in table
    assert "2,000 (×400; 10/10 extrapolated)" in table
