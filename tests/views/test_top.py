"""fleet.top in a real terminal (tmux): the screen follows an agent's state change; q quits."""

from __future__ import annotations

import os
import subprocess

import pytest
from viewhelpers import (
    HATCHERY,
    IMG,
    Agents,
    clear_retained,
    need,
    unique,
    wait_for,
    write_inventory,
)

from hatchery.observe import top


@pytest.fixture
def tmux():
    binary, socket = need("tmux", "tmux"), unique("tmux")

    # a terminal of its own size: rich would obey an inherited COLUMNS/LINES
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}

    def run(*args):
        return subprocess.run([binary, "-L", socket, *args], capture_output=True, text=True,
                              timeout=10, env=env)
    yield run
    run("kill-server")


def screen(tmux, session) -> str:
    return tmux("capture-pane", "-p", "-t", session).stdout


def line_of(text: str, name: str) -> str:
    return next((line for line in text.splitlines() if line.lstrip().startswith(name)), "")


def test_fleet_top_shows_a_state_change_and_quits_on_q(module_broker, tmp_path, tmux):
    manager, names = unique("mgr"), [unique("top"), unique("top")]
    inv = write_inventory(tmp_path / "fleet.yaml", module_broker, names, manager=manager)
    agents = Agents(module_broker, manager, tmp_path)
    session = unique("s")
    try:
        for name in names:
            agents.start(name)
        command = f"{HATCHERY} fleet.top --inventory {inv} --refresh 0.3"
        started = tmux("new-session", "-d", "-s", session, "-x", "150", "-y", "20", command)
        assert started.returncode == 0, started.stderr
        assert wait_for(lambda: all(" online " in line_of(screen(tmux, session), n)
                                    for n in names), 15), screen(tmux, session)
        agents.kill(names[0])
        assert wait_for(lambda: " offline " in line_of(screen(tmux, session), names[0]), 5), \
            screen(tmux, session)
        shown = screen(tmux, session)
        # sorted by state: the dead agent comes first
        assert shown.index(names[0]) < shown.index(names[1])
        IMG.mkdir(parents=True, exist_ok=True)
        (IMG / "fleet-top.txt").write_text(shown.rstrip() + "\n")
        tmux("send-keys", "-t", session, "q")
        assert wait_for(lambda: tmux("has-session", "-t", session).returncode != 0, 5), \
            "fleet.top did not quit on q"
    finally:
        agents.stop_all()
        clear_retained(module_broker, names)


def _row(name, state, beat_ts=None):
    return {"agent": name, "state": state, "beat_ts": beat_ts, "in_inventory": True, "version": None,
            "rtt_ms": None, "errors": None, "alerts": 0, "last_alert": None, "groups": [],
            "host": "localhost"}


def test_rows_sort_by_verdict_or_heartbeat_age():
    now = 1000.0
    agents = [_row("a", "online", 990.0), _row("b", "offline", 900.0), _row("c", "stale", 800.0),
              _row("d", "missing"), _row("e", "stopped", 700.0), _row("f", "unhealthy", 995.0)]
    assert [r.agent for r in top.rows(agents, now, top.SORT_STATE)] == ["b", "d", "f", "c", "e", "a"]
    assert [r.agent for r in top.rows(agents, now, top.SORT_AGE)] == ["d", "e", "c", "b", "a", "f"]
    assert top.rows(agents, now)[0].cells()[2] == "100.0s"
    assert top.totals(top.rows(agents, now)) == {"agents": 6, "online": 1, "unhealthy": 1, "stale": 1,
                                                 "offline": 1, "missing": 1, "unknown": 0,
                                                 "stopped": 1, "errors": 0, "alerts": 0}
    assert top.sort_for_key("a", top.SORT_STATE) == top.SORT_AGE
    assert top.sort_for_key("x", top.SORT_STATE) is None
