"""The boundary between invoke and the library.

Tasks are thin: load the inventory, call the library, hand the result to
``hatchery.output``. Errors become a printed message and an exit code here,
and nowhere else.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os

from invoke import Exit, task

from hatchery.core.plan import Report, apply_plan
from hatchery.core.state import state_lock
from hatchery.errors import EXIT_FAILED, HatcheryError
from hatchery.inventory.load import load_inventory
from hatchery.tasks import output
from hatchery.tasks.progress import plan_progress

INVENTORY_HELP = "inventory file (default: $FLEET_INVENTORY, else ./fleet_inventory.yaml)"
COMMON_HELP = {
    "inventory": INVENTORY_HELP,
    "check": "show what would change; change nothing",
    "diff": "show the changes to files and settings as a diff",
    "json": "print machine-readable JSON instead of text",
    "timeout": "seconds to wait for replies",
    "name": "one agent (default: every agent in the inventory)",
    "group": "the agents of one inventory group",
}


def op(**extra_help):
    """``@task`` with the common flags' help, behind the error boundary."""
    def decorate(func):
        params = inspect.signature(func).parameters
        known = {**COMMON_HELP, **extra_help}
        return task(help={k: v for k, v in known.items() if k in params})(boundary(func))
    return decorate


def boundary(func):
    """Turn library errors into one printed message and an exit code."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except HatcheryError as exc:
            output.error(exc)
            raise Exit(code=exc.exit_code) from None
        except KeyboardInterrupt:
            output.notice("interrupted")
            raise Exit(code=130) from None
    return wrapper


def load(path=None):
    return load_inventory(path, env=os.environ)


def run_plan(title: str, plan, *, lock=None, check=False, diff=False, json=False) -> Report:
    """Apply (or with ``check`` only show) a plan, streaming a line per item.

    ``plan`` is a list of changes or a function that computes it; with ``lock``
    (a state directory) planning and applying happen under its lock, so two
    runs at once cannot both decide to start the same thing.
    """
    guard = state_lock(lock) if lock is not None and not check else contextlib.nullcontext()
    with guard:
        changes = plan() if callable(plan) else plan
        rep = _apply(title, changes, check=check, diff=diff, json=json)
    if not rep.ok:
        raise Exit(code=EXIT_FAILED)
    return rep


def _apply(title: str, changes: list, *, check, diff, json) -> Report:
    if json:
        rep = apply_plan(title, changes, check=check)
        output.emit_json(rep.as_dict())
        return rep
    output.report_header(title, check)
    with plan_progress(title, changes, check=check) as bar:
        def on_result(result):
            output.result_line(result, show_diff=diff)
            bar.done(result)
        rep = apply_plan(title, changes, check=check, on_result=on_result, on_start=bar.start)
    output.report_summary(rep)
    return rep


def fail_unless(ok: bool) -> None:
    if not ok:
        raise Exit(code=EXIT_FAILED)
