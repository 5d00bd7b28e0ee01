"""Plan, then apply: compute each change, show it, then make it.

A planner compares what is wanted with what is there and returns ``Change``
objects; nothing is touched while planning, so ``--check`` and ``--diff`` come
for free. ``apply_plan`` makes the changes, keeps going when one item fails
(like fabric's ``GroupResult``) and returns a ``Report`` with one result per
item.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Optional

from hatchery.core.results import Result
from hatchery.core.words import Word
from hatchery.errors import HatcheryError, RuntimeFailure

OK, CHANGED, FAILED, WOULD_CHANGE = "ok", "changed", "failed", "would change"


class Action(Word):
    """What a plan item does: a name, never a free string (compose's ConvergenceStrategy).

    A str, so it prints, compares and serialises as its word ("restart"). ``FAILED``
    is a planner's way to say the item cannot be done (nothing to roll back to):
    apply_plan reports it as failed, in --check too, never as "would change".
    """

    NONE = "none"
    CREATE = "create"
    UPDATE = "update"
    START = "start"
    RESTART = "restart"
    RECREATE = "recreate"
    RELOAD = "reload"
    REPAIR = "repair"
    STOP = "stop"
    REMOVE = "remove"
    ROLLBACK = "rollback"
    CLEAR = "clear"
    CHECK = "check"                 # a read-back that fails when what it checks does not hold
    FAILED = "failed"
    PLAN = "plan"                   # an item whose planning itself failed (a host out of reach)


@dataclass
class Change:
    """One item's wanted change. ``Action.NONE`` means already as wanted."""

    item: str                       # e.g. "broker", "agent client-a"
    action: Action = Action.NONE
    reason: str = ""                # why, in a few words: "config changed"
    diff: str = ""                  # unified diff shown by --diff
    apply: Optional[Callable[[], Optional[str]]] = None  # may return a detail line

    def __post_init__(self):
        self.action = Action(self.action)   # a word that is not an Action is a bug: ValueError

    @property
    def needed(self) -> bool:
        return self.action is not Action.NONE

    @property
    def failed(self) -> bool:
        """The planner already knows this item cannot be done."""
        return self.action is Action.FAILED


def bind(change: Change, diff: str, steps: dict, fix: str = "") -> Change:
    """A pure decision made applicable: its diff and its apply step ``steps[action]``
    (nothing for an item already as wanted). A FAILED decision's step raises its
    reason with ``fix``, so applying it says what to do."""
    if not change.needed:
        return change
    if change.failed:
        return replace(change, apply=_refusal(change.reason, fix))
    return replace(change, diff=diff, apply=steps[change.action])


def _refusal(reason: str, fix: str):
    def refuse() -> str:
        raise RuntimeFailure(reason, fix)
    return refuse


@dataclass
class ItemResult:
    item: str
    status: str                     # ok | changed | failed | would change
    action: Action = Action.NONE
    reason: str = ""
    diff: str = ""
    detail: str = ""
    error: str = ""
    seconds: float = 0.0

    def __post_init__(self):
        self.action = Action(self.action)

    def as_dict(self) -> dict:
        return {k: (v.value if isinstance(v, Action) else v)
                for k, v in self.__dict__.items() if v not in ("", None)}


@dataclass
class Report(Result):
    """The outcome of one task over many items."""

    title: str
    results: list = field(default_factory=list)
    check: bool = False
    columns: tuple = ("item", "status", "action", "reason")

    @property
    def items(self) -> list:
        return self.results
    hosts: dict = field(default_factory=dict)      # host -> summary (core.hosts.apply_per_host)

    @property
    def failed(self) -> list:
        return [r for r in self.results if r.status == FAILED]

    @property
    def changed(self) -> list:
        return [r for r in self.results if r.status in (CHANGED, WOULD_CHANGE)]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def problems(self) -> list:
        return [f"{r.item}: failed: {r.error.splitlines()[0] if r.error else 'no detail'}"
                for r in self.failed]

    def extras(self) -> dict:
        return {"check": self.check, "changed": len(self.changed), "failed": len(self.failed),
                **({"hosts": self.hosts} if self.hosts else {})}


def apply_plan(title: str, changes: list, check: bool = False,
               on_result: Callable[[ItemResult], None] | None = None,
               on_start: Callable[[Change], None] | None = None) -> Report:
    """Apply each needed change (or only report it, with ``check``).

    ``on_start(change)`` is called before each change is made (progress display).
    """
    report = Report(title, check=check)
    for change in changes:
        if on_start:
            on_start(change)
        result = _apply_one(change, check)
        report.results.append(result)
        if on_result:
            on_result(result)
    return report


def _apply_one(change: Change, check: bool) -> ItemResult:
    base = dict(item=change.item, action=change.action, reason=change.reason, diff=change.diff)
    if not change.needed:
        return ItemResult(status=OK, **base)
    if change.failed and (check or change.apply is None):
        return ItemResult(status=FAILED, error=change.reason, **base)     # never "would change"
    if check:
        return ItemResult(status=WOULD_CHANGE, **base)
    started = time.monotonic()
    try:
        detail = change.apply() if change.apply else None
    except (HatcheryError, OSError) as exc:  # OSError: a file, a signal, a socket
        return ItemResult(status=FAILED, error=_error_text(exc),
                          seconds=time.monotonic() - started, **base)
    if change.failed:   # its apply step was to explain why (with the fix), and it did not raise
        return ItemResult(status=FAILED, error=detail or change.reason, seconds=time.monotonic() - started, **base)
    return ItemResult(status=CHANGED, detail=detail or "",
                      seconds=time.monotonic() - started, **base)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc)


def failed_item(item: str, error: Exception) -> ItemResult:
    """A result for an item whose planning itself failed."""
    return ItemResult(item=item, status=FAILED, error=str(error))


def text_diff(before: str, after: str, name: str) -> str:
    """Unified diff of two texts, labelled with ``name``."""
    lines = difflib.unified_diff(before.splitlines(keepends=True),
                                 after.splitlines(keepends=True),
                                 fromfile=f"{name} (current)", tofile=f"{name} (wanted)")
    return "".join(lines)
