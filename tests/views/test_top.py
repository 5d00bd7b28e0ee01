"""fleet.top in a real terminal (tmux): the screen follows an agent's state change; q quits."""

from __future__ import annotations

import os
import subprocess
import time

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


def test_fleet_top_at_80_columns_keeps_names_and_states_whole_and_its_columns_still(
        module_broker, tmp_path, tmux):
    manager, names = unique("mgr"), [unique("top") for _ in range(5)]
    inv = write_inventory(tmp_path / "fleet.yaml", module_broker, names, manager=manager,
                          groups={"web": names[:3], "batch": names[3:]})
    agents = Agents(module_broker, manager, tmp_path)
    session = unique("s")
    try:
        for name in names:
            agents.start(name, interval=1, version="Top Agent 2.1")
        command = f"{HATCHERY} fleet.top --inventory {inv} --refresh 0.3"
        started = tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "16", command)
        assert started.returncode == 0, started.stderr
        assert wait_for(lambda: all(" online " in line_of(screen(tmux, session), n)
                                    for n in names), 15), screen(tmux, session)
        assert wait_for(lambda: all("top-agent-2.1" in line_of(screen(tmux, session), n)
                                    for n in names), 10), \
            screen(tmux, session)                       # the heartbeat's version slug
        time.sleep(3)                                   # some uptime, some history
        before = screen(tmux, session)
        agents.kill(names[0])
        assert wait_for(lambda: " offline " in line_of(screen(tmux, session), names[0]), 5), \
            screen(tmux, session)
        assert wait_for(lambda: "online → offline" in screen(tmux, session), 5), screen(tmux, session)
        shown = screen(tmux, session)
        lines = shown.splitlines()
        assert max(len(line) for line in lines) <= 80
        # sorted by state: the dead agent comes first, whole: name, state and host never cut
        assert shown.index(names[0]) < shown.index(names[1])
        for name in names:
            row = line_of(shown, name)
            assert row.split()[0] == name and row.rstrip().endswith("localhost") and "…" not in row
        header = next(line for line in lines if line.startswith("agent"))
        assert header.split() == ["agent", "state", "since", "age", "uptime", "memory", "cpu",
                                  "version", "host"]
        # the columns stay where they were between refreshes, whatever the rows hold
        assert header == next(line for line in before.splitlines() if line.startswith("agent"))
        for column in ("memory", "host"):
            at = header.index(column)
            assert line_of(before, names[1])[at - 2:at + 2].strip() == \
                line_of(shown, names[1])[at - 2:at + 2].strip() or column == "memory"
        assert line_of(shown, names[1]).index("localhost") == header.index("host")
        IMG.mkdir(parents=True, exist_ok=True)
        (IMG / "fleet-top.txt").write_text(shown.rstrip() + "\n")
        tmux("send-keys", "-t", session, "q")
        assert wait_for(lambda: tmux("has-session", "-t", session).returncode != 0, 5), \
            "fleet.top did not quit on q"
    finally:
        agents.stop_all()
        clear_retained(module_broker, names)


def _row(name, state, beat_ts=None, **extra):
    return {"agent": name, "state": state, "beat_ts": beat_ts, "in_inventory": True, "version": None,
            "rtt_ms": None, "errors": None, "alerts": 0, "last_alert": None, "groups": [],
            "host": "localhost", "since": None, "uptime": None, "mem_kb": None, "cpu": None, **extra}


def test_rows_sort_by_verdict_or_heartbeat_age():
    now = 1000.0
    agents = [_row("a", "online", 990.0), _row("b", "offline", 900.0), _row("c", "stale", 800.0),
              _row("d", "missing"), _row("e", "stopped", 700.0), _row("f", "unhealthy", 995.0)]
    assert [r.agent for r in top.rows(agents, now, top.SORT_STATE)] == ["b", "d", "f", "c", "e", "a"]
    assert [r.agent for r in top.rows(agents, now, top.SORT_AGE)] == ["d", "e", "c", "b", "a", "f"]
    assert top.rows(agents, now)[0].cells()[3] == "100s"
    assert top.totals(top.rows(agents, now)) == {"agents": 6, "online": 1, "unhealthy": 1, "stale": 1,
                                                 "offline": 1, "missing": 1, "unknown": 0,
                                                 "stopped": 1, "errors": 0, "alerts": 0}
    assert top.sort_for_key("a", top.SORT_STATE) == top.SORT_AGE
    assert top.sort_for_key("x", top.SORT_STATE) is None


def test_narrow_terminals_drop_whole_columns_least_needed_first():
    names, hosts = ["agent-with-a-long-name-01"], ["nas-1.example.org"]
    dropped = []
    previous = [c.name for c in top.layout(400, names, hosts)]
    assert previous == list(top.COLUMNS)
    for width in range(400, 20, -1):
        kept = [c.name for c in top.layout(width, names, hosts)]
        dropped += [c for c in previous if c not in kept]
        previous = kept
    assert dropped[:2] == ["groups", "last alert"], dropped
    assert dropped[-2:] == ["host", "age"] and previous == ["agent", "state"]
    for width in (80, 120, 200):
        columns = top.layout(width, names, hosts)
        assert sum(c.width for c in columns) + len(columns) - 1 <= width
        assert [c.name for c in columns] == [c for c in top.COLUMNS if c in {x.name for x in columns}]


def test_a_row_is_fitted_to_fixed_columns_and_never_cuts_a_name():
    row = top.to_row(_row("a" * 30, "offline", 990.0, since=400.0, uptime=90000, mem_kb=51234,
                          cpu=0.456, version="x" * 40, last_alert="\x1b[31mred"), 1000.0)
    columns = top.layout(80, ["a" * 30], ["localhost"])
    text, (start, end) = top.line(row, columns)
    assert text.startswith("a" * 30 + " offline") and text[start:end].strip() == "offline"
    assert "\x1b" not in text and len(text) <= 80
    wide = top.line(row, top.layout(300, ["a" * 30], ["localhost"]))[0]
    assert "xxxxxxxxxxx…" in wide and "?[31mred" in wide and "10m" in wide and "25.0h" in wide
    assert "50.0M" in wide and "46%" in wide
    other = top.to_row(_row("b", "online", 999.0, version="1"), 1000.0)
    assert top.header(columns) == top.header(top.layout(80, ["a" * 30], ["localhost"]))
    assert len(top.line(other, columns)[0].rstrip()) <= len(text)


def test_the_footer_lists_the_newest_events_first():
    from hatchery.observe.history import Timeline
    timeline = Timeline()
    for i, text in enumerate(["online → offline", "offline → online", "online → stale",
                              "stale → online", "online → offline"]):
        timeline.add(1_800_000_000 + i, "state", f"a{i}", text)
    timeline.add(1_800_000_010, "heal", "a4", "heal-restart")
    lines = top.event_lines(timeline.after(0), 40)
    assert len(lines) == top.EVENTS_SHOWN and "a4 heal heal-restart" in lines[0]
    assert all(len(line) <= 40 for line in lines)
