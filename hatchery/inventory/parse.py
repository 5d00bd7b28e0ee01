"""YAML text -> data, two ways: fast, or keeping every line number.

``fast(text)`` builds plain data from libyaml's events (PyYAML's C parser):
a 1,000-agent inventory loads in ~40 ms of CPU instead of ~1,100 ms with
ruamel's pure-Python round trip (bench/inventory_bench.py). It reads scalars
exactly as the round-trip parser does (YAML 1.2: ``yes`` and ``on`` are
strings, ``010`` is not octal) or, where it cannot vouch for that (a number
with underscores, a date, a merge key, an explicit tag, a ``%YAML``
directive, a duplicate key), it raises ``Unsure``.

``with_lines(text, shown)`` is ruamel's round-trip parser: slower, but every
mapping and sequence knows the line of each key and item, and a syntax error
names its line. The loader parses fast, and re-reads with lines only when
there is a problem to report (or the fast parser was unsure), so every
message keeps its file:line and fix.
"""

from __future__ import annotations

import re
from typing import Optional

from hatchery.errors import InventoryError, Problem

try:  # libyaml ships inside PyYAML's wheels; without it there is no fast path
    from yaml import events as _events
    from yaml.cyaml import CParser as _CParser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    _CParser = None


class Unsure(Exception):
    """The fast parser cannot promise to read this text as the round-trip parser would."""


def fast_available() -> bool:
    return _CParser is not None


# --- where a key sits -----------------------------------------------------------

def line(node, key) -> Optional[int]:
    """1-based line of ``key`` in a parsed mapping or sequence (None if unknown)."""
    lines = getattr(node, "lines", None)          # from fast()
    if lines is not None:
        try:
            return lines[key]
        except (KeyError, IndexError, TypeError):
            return None
    marks = getattr(node, "lc", None)             # from with_lines(): ruamel's line/column
    if marks is None:
        return None
    try:
        return (marks.key(key) if isinstance(node, dict) else marks.item(key))[0] + 1
    except (KeyError, IndexError, TypeError):
        return None if marks.line is None else marks.line + 1


# --- fast: libyaml, plain dicts and lists ---------------------------------------

class LinedDict(dict):
    """A mapping from ``fast()``: ``lines[key]`` is the 1-based line of each key."""

    __slots__ = ("lines",)


class LinedList(list):
    """A sequence from ``fast()``: ``lines[i]`` is the 1-based line of each item."""

    __slots__ = ("lines",)


# Plain scalars that YAML 1.2 (and so ruamel) reads as something other than a
# string. The simple forms are read below; the rest are ``Unsure``.
_TRUE_WORDS, _FALSE_WORDS = {"true", "True", "TRUE"}, {"false", "False", "FALSE"}
_NULL_WORDS = {"", "~", "null", "Null", "NULL"}
_SIMPLE_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_SIMPLE_FLOAT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\.[0-9]+")
# ruamel's YAML 1.2 patterns for numbers and dates (ruamel/yaml/resolver.py),
# one regex: anything they match that is not simple above, we leave to ruamel.
_NOT_A_STRING = re.compile(r"""
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[\ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9]
     (?:\.[0-9]*)?(?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?
    |<<|=
""", re.X)
_NUMERIC_START = frozenset("-+0123456789.<=")


def _read_scalar(value: str, plain: bool):
    """A scalar's value as the round trip reads it (YAML 1.2), or ``Unsure``."""
    if not plain:
        return value                 # quoted or block scalar: always a string
    if value in _TRUE_WORDS:
        return True
    if value in _FALSE_WORDS:
        return False
    if value in _NULL_WORDS:
        return None
    if value[0] not in _NUMERIC_START:
        return value
    if _SIMPLE_INT.fullmatch(value):
        return int(value)
    if _SIMPLE_FLOAT.fullmatch(value):
        return float(value)
    if _NOT_A_STRING.fullmatch(value):
        raise Unsure(f"plain scalar {value!r}")
    return value


_DIRECTIVE = re.compile(r"^%", re.M)


def fast(text: str):
    """The text's data as plain dicts and lists; ``Unsure`` when in any doubt.

    A syntax error is ``Unsure`` too: only ``with_lines`` words syntax errors.
    """
    if _CParser is None:
        raise Unsure("libyaml is not available")
    if _DIRECTIVE.search(text):      # e.g. %YAML 1.1 would change how scalars read
        raise Unsure("a directive")
    parser = _CParser(text)
    try:
        return _Builder().run(parser.get_event)
    except Unsure:
        raise
    except Exception as exc:         # any libyaml complaint: let ruamel word it
        raise Unsure(str(exc)) from None
    finally:
        parser.dispose()


_KEY = object()                      # an open mapping waits for a key, not a value


class _Builder:
    """Data straight from libyaml's events: no node graph, no constructor.

    Each open container on the stack is [container, is_mapping, key or _KEY,
    the key's line, anchor]. An anchor is known once its node is complete, so
    an alias to an open ancestor (a recursive structure) is ``Unsure``.
    """

    def __init__(self):
        self.stack: list = []
        self.anchors: dict = {}
        self.root = None
        self.documents = 0

    def run(self, next_event):
        handlers = {_events.ScalarEvent: self._scalar,
                    _events.MappingStartEvent: self._start, _events.SequenceStartEvent: self._start,
                    _events.MappingEndEvent: self._end, _events.SequenceEndEvent: self._end,
                    _events.AliasEvent: self._alias, _events.DocumentStartEvent: self._document}
        event = next_event()
        while event is not None:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
            event = next_event()
        return self.root

    def _scalar(self, event) -> None:
        if event.tag is not None or not (event.implicit[0] or event.implicit[1]):
            raise Unsure(f"tag {event.tag}")   # an explicit tag, or the non-specific '!'
        value = _read_scalar(event.value, event.implicit[0])
        if event.anchor is not None:
            self.anchors[event.anchor] = value
        self._put(value, event.start_mark.line + 1)

    def _start(self, event) -> None:
        if event.tag is not None:
            raise Unsure(f"tag {event.tag}")
        if self.stack and self.stack[-1][1] and self.stack[-1][2] is _KEY:
            raise Unsure("a key that is not a scalar")
        mapping = isinstance(event, _events.MappingStartEvent)
        container = LinedDict() if mapping else LinedList()
        container.lines = {} if mapping else []
        self._put(container, event.start_mark.line + 1)
        self.stack.append([container, mapping, _KEY, None, event.anchor])

    def _end(self, event) -> None:
        container, _, _, _, anchor = self.stack.pop()
        if anchor is not None:
            self.anchors[anchor] = container

    def _alias(self, event) -> None:
        if event.anchor not in self.anchors:
            raise Unsure(f"alias *{event.anchor}")
        self._put(self.anchors[event.anchor], event.start_mark.line + 1)

    def _document(self, event) -> None:
        self.documents += 1
        if self.documents > 1:       # ruamel's load() wants exactly one
            raise Unsure("more than one document")

    def _put(self, value, line: int) -> None:
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        container, mapping, key = top[0], top[1], top[2]
        if not mapping:
            container.append(value)
            container.lines.append(line)
        elif key is _KEY:
            try:
                if value in container:   # ruamel refuses a duplicate key
                    raise Unsure(f"duplicate key {value!r}")
            except TypeError:            # an unhashable key (an aliased container)
                raise Unsure("a key that is not a scalar") from None
            top[2], top[3] = value, line
        else:
            container[key] = value
            container.lines[key] = top[3]
            top[2] = _KEY


# --- with lines: ruamel's round trip --------------------------------------------

def round_trip_yaml():
    """A ruamel round-trip YAML: keeps line numbers and comments, and writes back."""
    # Imported here, not at the top: ruamel costs ~40 ms of start-up that a
    # command reading a good inventory never needs.
    from ruamel.yaml import YAML
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096                # never re-wrap a long line when writing back
    return yaml


def with_lines(text: str, shown: str):
    """The text's data, every container knowing its lines; InventoryError naming the line."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    try:
        return round_trip_yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = mark.line + 1 if mark else None
        problem = _yaml_problem(exc, where)
        raise failure(shown, where, "(yaml)", problem, _syntax_fix(problem, where)) from None
    except YAMLError as exc:
        raise failure(shown, None, "(yaml)", str(exc), "fix the YAML syntax") from None
    except (ValueError, IndexError, TypeError, AttributeError) as exc:
        # ruamel's constructor trips over some scalars its resolver calls
        # numbers, such as -_ or ._ (an IndexError, a ValueError).
        found = _unreadable_scalar(text)
        where, value = found if found else (None, None)
        problem = (f"{value!r} looks like a number to YAML but is not one" if found
                   else f"a value could not be read ({type(exc).__name__}: {exc})")
        raise failure(shown, where, "(yaml)", problem,
                      "quote it if it is text, e.g. '-_', or write the number") from None


def _unreadable_scalar(text: str) -> Optional[tuple]:
    """(line, value) of the first plain scalar ruamel cannot build; None if not found."""
    if _CParser is None:
        return None
    parser = _CParser(text)
    try:
        event = parser.get_event()
        while event is not None:
            if (isinstance(event, _events.ScalarEvent) and event.implicit[0]
                    and event.value[:1] in _NUMERIC_START and not _builds(event.value)):
                return event.start_mark.line + 1, event.value
            event = parser.get_event()
    except Exception:                # libyaml refuses the text: no better place to point at
        return None
    finally:
        parser.dispose()
    return None


def _builds(plain_scalar: str) -> bool:
    try:
        round_trip_yaml().load(f"k: {plain_scalar}\n")
        return True
    except Exception:
        return False


def _yaml_problem(exc, where: Optional[int]) -> str:
    """The parser's complaint, plus where the construct it was reading began."""
    problem = exc.problem or exc.context or "invalid YAML"
    if "duplicate key" in problem:     # drop the values ruamel quotes: they may be long
        problem = problem.split(" with value ")[0]
    begun = exc.context_mark.line + 1 if exc.context_mark else None
    if exc.problem and exc.context and begun and begun != where:
        problem += f" ({exc.context} that began on line {begun})"
    return problem


def _syntax_fix(problem: str, where: Optional[int]) -> str:
    if "duplicate key" in problem:
        return "each key may appear once; merge or rename the duplicate"
    if "\\t" in problem:
        return "indent with spaces, not tabs"
    return f"check the indentation, colons and quotes on or just before line {where}"


def failure(shown: str, where, keypath: str, message: str, fix: str) -> InventoryError:
    """One problem as the InventoryError that rejects the file."""
    return InventoryError(shown, [Problem(shown, where, keypath, message, fix)])
