"""invoke verify: round trips, retained messages, DNS and agents, after every change."""

from __future__ import annotations

from hatchery.tasks import output
from hatchery.tasks.common import fail_unless, load, op, show


@op()
def verify(c, inventory=None, timeout=5.0, json=False):
    """Check the bus end to end: broker, round trip, retained, DNS, every agent."""
    from hatchery.observe.verify import verify as run_verify   # not at start-up: see agent.py
    inv = load(inventory)
    if json:
        report = run_verify(inv, timeout=timeout)
        show(report, json)
    else:
        output.emit("verify")
        report = run_verify(inv, timeout=timeout, on_check=output.check_line)
        passed = sum(c.ok for c in report.checks)
        output.emit(f"{passed}/{output.plural(len(report.checks), 'check')} passed")
    fail_unless(report.ok)
