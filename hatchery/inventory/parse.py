"""YAML text -> data, two ways: fast, or keeping every line number.

``fast(text)`` parses with libyaml (PyYAML's C parser): about twenty times
less CPU than ruamel's pure-Python round-trip parser on a 1,000-agent
inventory. It reads scalars exactly as the round-trip parser does (YAML 1.2:
``yes`` and ``on`` are strings, ``010`` is not octal) or, where it cannot
vouch for that (a number with underscores, a date, a merge key, an explicit
tag, a ``%YAML`` directive, a duplicate key), it raises ``Unsure``.

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
    from yaml.cyaml import CParser as _CParser
    from yaml.constructor import BaseConstructor as _BaseConstructor
    from yaml.resolver import BaseResolver as _BaseResolver
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
# string. The simple forms are built below; the rest are ``Unsure``.
_TRUE, _FALSE = {"true", "True", "TRUE"}, {"false", "False", "FALSE"}
_NULL = {"", "~", "null", "Null", "NULL"}
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

# Our own tags: a node with any other tag (an explicit ``!!int`` or ``!thing``)
# has no constructor here, which makes the fast parser unsure.
_STR, _INT, _FLOAT, _TRUE_TAG, _FALSE_TAG, _NULL_TAG, _MAP, _SEQ = (
    f"tag:hatchery.fast:{kind}" for kind in
    ("str", "int", "float", "true", "false", "null", "map", "seq"))


def _scalar_tag(value: str, plain: bool) -> str:
    if not plain:
        return _STR                  # quoted or block scalar: always a string
    if value in _TRUE:
        return _TRUE_TAG
    if value in _FALSE:
        return _FALSE_TAG
    if value in _NULL:
        return _NULL_TAG
    if value[0] not in _NUMERIC_START:
        return _STR
    if _SIMPLE_INT.fullmatch(value):
        return _INT
    if _SIMPLE_FLOAT.fullmatch(value):
        return _FLOAT
    if _NOT_A_STRING.fullmatch(value):
        raise Unsure(f"plain scalar {value!r}")
    return _STR


if _CParser is not None:
    class _Resolver(_BaseResolver):
        def resolve(self, kind, value, implicit):
            if kind.id == "scalar":
                if not (implicit[0] or implicit[1]):
                    raise Unsure("a non-specific '!' tag")
                return _scalar_tag(value, implicit[0])
            return _MAP if kind.id == "mapping" else _SEQ

    class _Constructor(_BaseConstructor):
        def _unsure(self, node):
            raise Unsure(f"tag {node.tag}")

        def _map(self, node):
            data = LinedDict()
            data.lines = lines = {}
            yield data
            for key_node, value_node in node.value:
                key = self.construct_object(key_node)
                try:
                    if key in data:          # ruamel refuses a duplicate key
                        raise Unsure(f"duplicate key {key!r}")
                except TypeError:            # unhashable key
                    raise Unsure("a key that is not a scalar") from None
                data[key] = self.construct_object(value_node)
                lines[key] = key_node.start_mark.line + 1

        def _seq(self, node):
            data = LinedList()
            data.lines = [item.start_mark.line + 1 for item in node.value]
            yield data
            data.extend(self.construct_object(item) for item in node.value)

    _Constructor.add_constructor(None, _Constructor._unsure)
    _Constructor.add_constructor(_STR, lambda self, node: node.value)
    _Constructor.add_constructor(_INT, lambda self, node: int(node.value))
    _Constructor.add_constructor(_FLOAT, lambda self, node: float(node.value))
    _Constructor.add_constructor(_TRUE_TAG, lambda self, node: True)
    _Constructor.add_constructor(_FALSE_TAG, lambda self, node: False)
    _Constructor.add_constructor(_NULL_TAG, lambda self, node: None)
    _Constructor.add_constructor(_MAP, _Constructor._map)
    _Constructor.add_constructor(_SEQ, _Constructor._seq)

    class _FastLoader(_CParser, _Constructor, _Resolver):
        def __init__(self, stream):
            _CParser.__init__(self, stream)
            _Constructor.__init__(self)
            _Resolver.__init__(self)


_DIRECTIVE = re.compile(r"^%", re.M)


def fast(text: str):
    """The text's data as plain dicts and lists; ``Unsure`` when in any doubt.

    A syntax error is ``Unsure`` too: only ``with_lines`` words syntax errors.
    """
    if _CParser is None:
        raise Unsure("libyaml is not available")
    if _DIRECTIVE.search(text):      # e.g. %YAML 1.1 would change how scalars read
        raise Unsure("a directive")
    loader = _FastLoader(text)
    try:
        return loader.get_single_data()
    except Unsure:
        raise
    except Exception as exc:         # any libyaml complaint: let ruamel word it
        raise Unsure(str(exc)) from None
    finally:
        loader.dispose()


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
