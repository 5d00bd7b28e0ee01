"""The command line's error layer, for both ``hatchery TASK`` and ``invoke TASK``.

invoke's own Program answers a typo'd task or flag with "No idea what ... is!"
and exit 1, lets a bad value (``--timeout=abc``) escape as a traceback, and
shows neither types nor defaults in ``--help``. ``BoundaryMixin`` fixes that
in one place:

- parse errors become a ``UsageError`` (exit 2) with "did you mean ..."
  (difflib over the task names, or over the task's flags);
- under ``--json`` that error is the JSON envelope on stdout;
- a closed stdout (``| head -1``) ends the run quietly with 141, the status
  of a process a SIGPIPE ended (we do not restore SIGPIPE's default action:
  it would also kill us on a write to a broker socket the peer reset);
- ``--help TASK`` shows each flag's type; the help text carries the default.

The ``hatchery`` console script is a ``HatcheryProgram``. For the ``invoke``
binary, tasks.py calls ``install_boundary()``: invoke imports tasks.py while
it parses (``parse_collection``), before it parses the task arguments, so
switching its running Program to the subclass takes effect for everything
after that — the task arguments, ``--list``, ``--help`` and the run.
"""

from __future__ import annotations

import ast
import contextlib
import re
import sys

from invoke import Exit, Program
from invoke.exceptions import ParseError
from invoke.parser import Parser, ParserContext

from agent_kit import __version__
from hatchery.core.results import envelope, utc_now
from hatchery.errors import EXIT_USAGE, UsageError
from hatchery.inventory.select import suggest
from hatchery.tasks import namespace, output
from hatchery.tasks.common import CLOSED_PIPE
from hatchery.tasks.flags import FlagError, TypedHelp, bound_of

_UNKNOWN = re.compile(r"No idea what (.+) is!")
_MISSING = re.compile(r"'(?P<task>[^']+)' did not receive required positional arguments: (?P<names>.+)")
_NO_VALUE = re.compile(r"Flag <Argument: (?P<name>[\w-]+).*> needed value and was not given one!")


@contextlib.contextmanager
def closed_pipe_is_quiet():
    """A reader that went away (``| head -1``) ends the run with 141, no traceback."""
    try:
        yield
    except (BrokenPipeError, output.OutputClosed):
        output.silence_stdout()
        raise Exit(code=CLOSED_PIPE) from None
    finally:
        if not output.flush_stdout():
            raise Exit(code=CLOSED_PIPE)


class BoundaryMixin:
    """Program overrides: parse errors, closed pipes, typed help (see the module doc)."""

    command = "invoke"      # how the fixes spell the command

    def parse_tasks(self):
        try:
            super().parse_tasks()
        except ParseError as exc:
            self._refuse(self._usage_error(exc))

    def _make_parser(self):
        """A parser for the tasks named on the command line only.

        invoke builds (and deep-copies, twice) a parser context for every task
        and flag of the namespace: ~120 ms of a one-task command. Other tokens
        cannot be tasks of ours, so leaving their contexts out changes no
        answer; with no task named (``--list``, ``--help``) the whole namespace.
        """
        named = _named_tasks(self.core.unparsed, self.collection)
        if not named:
            return super()._make_parser()
        ignore = self.config.tasks.ignore_unknown_help
        return Parser(initial=self.initial_context, contexts=[
            ParserContext(name=name, aliases=aliases,
                          args=self.collection[name].get_arguments(ignore_unknown_help=ignore))
            for name, aliases in named.items()])

    def parse_cleanup(self):
        with closed_pipe_is_quiet():
            super().parse_cleanup()

    def execute(self):
        with closed_pipe_is_quiet():
            super().execute()

    def print_task_help(self, name):
        context = self.parser.contexts[name]
        context.__class__ = TypedHelp      # same data, typed flag specs
        super().print_task_help(name)

    def _usage_error(self, exc: ParseError) -> UsageError:
        text = str(exc)
        unknown = _UNKNOWN.fullmatch(text)
        if unknown:
            token = _literal(unknown.group(1))
            if token.startswith("-"):
                return self._unknown_flag(token, getattr(exc, "context", None))
            return self._unknown_task(token)
        task = getattr(getattr(exc, "context", None), "name", None) or \
            _task_in(list(getattr(self, "argv", None) or sys.argv), self.collection) or "TASK"
        see = f"see the flags with: {self.command} --help {task}"
        missing, no_value = _MISSING.fullmatch(text), _NO_VALUE.fullmatch(text)
        if missing:
            return self._missing(task, re.findall(r"'([^']+)'", missing["names"]), see)
        if no_value:
            flag = "--" + no_value["name"].replace("_", "-")
            return UsageError(f"{flag} needs a value", f"e.g. {flag} {_example(flag)}; {see}")
        if isinstance(exc, FlagError):      # a value out of its range: the flag's own example
            return UsageError(text, f"{exc.fix}; {see}")
        return UsageError(text, see)

    def _missing(self, task: str, names: list, see: str) -> UsageError:
        """A required flag left out: which, what it is for, and the line that would work."""
        flags = ["--" + n.replace("_", "-") for n in names]
        context = self.parser.contexts.get(task) if getattr(self, "parser", None) else None
        helps = [getattr(context.flags.get(f), "help", "") if context else "" for f in flags]
        what = " and ".join(f"{f} ({h.split(' (')[0]})" if h else f for f, h in zip(flags, helps))
        line = " ".join(f"{f} {_example(f)}" for f in flags)
        return UsageError(f"{task} needs {what}",
                          f"e.g. {self.command} {task} {line}; {see}")

    def _unknown_flag(self, token: str, context) -> UsageError:
        task = getattr(context, "name", None)
        flags = list((context if task else self.initial_context).flags)
        close = suggest(token, [f for f in flags if f.startswith("--")]) or suggest(token, flags)
        where = f"{self.command} --help {task}" if task else f"{self.command} --help"
        fix = (f"did you mean {' or '.join(close)}? " if close else "") + f"see the flags with: {where}"
        return UsageError(f"unknown flag {token!r}" + (f" for {task}" if task else ""), fix)

    def _unknown_task(self, token: str) -> UsageError:
        # task names share their collection's prefix ("fleet."): ask for a closer match
        close = suggest(token, self.collection.task_names, cutoff=0.7) if self.collection else []
        fix = (f"did you mean {' or '.join(close)}? " if close else "") + \
            f"see every task with: {self.command} --list"
        return UsageError(f"unknown task {token!r}", fix)

    def _refuse(self, error: UsageError):
        argv = list(getattr(self, "argv", None) or sys.argv)
        if "--json" in argv or "-j" in argv:
            output.emit_json(envelope(_task_in(argv, self.collection), None, seconds=0.0,
                                      started=utc_now(), error=error))
        else:
            output.error(error)
        raise Exit(code=EXIT_USAGE)


def _example(flag: str) -> str:
    """A value that shows the shape of a flag's argument (``--name NAME``, ``--timeout 5``)."""
    bound = bound_of(flag.lstrip("-"))
    return bound.example if bound else flag.lstrip("-").replace("-", "_").upper()


def _literal(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("'\"")
    return value if isinstance(value, str) else str(value)


def _named_tasks(tokens: list, collection) -> dict:
    """{primary name: aliases} of the tasks of ``collection`` that appear in ``tokens``."""
    names = collection.task_names if collection else {}
    primary = {alias: name for name, aliases in names.items() for alias in (name, *aliases)}
    return {primary[t]: names[primary[t]] for t in tokens if t in primary}


def _task_in(argv: list, collection) -> str:
    names = set(collection.task_names) if collection else set()
    return next((a for a in argv if a in names), "")


class HatcheryProgram(BoundaryMixin, Program):
    """``hatchery TASK``: the same tasks as ``invoke``, behind the same error layer."""

    command = "hatchery"


program = HatcheryProgram(namespace=namespace, version=__version__, name="hatchery",
                          binary="hatchery")


def install_boundary() -> None:
    """Give the running ``invoke`` Program the same error layer (called from tasks.py)."""
    from invoke import main
    running = main.program
    if not isinstance(running, BoundaryMixin):
        running.__class__ = type("InvokeWithBoundary", (BoundaryMixin, type(running)), {})


def main() -> None:
    program.run()
