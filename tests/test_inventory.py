"""The inventory loader: bad cases are data (tests/inventory_cases/), good cases below."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hatchery.errors import EXIT_USAGE, InventoryError, UsageError
from hatchery.inventory.load import INVENTORY_ENV, load_inventory
from hatchery.inventory.model import AgentSpec, ReloadSpec
from inventoryfiles import EXAMPLE, PRECEDENCE, problems_of, write

CASES = Path(__file__).parent / "inventory_cases"
EXPECT_RE = re.compile(r"^# expect: (?P<where>\S+) \| (?P<key>.+?) \| (?P<text>.+)$")


def expectations(case: Path) -> list:
    found = []
    for line in case.read_text(encoding="utf-8").splitlines():
        match = EXPECT_RE.match(line)
        if match:
            found.append(match.groupdict())
    return found


# --- bad cases: one file each, with its expected problems --------------------

BAD_CASES = sorted(CASES.glob("*.yaml"))


def test_every_case_file_states_what_it_expects():
    assert len(BAD_CASES) >= 40
    assert all(expectations(case) for case in BAD_CASES), "a case without '# expect:'"


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda p: p.stem)
def test_bad_inventory_is_rejected_with_file_line_and_key(case):
    expected = expectations(case)
    error = problems_of(case)
    assert len(error.problems) == len(expected), [str(p) for p in error.problems]
    for want, got in zip(expected, error.problems):
        file, _, line = want["where"].rpartition(":")
        assert got.path.endswith(file or case.name)
        assert got.line == (None if line == "-" else int(line)), str(got)
        assert got.keypath == want["key"]
        assert want["text"] in str(got)
    # The one message a person reads names the file and every problem.
    count = f"{len(expected)} problem" + ("" if len(expected) == 1 else "s")
    assert str(error).startswith(f"{case}: {count} in the inventory; nothing was changed")


def test_problem_reads_file_line_key_message_and_fix():
    error = problems_of(CASES / "name_upper.yaml")
    assert str(error.problems[0]) == (
        f"{CASES / 'name_upper.yaml'}:3: agents.Client_A: 'Client_A' contains 'A' 'C' '_'; "
        "use only lowercase letters, digits and hyphens (a name becomes an MQTT topic "
        "segment, a DNS label and a container name) (fix: rename it, e.g. 'client-a')")


def test_inventory_error_is_a_usage_error_with_exit_code_2():
    error = problems_of(CASES / "port_range.yaml")
    assert isinstance(error, UsageError) and error.exit_code == EXIT_USAGE
    assert error.problems[0].as_dict() == {
        "file": str(CASES / "port_range.yaml"), "line": 3, "key": "broker.port",
        "message": "70000 is out of range", "fix": "use a number from 1 to 65535"}


# --- which file ----------------------------------------------------------------

def test_missing_file_names_the_path_and_the_three_ways_to_point_at_one(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    error = problems_of(missing)
    text = str(error)
    assert f"no inventory file at {missing}" in text
    assert "--inventory" in text and "$FLEET_INVENTORY" in text and "./fleet_inventory.yaml" in text


def test_path_from_env_when_no_argument(tmp_path):
    path = write(tmp_path, "agents: {from-env: {}}\n", "elsewhere.yaml")
    inv = load_inventory(None, env={INVENTORY_ENV: str(path)})
    assert list(inv.agents) == ["from-env"]
    assert inv.path == path


def test_argument_beats_env(tmp_path):
    chosen = write(tmp_path, "agents: {chosen: {}}\n", "a.yaml")
    ignored = write(tmp_path, "agents: {ignored: {}}\n", "b.yaml")
    inv = load_inventory(chosen, env={INVENTORY_ENV: str(ignored)})
    assert list(inv.agents) == ["chosen"]


def test_default_path_is_fleet_inventory_yaml_in_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, "agents: {here: {}}\n")
    monkeypatch.chdir(tmp_path)
    inv = load_inventory(env={})
    assert list(inv.agents) == ["here"]
    assert inv.path == tmp_path / "fleet_inventory.yaml"   # absolute, for the state dir


def test_missing_file_from_env_names_that_path(tmp_path):
    missing = tmp_path / "from-env.yaml"
    with pytest.raises(InventoryError) as caught:
        load_inventory(None, env={INVENTORY_ENV: str(missing)})
    assert str(missing) in str(caught.value)


# --- what a good inventory becomes ----------------------------------------------

def test_the_example_inventory_loads():
    inv = load_inventory(EXAMPLE, env={})
    assert inv.manager == "zephyr"
    assert (inv.broker.runtime, inv.broker.host, inv.broker.port) == ("local", "127.0.0.1", 1883)
    assert list(inv.agents) == ["client-a", "client-b"]
    assert inv.groups == {"clients": ("client-a", "client-b")}
    assert all(a.runtime == "local" for a in inv.agents.values())
    assert inv.agents["client-a"].reload == ReloadSpec(command="true")
    assert inv.agents["client-b"].version_command == ("uname", "-sr")
    assert (inv.state_dir.parent, inv.state_dir.name) == (EXAMPLE.parent, ".hatchery")   # beside the file


def test_defaults_when_everything_is_left_out(tmp_path):
    inv = load_inventory(write(tmp_path, "agents:\n  solo:\n"), env={})
    agent = inv.agents["solo"]
    assert inv.manager == "zephyr" and inv.broker.port == 1883
    assert inv.broker.dns_name == "mqtt-broker" and inv.broker.max_packet_size == 65536
    # from roles/agent/defaults.yaml in the repo
    assert (agent.role, agent.runtime, agent.heartbeat_interval) == ("agent", "local", 600.0)
    assert agent.version_command == "python3 --version"
    assert agent.image == "hatchery/agent-base:bookworm"
    assert agent.reload is None and agent.groups == () and agent.env == {}
    assert inv.capacity.headroom == 0.2


def test_capacity_headroom_as_a_percentage_or_a_fraction(tmp_path):
    for text, share in (("30%", 0.3), ("0.25", 0.25), ("0%", 0.0), ("12.5%", 0.125)):
        inv = load_inventory(write(tmp_path, f"capacity:\n  headroom: {text}\nagents:\n  solo:\n"), env={})
        assert inv.capacity.headroom == share




def _precedence_fleet(tmp_path):
    write(tmp_path, """\
        heartbeat_interval: 100
        version_command: from-role
        image: role/image:1
        env: {LEVEL: role}
    """, "roles/custom/defaults.yaml")
    return load_inventory(write(tmp_path, PRECEDENCE), env={})


def test_agent_keys_beat_group_vars_which_beat_role_defaults(tmp_path):
    agents = _precedence_fleet(tmp_path).agents
    assert agents["own"].heartbeat_interval == 300          # agent beats both groups
    assert agents["grouped"].heartbeat_interval == 250      # the later group wins
    assert agents["roled"].heartbeat_interval == 400
    assert agents["bare"].heartbeat_interval == 100         # role default
    assert agents["grouped"].version_command == "from-first-group"  # group beats role
    assert agents["bare"].version_command == "from-role"
    assert agents["bare"].env == {"LEVEL": "role"}
    # image is the docker runtime's key: the role's is not applied to a local agent (nor refused)
    assert agents["grouped"].image == AgentSpec.image
    assert agents["own"].runtime == "local"                 # built-in default, role is silent


def test_role_can_come_from_group_vars(tmp_path):
    agent = _precedence_fleet(tmp_path).agents["via-group"]
    assert agent.role == "custom" and agent.heartbeat_interval == 100
    assert agent.groups == ("picks-role",)


def test_inventory_dir_role_overrides_the_repo_role(tmp_path):
    write(tmp_path, "heartbeat_interval: 42\n", "roles/agent/defaults.yaml")
    inv = load_inventory(write(tmp_path, "agents: {plain: {}}\n"), env={})
    assert inv.agents["plain"].heartbeat_interval == 42
    assert inv.agents["plain"].version_command == "echo unknown"   # built-in: the local role is silent


def test_repo_example_role_openclaw(tmp_path):
    inv = load_inventory(write(tmp_path, "agents: {claw: {role: openclaw}}\n"), env={})
    agent = inv.agents["claw"]
    assert agent.runtime == "docker" and agent.reload == ReloadSpec(signal="HUP", pid_file="/run/openclaw.pid")
    assert agent.main_command == ("openclaw", "gateway")


def test_groups_and_agents_keep_file_order_and_source_lines(tmp_path):
    path = write(tmp_path, """\
        groups:
          zz: {agents: [mid, zeta]}
          aa: {agents: [alpha]}
        agents:
          zeta: {}
          alpha: {}

          mid: {}
    """)
    inv = load_inventory(path, env={})
    assert list(inv.agents) == ["zeta", "alpha", "mid"]
    assert [a.source for a in inv.agents.values()] == [5, 6, 8]
    assert list(inv.groups) == ["zz", "aa"] and inv.groups["zz"] == ("mid", "zeta")
    assert [a.name for a in inv.select(group="zz")] == ["mid", "zeta"]


def test_state_dir_is_resolved_against_the_inventory_directory(tmp_path):
    default = load_inventory(write(tmp_path / "a", "agents: {}\n"), env={})
    relative = load_inventory(write(tmp_path / "b", "fleet: {state_dir: run/state}\n"), env={})
    absolute = load_inventory(write(tmp_path / "c", f"fleet: {{state_dir: {tmp_path}/abs}}\n"), env={})
    assert default.state_dir == tmp_path / "a" / ".hatchery"
    assert relative.state_dir == tmp_path / "b" / "run" / "state"
    assert absolute.state_dir == tmp_path / "abs"


def test_values_are_converted_to_plain_python(tmp_path):
    inv = load_inventory(write(tmp_path, """\
        fleet: {manager: boss}
        broker:
          runtime: docker
          port: 11883
          docker_host: ssh://ops@nas
          dns_provider: dnsmasq
          dns_options: {domain: fleet.lan}
          container_prefix: lab-
        agents:
          a:
            reload: {signal: sighup, pid_file: /run/a.pid}
            heartbeat_interval: 0.5
            env: {MODE: calm}
            version_command: [python3, --version]
    """), env={})
    agent = inv.agents["a"]
    assert inv.manager == "boss"
    assert (inv.broker.runtime, inv.broker.port, inv.broker.docker_host) == ("docker", 11883, "ssh://ops@nas")
    assert inv.broker.dns_provider == "dnsmasq" and inv.broker.dns_options == {"domain": "fleet.lan"}
    assert inv.broker.container_prefix == "lab-"
    assert type(inv.broker.dns_options) is dict and type(inv.broker.port) is int
    assert agent.reload == ReloadSpec(signal="HUP", pid_file="/run/a.pid")   # normalised name
    assert agent.heartbeat_interval == 0.5 and agent.env == {"MODE": "calm"}
    assert agent.version_command == ("python3", "--version")
