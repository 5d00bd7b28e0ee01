"""Wait until agents answer on the bus (a plain module, like netns.py).

A hatch returns when the container or task has started; the handler then connects
and subscribes. A command published before that is lost (not retained), so a
test that checks answers right after a hatch first waits here. While a broker is
being replaced nothing answers, and connecting fails: that is waited out too.
"""

from __future__ import annotations

import time

from hatchery.bus.commands import run_command
from hatchery.errors import HatcheryError


def wait_answering(inv, names: list, within: float = 60.0, verb: str = "health-check",
                   since: float | None = None) -> float:
    """Seconds (from ``since``, a time.monotonic(); default now) until every agent in
    ``names`` has answered ``verb`` once; AssertionError after ``within``."""
    started = time.monotonic() if since is None else since
    pending, last = list(names), "not asked yet"
    while pending:
        try:
            answers = run_command(inv, verb, names=pending, timeout=1.5)
            pending = [r.agent for r in answers.replies if r.state != "answered"]
            last = str([(r.agent, r.state) for r in answers.replies])
        except HatcheryError as exc:        # the broker is being replaced
            last = str(exc).splitlines()[0]
            time.sleep(0.5)
        if pending and time.monotonic() - started > within:
            raise AssertionError(f"{pending} did not answer {verb} within {within:g} s: {last}")
    return time.monotonic() - started
