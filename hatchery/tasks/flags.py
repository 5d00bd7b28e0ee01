"""Flags: one short-flag table, one range per numeric flag, and --help that shows both.

Short flags mean the same in every task (``-t`` is always ``--timeout``);
every other flag is long only. A numeric flag is typed and bounded by its
name, in ``BOUNDS``: ``--timeout=abc``, ``--timeout=0`` or ``--threshold=-5``
is refused while the command line is parsed, with a ``FlagError`` naming the
flag, its range and an example, which the CLI turns into exit 2 (or the JSON
envelope) before the task runs. A new task's ``--timeout`` is bounded
without a line of its own; a new numeric flag name needs a row here
(tests/test_task_help.py fails until it has one).
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import Optional

from invoke import Task
from invoke.exceptions import ParseError
from invoke.parser import ParserContext

# One meaning per short flag, in every task (the README's table). Other flags are long only.
SHORT_FLAGS = {"inventory": "i", "name": "n", "group": "g", "pattern": "p", "timeout": "t",
               "json": "j", "check": "C", "diff": "D"}
TYPE_LABELS = {float: "NUMBER", int: "INT", str: "STRING"}
KIND_WORDS = {float: "a number", int: "a whole number"}
MINUTE, HOUR, DAY = 60, 3600, 86400


class FlagError(ParseError):
    """A flag's value that cannot be: what is wrong and, in ``fix``, a value that would do."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True)
class Bound:
    """What one numeric flag accepts: its kind and range (``low`` excluded when ``open``)."""

    kind: type
    low: float
    high: float
    unit: str
    example: str
    open: bool = False

    def check(self, flag: str, value) -> float:
        if not self.contains(value):
            raise FlagError(f"--{flag} must be {self.describe()}, not {_shown(value)}",
                            f"e.g. --{flag} {self.example}")
        return value

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):    # nan passes no comparison
            return False
        above = value > self.low if self.open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        if self.open:
            return f"more than {_number(self.low)} and at most {_number(self.high)} {self.unit}".rstrip()
        return f"from {_number(self.low)} to {_number(self.high)} {self.unit}".rstrip()


class Batch(Bound):
    """``--batch``: a count of agents, or a percentage of the selection (``25%``)."""

    def __init__(self):
        super().__init__(str, 1, 100_000, "agents", "3")

    def parse(self, flag: str, text: str) -> str:
        raw = text.strip()
        if raw.endswith("%"):
            percent = _float(raw[:-1])
            ok = percent is not None and math.isfinite(percent) and 0 < percent <= 100
        else:
            ok = re.fullmatch(r"[0-9]{1,6}", raw) is not None and self.contains(int(raw))
        if not ok:
            raise FlagError(f"--{flag} must be {self.describe()}, not {_shown(text)}",
                            f"e.g. --{flag} 3 or --{flag} 25%")
        return raw

    def describe(self) -> str:
        return "a whole number of agents from 1 to 100000, or a percentage of the selection " \
            "more than 0% and at most 100%"


# Every numeric flag of every task, by name: a flag name means one thing everywhere.
BOUNDS = {
    "timeout": Bound(float, 0, HOUR, "seconds", "5", open=True),
    "threshold": Bound(float, 0, 7 * DAY, "seconds", "600", open=True),
    "stale": Bound(float, 0, 7 * DAY, "seconds", "600", open=True),
    "window": Bound(float, 0, 7 * DAY, "seconds", "600", open=True),
    "grace": Bound(float, 0, HOUR, "seconds", "5", open=True),
    "hung_after": Bound(float, 0, 600, "seconds", "3", open=True),
    "duration": Bound(float, 0, 366 * DAY, "seconds", "60", open=True),
    "listen": Bound(float, 0, DAY, "seconds", "300", open=True),
    "refresh": Bound(float, 0.1, HOUR, "seconds", "1"),
    "every": Bound(int, 1, DAY // MINUTE, "minutes", "10"),
    "port": Bound(int, 1, 65535, "", "9883"),
    "lines": Bound(int, 0, 100_000, "lines", "200"),
    "budget": Bound(int, 0, 1000, "restarts", "5"),
    "max_failed": Bound(int, 0, 100_000, "agents", "1"),
    "max_bytes": Bound(int, 4096, 1 << 30, "bytes", "10485760"),
    "keep": Bound(int, 0, 1000, "files", "5"),
    "batch": Batch(),
}


def _number(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value:.0f}"


def _float(text: str) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _shown(value, limit: int = 40) -> str:
    """The value as the message quotes it, cut: a 400-digit number is not worth echoing."""
    text = f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) \
        else str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class Cast:
    """An argument kind that refuses a bad value (wrong type or out of range) with a FlagError."""

    def __init__(self, flag: str, kind: type, bound: Optional[Bound] = None):
        self.flag, self.kind, self.bound = flag, kind, bound
        self.label = "COUNT|PERCENT" if isinstance(bound, Batch) else \
            TYPE_LABELS.get(kind, kind.__name__.upper())
        self.__name__ = self.label          # invoke names a kind in its debug output

    def __call__(self, value):
        if isinstance(self.bound, Batch):
            return self.bound.parse(self.flag, str(value))
        try:
            typed = self.kind(value)
        except (TypeError, ValueError):
            raise FlagError(f"--{self.flag} takes {KIND_WORDS.get(self.kind, 'a value')}, "
                            f"not {_shown(value)}", self._example()) from None
        return self.bound.check(self.flag, typed) if self.bound else typed

    def _example(self) -> str:
        return f"e.g. --{self.flag} {self.bound.example}" if self.bound else \
            f"e.g. --{self.flag} 1"


def bound_of(name: str) -> Optional[Bound]:
    """The range of the flag called ``name`` (``max_failed`` or ``max-failed``)."""
    return BOUNDS.get(name.replace("-", "_"))


def range_help(name: str) -> str:
    bound = bound_of(name)
    return bound.describe() if bound else ""


class HatcheryTask(Task):
    """A task with the short-flag table and typed, bounded numeric flags.

    A flag named in ``BOUNDS`` gets its kind and range from there, whatever its
    default (None included); ``types`` types any other flag whose default is None.
    """

    def __init__(self, body, *args, types=None, **kwargs):
        kwargs.setdefault("auto_shortflags", False)
        super().__init__(body, *args, **kwargs)
        self.types = dict(types or {})

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short and short not in taken_names:
            opts["names"] = [*opts["names"], short]
        bound = bound_of(name)
        kind = bound.kind if bound else self.types.get(name) or opts.get("kind")
        if bound or kind in (float, int):
            opts["kind"] = Cast(opts["names"][0], kind, bound)
        return opts


class TypedHelp(ParserContext):
    """``--help TASK`` with each flag's type: ``-t NUMBER, --timeout=NUMBER``."""

    def help_for(self, flag):
        names, text = super().help_for(flag)
        label = getattr(self.flags[flag].kind, "label", None)
        if label:
            spelled = sorted(self.names_for(flag), key=len)
            names = ", ".join(f"{n} {label}" if len(n.strip("-")) == 1 else f"{n}={label}"
                              for n in spelled)
        return names, text


def help_with_default(text: str, default, name: str = "") -> str:
    """The help line plus the default (or "required") when worth showing, and the range."""
    shown = []
    if default is inspect.Parameter.empty and "required" not in text:
        shown.append("required")
    elif default not in (None, False, "") and "default" not in text:
        shown.append(f"default: {default}")
    span = range_help(name)
    if span and span not in text:
        shown.append(span)
    if not shown:
        return text
    if text.endswith(")") and "(default" in text:     # one parenthesis: (default ...; range)
        return f"{text[:-1]}; {'; '.join(shown)})"
    return f"{text} ({'; '.join(shown)})"
