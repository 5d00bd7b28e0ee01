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
from hatchery.observe.live import AgentLive


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


def test_rows_sort_by_state_or_heartbeat_age():
    now = 1000.0
    agents = [AgentLive("a", state="online", beat_ts=990.0, interval=60),
              AgentLive("b", state="offline", beat_ts=900.0, interval=60),
              AgentLive("c", state="online", beat_ts=800.0, interval=60),    # stale
              AgentLive("d")]
    assert [r.agent for r in top.rows(agents, now, top.SORT_STATE)] == ["b", "c", "d", "a"]
    assert [r.state for r in top.rows(agents, now, top.SORT_STATE)] == \
        ["offline", "stale", "unknown", "online"]
    assert [r.agent for r in top.rows(agents, now, top.SORT_AGE)] == ["d", "c", "b", "a"]
    assert top.totals(top.rows(agents, now)) == {"agents": 4, "online": 1, "stale": 1,
                                                 "offline": 1, "unknown": 1, "errors": 0,
                                                 "alerts": 0}
    assert top.sort_for_key("a", top.SORT_STATE) == top.SORT_AGE
    assert top.sort_for_key("x", top.SORT_STATE) is None
