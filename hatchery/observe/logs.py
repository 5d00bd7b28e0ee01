"""Several agents' logs as one stream, like ``docker compose logs``: each line names its agent.

``tail_all`` reads each agent's last lines through its runtime and merges them
by the time a line starts with (the handler's log format), so the fleet's
story reads in order; a line without a time stays behind the line before it.
``follow_all`` follows every agent at once, one thread per agent feeding one
queue that the caller's thread drains, so a slow terminal never stalls a reader
and one agent's failure never stops the others.
"""

from __future__ import annotations

import heapq
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from hatchery.errors import HatcheryError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime import for_runtime

# "2026-03-18 21:30:00,123" (logging's asctime) or RFC 3339 ("2026-03-18T21:30:00.123Z")
_STAMP = re.compile(r"\A(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?")
QUEUE_LIMIT = 10_000        # lines waiting for the printer; a reader past it waits


@dataclass(frozen=True)
class LogLine:
    """One line of one agent's log, or (``problem``) why its log could not be read."""

    agent: str
    line: str = ""
    problem: str = ""

    def as_dict(self) -> dict:
        return {"agent": self.agent, "problem": self.problem} if self.problem else \
            {"agent": self.agent, "line": self.line}


def time_key(line: str) -> Optional[str]:
    """A sortable form of the time a log line starts with, or None when it has none."""
    found = _STAMP.match(line)
    if not found:
        return None
    day, clock, fraction = found.groups()
    return f"{day} {clock}.{(fraction or '').ljust(9, '0')}"


def interleave(per_agent: dict) -> list:
    """``{agent: [line, ...]}`` as one list of LogLines in time order (stable per agent)."""
    def keyed(agent: str, lines: list):
        last = ""
        for line in lines:
            last = time_key(line) or last
            yield last, LogLine(agent, line)
    merged = heapq.merge(*(keyed(a, lines) for a, lines in per_agent.items()), key=lambda k: k[0])
    return [line for _, line in merged]


def tail_all(inv: Inventory, agents: Iterable[AgentSpec], lines: int) -> tuple:
    """(merged LogLines, problem LogLines): every agent's last ``lines`` lines."""
    per_agent, problems = {}, []
    for agent in agents:
        try:
            per_agent[agent.name] = list(_source(inv, agent, lines, follow=False))
        except HatcheryError as exc:
            problems.append(LogLine(agent.name, problem=exc.message))
    return interleave(per_agent), problems


def follow_all(inv: Inventory, agents: list, lines: int, on_line: Callable[[LogLine], None], *,
               stop: threading.Event, duration: Optional[float] = None) -> list:
    """Print (through ``on_line``, on this thread) every agent's last lines, then new ones,
    until ``stop`` is set, ``duration`` passes or every log has failed; the problem LogLines."""
    lines_in: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
    readers = [threading.Thread(target=_read, args=(inv, a, lines, lines_in, stop), daemon=True,
                                name=f"logs-{a.name}") for a in agents]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + duration if duration else None
    problems: list = []
    while not stop.is_set() and not (deadline and time.monotonic() >= deadline):
        try:
            item = lines_in.get(timeout=0.1)
        except queue.Empty:
            if not any(r.is_alive() for r in readers) and lines_in.empty():
                break
            continue
        if item.problem:
            problems.append(item)
        on_line(item)
    stop.set()
    return problems


def _read(inv, agent, lines, lines_in: queue.Queue, stop: threading.Event) -> None:
    try:
        for line in _source(inv, agent, lines, follow=True):
            if stop.is_set():
                return
            lines_in.put(LogLine(agent.name, line))
    except HatcheryError as exc:
        lines_in.put(LogLine(agent.name, problem=exc.message))


def _source(inv, agent, lines, *, follow: bool):
    return for_runtime(agent.runtime).agent_logs(inv, agent, lines=lines, follow=follow)
