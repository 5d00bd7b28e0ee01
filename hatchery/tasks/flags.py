"""Flags: one short-flag table, typed values, and --help that shows the types.

Short flags mean the same in every task (``-t`` is always ``--timeout``);
every other flag is long only. A numeric flag refuses a bad value
(``--timeout=abc``) with a parse error naming the flag, which the CLI
turns into exit 2, instead of a traceback.
"""

from __future__ import annotations

from invoke import Task
from invoke.exceptions import ParseError
from invoke.parser import ParserContext

# One meaning per short flag, in every task (the README's table). Other flags are long only.
SHORT_FLAGS = {"inventory": "i", "name": "n", "group": "g", "pattern": "p", "timeout": "t",
               "json": "j", "check": "C", "diff": "D"}
TYPE_LABELS = {float: "NUMBER", int: "INT", str: "STRING"}


class Cast:
    """An argument kind that refuses a bad value with a ParseError naming the flag."""

    def __init__(self, flag: str, kind: type):
        self.flag, self.kind, self.label = flag, kind, TYPE_LABELS.get(kind, kind.__name__.upper())
        self.__name__ = self.label          # invoke names a kind in its debug output

    def __call__(self, value):
        try:
            return self.kind(value)
        except (TypeError, ValueError):
            raise ParseError(f"--{self.flag} takes {_article(self.label)} {self.label.lower()}, "
                             f"not {value!r}") from None


def _article(label: str) -> str:
    return "an" if label[:1].lower() in "aeiou" else "a"


class HatcheryTask(Task):
    """A task with the short-flag table, typed flags and checked values.

    ``types`` gives a type to flags whose default is None (``--threshold``).
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
        kind = self.types.get(name) or opts.get("kind")
        if kind in (float, int):
            opts["kind"] = Cast(opts["names"][0], kind)
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


def help_with_default(text: str, default) -> str:
    """The help line plus the default, when there is one worth showing."""
    if default in (None, False, "") or "default" in text:
        return text
    return f"{text} (default: {default})"
