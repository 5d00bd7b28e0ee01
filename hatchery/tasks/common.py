"""The boundary between invoke and the library.

Tasks are thin: load the inventory, call the library, hand the result to
``show`` (or ``run_plan``). Errors become a printed message (or, under
``--json``, the JSON envelope on stdout) and an exit code here, and nowhere
else.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from invoke import Exit, task

from hatchery.core.hosts import apply_per_host
from hatchery.core.plan import Report, apply_plan
from hatchery.core.results import Result, envelope, utc_now
from hatchery.core.state import state_lock
from hatchery.errors import EXIT_FAILED, HatcheryError, UsageError
from hatchery.inventory.load import load_inventory
from hatchery.tasks import output
from hatchery.tasks.flags import HatcheryTask, help_with_default
from hatchery.tasks.progress import plan_progress

CLOSED_PIPE = 141          # 128 + SIGPIPE: what a shell reports for `... | head -1`
INVENTORY_HELP = "inventory file (default: $FLEET_INVENTORY, else ./fleet_inventory.yaml)"
SELECTOR_HELP = {
    "name": "agents by name, comma-separated: a,b (did-you-mean for unknown names)",
    "group": "agents of these inventory groups, comma-separated",
    "pattern": "agents whose name matches one of these globs, comma-separated: 'client-*'",
    "host": "agents on these hosts (names under hosts:, or 'local'), comma-separated",
}
COMMON_HELP = {
    "inventory": INVENTORY_HELP,
    "check": "show what would change; change nothing",
    "diff": "show the changes to files and settings as a diff",
    "json": "print the JSON envelope (task, ok, items, problems, timings) instead of text",
    "timeout": "seconds to wait for replies",
    "duration": "stop after this many seconds (default: until Ctrl-C)",
    **SELECTOR_HELP,
}


@dataclass
class TaskRun:
    """The task being run: its name for the envelope, when it started."""

    name: str
    json: bool = False
    started: datetime = field(default_factory=utc_now)
    clock: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.clock


_CURRENT: ContextVar[Optional[TaskRun]] = ContextVar("hatchery_task", default=None)


def op(types=None, **extra_help):
    """``@task`` with the common flags' help, typed flags, behind the error boundary.

    ``types`` gives a type to the flags whose default is None (``{"threshold": float}``);
    the help of every flag ends with its default.
    """
    def decorate(func):
        params = inspect.signature(func).parameters
        known = {**COMMON_HELP, **extra_help}
        helps = {k: help_with_default(v, params[k].default, k) for k, v in known.items()
                 if k in params}
        return task(help=helps, klass=HatcheryTask, types=types)(boundary(func))
    return decorate


def task_name(func) -> str:
    """``fleet.version-report`` from hatchery.tasks.fleet.version_report (``verify`` alone)."""
    module = func.__module__.rsplit(".", 1)[-1]
    name = func.__name__.rstrip("_").replace("_", "-")
    return name if module == name else f"{module}.{name}"


def boundary(func):
    """Turn library errors into one message (or JSON envelope) and an exit code."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        run = TaskRun(wrapper.task_name, json=bool(kwargs.get("json")))
        token = _CURRENT.set(run)
        try:
            return func(*args, **kwargs)
        except HatcheryError as exc:
            _report_error(run, exc)
            raise Exit(code=exc.exit_code) from None
        except (BrokenPipeError, output.OutputClosed):
            output.silence_stdout()
            raise Exit(code=CLOSED_PIPE) from None
        except KeyboardInterrupt:
            output.notice("interrupted")
            raise Exit(code=130) from None
        finally:
            _CURRENT.reset(token)
    wrapper.task_name = task_name(func)     # name_tasks() sets the name invoke shows
    return wrapper


def name_tasks(collection, prefix: str = "") -> None:
    """Tell each task's boundary the dotted name it has in the namespace (for the envelope)."""
    for name, one in collection.tasks.items():
        one.body.task_name = prefix + name
    for name, sub in collection.collections.items():
        name_tasks(sub, f"{prefix}{name}.")


def _report_error(run: TaskRun, exc: HatcheryError) -> None:
    if run.json:
        output.emit_json(envelope(run.name, None, seconds=run.seconds, started=run.started,
                                  error=exc))
    else:
        output.error(exc)


def current() -> TaskRun:
    return _CURRENT.get() or TaskRun("")


def as_envelope(result: Result) -> dict:
    run = current()
    return envelope(run.name, result, seconds=run.seconds, started=run.started)


def show(result: Result, json: bool, *, table: bool = True) -> None:
    """A result as the JSON envelope, or as its table and a stderr line per problem."""
    if json:
        output.emit_json(as_envelope(result))
        return
    if table:
        output.table(result.rows(), result.columns)
    for line in result.problems:
        output.emit_untrusted(line, err=True)


def load(path=None):
    return load_inventory(path, env=os.environ)


def choice(value: str, valid, flag: str) -> str:
    """An enumerated flag's value, refused (exit 2) with the valid ones when unknown."""
    if value not in valid:
        raise UsageError(f"{flag} {value!r} is not one of: {', '.join(valid)}",
                         f"use one of: {', '.join(valid)}")
    return value


def choices(value: Optional[str], valid, flag: str) -> Optional[list]:
    """A comma-separated enumerated flag; None when not given."""
    if value is None:
        return None
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    if not chosen:
        raise UsageError(f"{flag} is empty", f"use some of: {', '.join(valid)}")
    for v in chosen:
        choice(v, valid, flag)
    return chosen


def run_plan(title: str, plan, *, lock=None, check=False, diff=False, json=False) -> Report:
    """Apply (or with ``check`` only show) a plan, streaming a line per item.

    ``plan`` is a list of changes or a function that computes it; with ``lock``
    (a state directory) planning and applying happen under its lock, so two
    runs at once cannot both decide to start the same thing.
    """
    guard = state_lock(lock) if lock is not None and not check else contextlib.nullcontext()
    with guard, output.library_progress():
        changes = plan() if callable(plan) else plan
        rep = _apply(title, changes, check=check, diff=diff, json=json)
    if not rep.ok:
        raise Exit(code=EXIT_FAILED)
    return rep


def run_host_plans(title: str, plans, *, lock=None, check=False, diff=False, json=False,
                   items=()) -> Report:
    """Like ``run_plan`` for work spread over hosts: ``plans()`` gives (common changes,
    {host: () -> changes}); the hosts are planned and applied in parallel and every
    host is reported, reachable or not (core.hosts.apply_per_host). ``items``: the
    items the hosts' plans will have (``agent NAME``), to size the item column."""
    guard = state_lock(lock) if lock is not None and not check else contextlib.nullcontext()
    with guard, output.library_progress():
        common, per_host = plans()
        if json:
            rep = apply_per_host(title, common, per_host, check=check)
            output.emit_json(as_envelope(rep))
        else:
            output.report_header(title, check)
            column = output.item_width([*items, *(c.item for c in common)])
            rep = apply_per_host(title, common, per_host, check=check,
                                 on_result=lambda r: output.result_line(r, show_diff=diff,
                                                                        item_column=column))
            output.report_summary(rep)
    if not rep.ok:
        raise Exit(code=EXIT_FAILED)
    return rep


def _apply(title: str, changes: list, *, check, diff, json) -> Report:
    if json:
        rep = apply_plan(title, changes, check=check)
        output.emit_json(as_envelope(rep))
        return rep
    output.report_header(title, check)
    column = output.item_width(c.item for c in changes)
    with plan_progress(title, changes, check=check) as bar:
        def on_result(result):
            output.result_line(result, show_diff=diff, item_column=column)
            bar.done(result)
        rep = apply_plan(title, changes, check=check, on_result=on_result, on_start=bar.start)
    output.report_summary(rep)
    return rep


def stop_event(duration: Optional[float] = None) -> threading.Event:
    """What a long-running task waits on: set after ``--duration`` seconds (when given) and
    on SIGTERM, so a service manager's stop ends it as cleanly as Ctrl-C does."""
    stop = threading.Event()
    if duration:
        timer = threading.Timer(float(duration), stop.set)
        timer.daemon = True
        timer.start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def how_to_stop() -> str:
    """What stops a long-running task, for its first log line. Started in the background of a
    script (``cmd &`` in a non-interactive shell) it inherits SIGINT ignored, as every program
    does (Python then never raises KeyboardInterrupt): there only SIGTERM (``stop_event``) does."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return "SIGTERM stops (SIGINT is ignored: started in the background)"
    return "Ctrl-C stops"


def fail_unless(ok: bool) -> None:
    if not ok:
        raise Exit(code=EXIT_FAILED)
