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
# The agent's own program writes this file: a line without an end must not make us read
# (or hold) all of it. The tail reads at most TAIL_BYTES from the end; a followed line is
# cut at LINE_BYTES.
TAIL_BYTES = 4 << 20
LINE_BYTES = 64 << 10


def agent_logs(inv: Inventory, agent: AgentSpec, *, lines: int = 50, follow: bool = False):
    """The last ``lines`` lines of the handler's log, then (``follow``) new ones as they come.

    A generator of text lines without their newline; following ends when the
    caller stops iterating (Ctrl-C).
    """
    path = state_paths(inv).agent_log(agent.name)
    try:    # never through a link: the log is shown to the dashboard's viewers
        handle = os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")
    except FileNotFoundError:
        raise RuntimeFailure(f"agent {agent.name} has no log yet ({path})",
                             f"start it: invoke agent.hatch --name {agent.name}") from None
    except OSError as exc:      # ELOOP: the log is a symbolic link
        raise RuntimeFailure(f"agent {agent.name}'s log is not a plain file ({path}): {exc.strerror}",
                             f"remove it (the handler writes a new one when it starts): invoke "
                             f"agent.stop --name {agent.name}, then agent.hatch --name {agent.name}") from None
    with handle:
        yield from tail_lines(handle, lines)
        while follow:
            yield from _new_lines(handle, path)


def tail_lines(handle, count: int, block: int = 65536, limit: int = TAIL_BYTES) -> list:
    """The last ``count`` lines of a binary file, reading backwards from its end, at most
    ``limit`` bytes (then the first line shown is the end of a longer one)."""
    handle.seek(0, os.SEEK_END)
    end = position = handle.tell()
    chunks, newlines = [], 0
    while position > 0 and newlines <= count and end - position < limit:
        size = min(block, position, limit - (end - position))
        position -= size
        handle.seek(position)
        chunk = handle.read(size)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    handle.seek(end)
    text = b"".join(reversed(chunks)).decode(errors="replace").splitlines()
    return text[-count:] if count else []


def _new_lines(handle, path: Path):
    """Whole lines appended since the last call; sleeps a little when there are none."""
    where = handle.tell()
    chunk = handle.readline(LINE_BYTES)
    if chunk.endswith(b"\n") or len(chunk) >= LINE_BYTES:
        yield chunk.decode(errors="replace").rstrip("\n")
        return
    handle.seek(where)          # half a line: wait for the rest
    try:
        if path.stat().st_size < where:   # truncated or replaced: start again from its top
            handle.seek(0)
    except FileNotFoundError:
        pass
    time.sleep(LOG_POLL)


