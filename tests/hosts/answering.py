"""Wait until agents answer on the bus (a plain module, like netns.py).

A hatch returns when the container or task has started; the handler then connects
and subscribes. A command published before that is lost (not retained), so a
test that checks answers right after a hatch first waits here.
"""

from __future__ import annotations

import time

from hatchery.bus.commands import run_command


def wait_answering(inv, names: list, within: float = 60.0, verb: str = "health-check") -> float:
    """Seconds until every agent in ``names`` answered ``verb``; AssertionError after ``within``."""
    started = time.monotonic()
    pending = list(names)
    while pending:
        answers = run_command(inv, verb, names=pending, timeout=2)
        pending = [r.agent for r in answers.replies if r.state != "answered"]
        if pending and time.monotonic() - started > within:
            raise AssertionError(f"{pending} did not answer {verb} within {within:g} s: "
                                 f"{[(r.agent, r.state) for r in answers.replies]}")
    return time.monotonic() - started
