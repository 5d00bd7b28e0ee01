"""Progress on long work (many hatches or stops, image builds), on a terminal only.

A plan whose changes take time shows a rich progress bar below the result
lines: the item being worked on, a spinner, done/total and the time so far.
It appears only when both stdout and stderr are terminals and the caller is
not printing JSON: piped or under ``--json`` nothing but the usual lines is
written. The bar is transient, so the finished output is the same either way.
"""

from __future__ import annotations

import contextlib
import os
import sys

MIN_NEEDED = 1      # show a bar once at least this many changes must be made


def interactive() -> bool:
    """A person is watching: both streams are terminals and the terminal can draw."""
    return (sys.stdout.isatty() and sys.stderr.isatty()
            and os.environ.get("TERM") != "dumb")


class _Quiet:
    def start(self, change) -> None:
        pass

    def done(self, result) -> None:
        pass


class _Bar:
    def __init__(self, progress, task, title: str):
        self.progress, self.task, self.title = progress, task, title

    def start(self, change) -> None:
        self.progress.update(self.task, description=f"{self.title}: {change.item}")

    def done(self, result) -> None:
        self.progress.advance(self.task)


@contextlib.contextmanager
def plan_progress(title: str, changes: list, *, check: bool = False, enabled=None):
    """``.start(change)`` / ``.done(result)`` around each change; a bar only when useful."""
    show = interactive() if enabled is None else enabled
    needed = sum(1 for c in changes if c.needed)
    if check or not show or needed < MIN_NEEDED:
        yield _Quiet()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    # result lines printed meanwhile (output.emit) go above the bar: rich redirects stdout
    with Progress(*columns, console=Console(stderr=True), transient=True,
                  redirect_stdout=True, redirect_stderr=True) as progress:
        yield _Bar(progress, progress.add_task(title, total=len(changes)), title)
