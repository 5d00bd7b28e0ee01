"""A handler's log: its last lines, or followed as it grows."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hatchery.core.paths import state_paths
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import AgentSpec, Inventory

# --- logs -------------------------------------------------------------------------

LOG_POLL = 0.2      # seconds between looks at a followed log


def agent_logs(inv: Inventory, agent: AgentSpec, *, lines: int = 50, follow: bool = False):
    """The last ``lines`` lines of the handler's log, then (``follow``) new ones as they come.

    A generator of text lines without their newline; following ends when the
    caller stops iterating (Ctrl-C).
    """
    path = state_paths(inv).agent_log(agent.name)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise RuntimeFailure(f"agent {agent.name} has no log yet ({path})",
                             f"start it: invoke agent.hatch --name {agent.name}") from None
    with handle:
        yield from tail_lines(handle, lines)
        while follow:
            yield from _new_lines(handle, path)


def tail_lines(handle, count: int, block: int = 8192) -> list:
    """The last ``count`` lines of a binary file, reading backwards from its end."""
    handle.seek(0, os.SEEK_END)
    end = position = handle.tell()
    data = b""
    while position > 0 and data.count(b"\n") <= count:
        position = max(0, position - block)
        handle.seek(position)
        data = handle.read(end - position)
    handle.seek(end)
    text = data.decode(errors="replace").splitlines()
    return text[-count:] if count else []


def _new_lines(handle, path: Path):
    """Whole lines appended since the last call; sleeps a little when there are none."""
    where = handle.tell()
    chunk = handle.readline()
    if chunk.endswith(b"\n"):
        yield chunk.decode(errors="replace").rstrip("\n")
        return
    handle.seek(where)          # half a line: wait for the rest
    try:
        if path.stat().st_size < where:   # truncated or replaced: start again from its top
            handle.seek(0)
    except FileNotFoundError:
        pass
    time.sleep(LOG_POLL)


