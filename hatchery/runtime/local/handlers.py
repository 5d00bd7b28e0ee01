"""Which handler processes run: found by what they are, not by their pid files."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hatchery.core import process
from hatchery.core.paths import StatePaths

HANDLER_MODULE = "agent_kit.handler"
HANDLER_NAME = "python"     # /proc/PID/comm of a handler: we start it with sys.executable


# --- agents ---------------------------------------------------------------------
#
# A handler is found by what it is: a process whose argv is
# ``python -m agent_kit.handler --config <state>/agents/<name>/agent.json``.
# The pid file is only a hint for people and tools (rewritten when it lies),
# and every handler holds an flock on its agent's handler.lock, so a second
# one for the same agent exits at once instead of fighting over the client id.

def handler_config(argv: list) -> str | None:
    """The config path a handler was started with, None when argv is not a handler."""
    if HANDLER_MODULE not in argv or "--config" not in argv:
        return None
    at = argv.index("--config") + 1
    return argv[at] if at < len(argv) else None


def handler_table(paths: StatePaths) -> dict:
    """{agent name: [pids]} of every handler running from this state directory.

    One scan of the process table for the whole fleet. Names come from the
    config path (``agents/<name>/agent.json``), so handlers for names that
    are no longer in the inventory (orphans) show up too.
    """
    agents_dir = str(paths.agents_dir) + os.sep
    table: dict = {}

    def ours(argv: list) -> bool:
        config = handler_config(argv)
        return bool(config and config.startswith(agents_dir) and config.endswith("/agent.json"))

    for pid in process.find(ours, name_prefix=HANDLER_NAME):
        name = Path(handler_config(process.argv_of(pid)) or "").parent.name
        if name:
            table.setdefault(name, []).append(pid)
    return table


# One scan of the process table serves a whole plan (100 agents, one scan: a
# scan costs 5-50 ms on a busy host). It is kept for half a second only, dropped
# whenever this module starts or stops a handler, and every stop re-checks
# each pid's command line, so a stale entry can never signal a stranger.
SNAPSHOT_SECONDS = 0.5
_snapshots: dict = {}       # state root -> (monotonic time, handler table)


def handler_pids(paths: StatePaths, name: str) -> list:
    taken = _snapshots.get(paths.root)
    if taken is None or time.monotonic() - taken[0] > SNAPSHOT_SECONDS:
        taken = (time.monotonic(), handler_table(paths))
        _snapshots[paths.root] = taken
    return list(taken[1].get(name, []))


def forget_snapshot(paths: StatePaths) -> None:
    _snapshots.pop(paths.root, None)


def still_handlers(pids: list, config: Path) -> list:
    return [pid for pid in pids if handler_config(process.argv_of(pid)) == str(config)]


