"""Ctrl-C reaches the CLIs the day-2 tests start, whatever the test run inherited.

A test run started in the background of a non-interactive shell (``pytest ... &`` in a script)
ignores SIGINT, and a CLI it starts would too (an ignored signal survives exec): every test that
Ctrl-Cs a long-running CLI (fleet.heal --watch, fleet.rollout, agent.logs --follow) would wait
out its timeout. A real CLI following a real log file; no broker is needed to follow a log."""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from dayops import start, wait_for, write_inventory

from hatchery.core.ports import free_port

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
