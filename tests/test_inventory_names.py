"""Adding agents to an inventory, and the names the control side holds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hatchery.errors import EXIT_USAGE, InventoryError, UsageError
from hatchery.inventory.edit import add_agent
from hatchery.inventory.load import INVENTORY_ENV, load_inventory
from hatchery.inventory.model import CONTROL_USERS
from inventoryfiles import EXAMPLE, problems_of, write

TASKS_ROOT = Path(__file__).parent.parent       # where tasks.py is, for invoke --search-root


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
