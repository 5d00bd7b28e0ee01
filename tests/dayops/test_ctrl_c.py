"""Ctrl-C reaches the CLIs the day-2 tests start, whatever the test run inherited.

A test run started in the background of a non-interactive shell (``pytest ... &`` in a script)
ignores SIGINT, and a CLI it starts would too (an ignored signal survives exec): every test that
Ctrl-Cs a long-running CLI (fleet.heal --watch, fleet.rollout, agent.logs --follow) would wait
out its timeout. A real CLI following a real log file (no broker needed), and fleet.heal --watch
on a real local fleet telling how it can be stopped when it was started that way."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from dayops import INVOKE, bring_up, env_for, start, take_down, wait_for, write_inventory

from hatchery.core.ports import free_port
from hatchery.tasks.common import how_to_stop

TERM_ONLY = "SIGTERM stops (SIGINT is ignored: started in the background)"
LAST = "2026-01-01 00:00:00,000 solo: the last line so far"


def test_a_follower_started_by_a_run_that_ignores_sigint_still_ends_on_ctrl_c(tmp_path):
    inventory = write_inventory(tmp_path, free_port(), ["solo"])
    log = tmp_path / ".hatchery" / "agents" / "solo" / "handler.log"
    log.parent.mkdir(parents=True)
    log.write_text(f"an older line\n{LAST}\n")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)     # as `pytest ... &` starts us
    try:
        follow = start("agent.logs", "--name", "solo", "--follow", "--lines", "1", inventory=inventory)
    finally:
        signal.signal(signal.SIGINT, previous)
    lines: list = []
    threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")), daemon=True).start()
    try:
        assert wait_for(lambda: lines, timeout=30), "the follower never printed the last line"
        assert lines[0].rstrip("\n") == LAST
        os.killpg(follow.pid, signal.SIGINT)
        try:
            follow.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("agent.logs --follow ignored Ctrl-C: it inherited SIGINT ignored") from None
    finally:
        if follow.poll() is None:
            os.killpg(follow.pid, signal.SIGKILL)
            follow.wait()
    assert follow.returncode == 0, follow.stderr.read()


def test_a_supervisor_started_in_the_background_says_sigterm_stops_it_and_sigterm_does(tmp_path):
    inventory, state, _ = bring_up(tmp_path, ["solo"])
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)     # not dayops.start: SIGINT stays ignored
    try:
        heal = subprocess.Popen([*INVOKE, "fleet.heal", "--watch", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env_for(inventory),
                                start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        first = heal.stderr.readline()
        assert "supervising 1 agent;" in first and first.rstrip().endswith(TERM_ONLY), first
        heal.send_signal(signal.SIGTERM)
        heal.wait(timeout=30)
    finally:
        if heal.poll() is None:
            os.killpg(heal.pid, signal.SIGKILL)
            heal.wait()
        take_down(inventory, state)
    assert heal.returncode == 0, heal.stderr.read()


def test_the_hint_names_ctrl_c_unless_sigint_is_ignored():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)    # whatever this run inherited
    try:
        assert how_to_stop() == "Ctrl-C stops"
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert how_to_stop() == TERM_ONLY
    finally:
        signal.signal(signal.SIGINT, previous)
