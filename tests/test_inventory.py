"""The inventory loader: bad cases are data (tests/inventory_cases/), good cases below."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatchery.errors import EXIT_USAGE, InventoryError, UsageError
from hatchery.inventory import parse
from hatchery.inventory.edit import add_agent
from hatchery.inventory.fields import plain
from hatchery.inventory.load import INVENTORY_ENV, load_inventory
from hatchery.inventory.model import CONTROL_USERS, AgentSpec, ReloadSpec

CASES = Path(__file__).parent / "inventory_cases"
# The quick start's inventory as shipped, as a realistic fixture. Not the checkout's own
# ./fleet_inventory.yaml: that one is the operator's to edit (the README says so).
EXAMPLE = Path(__file__).parent / "data" / "example_inventory.yaml"
TASKS_ROOT = Path(__file__).parent.parent       # where tasks.py is, for invoke --search-root
EXPECT_RE = re.compile(r"^# expect: (?P<where>\S+) \| (?P<key>.+?) \| (?P<text>.+)$")


def expectations(case: Path) -> list:
    found = []
    for line in case.read_text(encoding="utf-8").splitlines():
        match = EXPECT_RE.match(line)
        if match:
            found.append(match.groupdict())
    return found


def write(folder: Path, text: str, name: str = "fleet_inventory.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path, **kwargs) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        load_inventory(path, env={}, **kwargs)
    return caught.value


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


PRECEDENCE = """\
    groups:
      first:
        agents: [own, grouped, roled]
        vars: {heartbeat_interval: 200, version_command: from-first-group}
      second:
        agents: [own, grouped]
        vars: {heartbeat_interval: 250}
      picks-role:
        agents: [via-group]
        vars: {role: custom}
    agents:
      own:
        role: custom
        heartbeat_interval: 300
      grouped:
        role: custom
      roled:
        role: custom
        heartbeat_interval: 400
      bare:
        role: custom
      via-group: {}
      plain: {}
"""


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


# --- add_agent ---------------------------------------------------------------

def test_add_agent_keeps_comments_and_order_and_returns_the_diff(tmp_path):
    example = EXAMPLE.read_text()
    path = write(tmp_path, example)
    diff = add_agent(path, "client-c", {"runtime": "local", "heartbeat_interval": 60})
    after = path.read_text()
    assert after.startswith(example)                       # nothing before it changed
    assert after[len(example):] == "  client-c:\n    runtime: local\n    heartbeat_interval: 60\n"
    added = [l for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    assert added == ["+  client-c:", "+    runtime: local", "+    heartbeat_interval: 60"]
    assert not [l for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    inv = load_inventory(path, env={})
    assert list(inv.agents) == ["client-a", "client-b", "client-c"]
    assert inv.agents["client-c"].heartbeat_interval == 60


def test_add_agent_goes_before_the_comment_that_leads_the_next_section(tmp_path):
    path = write(tmp_path, """\
        agents:
            alpha:
                runtime: local   # keep me
            beta: {runtime: local}

        # groups follow
        groups:
          g: {agents: [alpha]}
    """)
    add_agent(path, "gamma", {"version_command": ["uname", "-sr"]})
    assert path.read_text() == textwrap.dedent("""\
        agents:
            alpha:
                runtime: local   # keep me
            beta: {runtime: local}
            gamma:
                version_command:
                    - uname
                    - -sr

        # groups follow
        groups:
          g: {agents: [alpha]}
    """)
    assert load_inventory(path, env={}).agents["gamma"].version_command == ("uname", "-sr")


def test_add_agent_creates_the_agents_section(tmp_path):
    path = write(tmp_path, "fleet:\n  manager: zephyr  # the boss\n")
    add_agent(path, "first", {})
    assert path.read_text() == "fleet:\n  manager: zephyr  # the boss\nagents:\n  first: {}\n"
    assert list(load_inventory(path, env={}).agents) == ["first"]


def test_add_agent_refuses_a_present_or_unsafe_name_and_leaves_the_file(tmp_path):
    path = write(tmp_path, "agents:\n  alpha: {}\n")
    with pytest.raises(UsageError, match="already in the inventory"):
        add_agent(path, "alpha", {})
    with pytest.raises(UsageError, match=r"contains '\+'.*\n  fix: rename it, e.g. 'a-b'"):
        add_agent(path, "a+b", {})
    assert path.read_text() == "agents:\n  alpha: {}\n"
    assert not list(tmp_path.glob(".*.tmp"))


# --- the fast parse reads YAML as the round trip does, or says it is unsure ---------

TRICKY_SCALARS = [
    "yes", "no", "on", "off", "y", "n", "true", "False", "TRUE", "null", "Null", "~", "",
    "0", "-0", "+5", "1883", "010", "0o17", "0x1F", "0b11", "1_000", "1e3", "1.5e3", "0.5",
    "+.5", ".5", "1.", ".inf", "-.inf", ".nan", "12:30", "1:20:30", "2001-12-14",
    "2001-12-14 21:59:43.10 -5", "127.0.0.1", "1.2.3", "3.11", ".hatchery", "-", "--x",
    "<<", "=", "hatchery/agent-base:bookworm", "echo 1.0", "a: b", "'quoted'", '"0x1F"',
    "!!str 5", "!!int 5", "! 5", "&a 5", "[1, 2]", "{a: 1}", "|\n  block\n", "ssh://ops@nas",
]


def _both(text: str):
    """(fast data or 'unsure', the round trip's data as plain values or 'refused')."""
    try:
        fast = parse.fast(text)
    except parse.Unsure:
        fast = "unsure"
    try:
        slow = plain(parse.with_lines(text, "t.yaml"))
    except InventoryError:
        slow = "refused"
    return fast, slow


def _agree(fast, slow) -> bool:
    """What the loader relies on: the fast parse is unsure, or reads what ruamel reads."""
    return fast == "unsure" or (fast == slow and _types(fast) == _types(slow))


@pytest.mark.parametrize("scalar", TRICKY_SCALARS)
def test_fast_parse_agrees_with_the_round_trip_or_is_unsure(scalar):
    fast, slow = _both(f"key: {scalar}\n")
    assert _agree(fast, slow), (fast, slow)


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-._:eExXoObBaf yYnN~<=", max_size=12))
def test_fast_parse_never_reads_a_scalar_differently(scalar):
    fast, slow = _both(f"key: {scalar}\n")
    assert _agree(fast, slow), (scalar, fast, slow)


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n",                       # ruamel refuses a duplicate key
    "%YAML 1.1\n---\na: yes\n",           # a directive changes how scalars read
    "a: !!int 0x1F\n",                    # an explicit tag
    "a: &x {b: 1}\nc:\n  <<: *x\n",       # a merge key
    "a: [\n",                             # a syntax error: ruamel words it
])
def test_fast_parse_is_unsure_where_the_round_trip_decides(text):
    with pytest.raises(parse.Unsure):
        parse.fast(text)


def test_fast_parse_keeps_the_line_of_every_key_and_item():
    data = parse.fast("# c\na:\n  b: 1\n\n  c: [x,\n    y]\n")
    assert parse.line(data, "a") == 2 and parse.line(data["a"], "c") == 5
    assert [parse.line(data["a"]["c"], i) for i in (0, 1)] == [5, 6]


def test_a_good_inventory_is_never_read_twice(tmp_path, monkeypatch):
    def no_round_trip(text, shown):
        raise AssertionError("a good inventory must not need the slow parse")
    monkeypatch.setattr(parse, "with_lines", no_round_trip)
    inv = load_inventory(EXAMPLE, env={})
    assert list(inv.agents) == ["client-a", "client-b"] and inv.agents["client-b"].source == 49


def test_fast_and_round_trip_loads_build_the_same_inventory(tmp_path, monkeypatch):
    path = write(tmp_path, PRECEDENCE)
    write(tmp_path, "heartbeat_interval: 100\nenv: {LEVEL: role}\n", "roles/custom/defaults.yaml")
    fast = load_inventory(path, env={})
    monkeypatch.setattr(parse, "fast_available", lambda: False)
    assert load_inventory(path, env={}) == fast


def test_a_scalar_the_fast_parse_is_unsure_of_still_loads(tmp_path):
    inv = load_inventory(write(tmp_path, "agents:\n  a: {heartbeat_interval: 1_200}\n"), env={})
    assert inv.agents["a"].heartbeat_interval == 1200.0


# --- names the control side holds: every task refuses them, before anything changes ---

@pytest.mark.parametrize("name", ["zephyr", "monitor", "exporter", "recorder"])
def test_an_agent_named_like_a_control_side_user_is_refused(tmp_path, name):
    error = problems_of(write(tmp_path, f"agents:\n  client-a: {{}}\n  {name}: {{}}\n"))
    [problem] = error.problems
    assert (problem.line, problem.keypath) == (3, f"agents.{name}")
    assert "reserved" in problem.message or "manager" in problem.message
    assert problem.fix == f"rename the agent, e.g. '{name}-agent'"


def test_the_agent_named_like_a_renamed_manager_is_refused_and_zephyr_is_free(tmp_path):
    error = problems_of(write(tmp_path, "fleet: {manager: boss}\nagents:\n  boss: {}\n"))
    assert [p.keypath for p in error.problems] == ["agents.boss"]
    inv = load_inventory(write(tmp_path / "b", "fleet: {manager: boss}\nagents:\n  zephyr: {}\n"), env={})
    assert list(inv.agents) == ["zephyr"]


def test_a_manager_named_like_a_control_side_user_is_refused(tmp_path):
    error = problems_of(write(tmp_path, "fleet:\n  manager: recorder\n"))
    assert [(p.line, p.keypath) for p in error.problems] == [(2, "fleet.manager")]
    assert "reserved" in error.problems[0].message


def test_reserved_names_are_the_users_the_acl_layer_issues():
    from hatchery.security.acl import fleet_users
    assert sorted(fleet_users("zephyr", [])) == sorted(["zephyr", *CONTROL_USERS])


@pytest.mark.parametrize("task", ["agent.stop", "agent.list"])
def test_tasks_that_do_not_deploy_refuse_a_reserved_agent_name_too(tmp_path, task):
    """Issue: agent.stop used to exit 0 (and stop every agent) where deploy refused."""
    path = write(tmp_path, "agents:\n  client-a: {}\n  recorder: {}\n")
    env = {k: v for k, v in os.environ.items() if k != INVENTORY_ENV}
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(TASKS_ROOT), task,
                           "--inventory", str(path)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert f"{path}:3: agents.recorder: 'recorder' is reserved" in done.stdout + done.stderr
    assert not (tmp_path / ".hatchery").exists()      # nothing was touched


def test_enrolling_a_reserved_name_is_refused_naming_the_real_file(tmp_path):
    from hatchery.inventory.enrol import enrol_plan
    path = write(tmp_path, "agents:\n  client-a: {}\n")
    with pytest.raises(InventoryError) as caught:
        enrol_plan(load_inventory(path, env={}), "monitor")
    [problem] = caught.value.problems
    assert (problem.path, problem.line, problem.keypath) == (str(path), None, "agents.monitor")
    assert "reserved" in problem.message and ".hatchery-enrol-" not in str(caught.value)
    assert path.read_text() == "agents:\n  client-a: {}\n" and not list(tmp_path.glob(".hatchery-enrol-*"))


def test_several_new_names_are_enrolled_at_once_keeping_comments(tmp_path):
    from hatchery.inventory.enrol import enrol_plan
    text = "# the fleet\nagents:\n  client-a: {}   # the first\n# what follows\n"
    path = write(tmp_path, text)
    inv, changes = enrol_plan(load_inventory(path, env={}), "client-c, client-a,worker-e,client-c")
    assert [c.item for c in changes] == ["inventory agents.client-c", "inventory agents.worker-e"]
    assert list(inv.agents) == ["client-a", "client-c", "worker-e"] and inv.path == path
    assert path.read_text() == text                                # planning wrote nothing
    assert "+  client-c:" in changes[0].diff and "+  worker-e:" in changes[1].diff
    for change in changes:
        change.apply()
    assert path.read_text().startswith("# the fleet\nagents:\n  client-a: {}   # the first\n")
    assert "# what follows" in path.read_text()
    assert list(load_inventory(path, env={}).agents) == ["client-a", "client-c", "worker-e"]


def test_one_bad_name_among_new_ones_refuses_them_all_and_writes_nothing(tmp_path):
    from hatchery.inventory.enrol import enrol_plan
    path = write(tmp_path, "agents:\n  client-a: {}\n")
    with pytest.raises(UsageError):
        enrol_plan(load_inventory(path, env={}), ["client-c", "Bad_Name"])
    with pytest.raises(InventoryError):
        enrol_plan(load_inventory(path, env={}), ["client-d", "recorder"])
    assert path.read_text() == "agents:\n  client-a: {}\n" and not list(tmp_path.glob(".hatchery-enrol-*"))
