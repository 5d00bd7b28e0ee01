"""Progress on long work: a rich bar on a terminal (tmux), nothing extra when piped or --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from viewhelpers import ROOT, need, unique, wait_for

from hatchery.core.plan import Change
from hatchery.tasks.progress import plan_progress

SLOW_PLAN = """
import sys, time
from hatchery.core.plan import Change
from hatchery.tasks.common import run_plan
changes = [Change(f"agent a-{i}", "create", "new", apply=lambda: time.sleep(0.7)) for i in range(6)]
changes.append(Change("agent ok-1"))
run_plan("agent.hatch", changes, json="--json" in sys.argv)
"""


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_a_terminal_sees_the_bar_move_and_keeps_only_the_result_lines(tmp_path):
    tmux, sock, session = need("tmux", "tmux"), unique("tmux"), unique("s")
    script = tmp_path / "slow_plan.py"
    script.write_text(SLOW_PLAN)

    def run(*args):
        return subprocess.run([tmux, "-L", sock, *args], capture_output=True, text=True,
                              timeout=10, env=_env())
    try:
        started = run("new-session", "-d", "-s", session, "-x", "120", "-y", "20",
                      f"{sys.executable} {script}; sleep 30")
        assert started.returncode == 0, started.stderr
        screen = lambda: run("capture-pane", "-p", "-t", session).stdout  # noqa: E731
        moving = wait_for(lambda: "agent.hatch: agent a-" in screen() and "/7" in screen(), 15)
        assert moving, screen()
        assert wait_for(lambda: "changed=6" in screen(), 15), screen()
        final = screen()
        assert final.count("changed ") == 6 and "agent.hatch: agent a-" not in final  # transient
    finally:
        run("kill-server")


@pytest.mark.parametrize("flag", ["", "--json"])
def test_piped_or_json_output_has_no_bar(tmp_path, flag):
    script = tmp_path / "slow_plan.py"
    script.write_text(SLOW_PLAN.replace("0.7", "0.01"))
    result = subprocess.run([sys.executable, str(script), *([flag] if flag else [])],
                            capture_output=True, text=True, timeout=60, env=_env())
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout + result.stderr and "━" not in result.stdout + result.stderr
    assert result.stderr == ""
    if flag:
        assert json.loads(result.stdout)["changed"] == 6
    else:
        assert result.stdout.count("changed ") == 6


def test_no_bar_in_check_mode_or_when_nothing_changes():
    quiet = [Change("agent a"), Change("agent b")]
    with plan_progress("t", quiet, enabled=True) as bar:
        assert type(bar).__name__ == "_Quiet"
    with plan_progress("t", [Change("x", "create")], check=True, enabled=True) as bar:
        assert type(bar).__name__ == "_Quiet"
