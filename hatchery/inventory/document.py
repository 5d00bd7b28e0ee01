"""One inventory file being read: where each problem is, and the walk over its mappings.

The loader (``load.py``) and the placement of hosts (``hosts.py``) report every
problem through a ``Doc``, so each names the file, the line and the key path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent_kit.contract import name_problem
from hatchery.errors import Problem
from hatchery.inventory import parse
from hatchery.inventory.fields import Bad, kind, rename_fix, suggest

# --- where we are, and what went wrong --------------------------------------

@dataclass
class Doc:
    """One YAML file being read, and the problems found in it so far."""

    shown: str                      # the path as the user wrote it
    problems: list
    fast: bool = False              # parsed by parse.fast: no problem is worded from it

    def add(self, node, key, keypath: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.shown, parse.line(node, key), printable(keypath),
                                     message, fix))

    def valid_name(self, node, name, keypath: str) -> bool:
        """True when the key ``name`` is a fleet name (a DNS label); else a problem
        with the rename fix, and False."""
        problem = name_problem(name)
        if problem:
            self.add(node, name, keypath, problem, rename_fix(name))
        return not problem


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def printable(keypath: str) -> str:
    """A key path with control characters escaped: a key may hold a newline or an
    ANSI escape, and the path is printed on the operator's terminal."""
    return _CONTROL_CHARACTER.sub(lambda m: repr(m.group())[1:-1], keypath)


# --- walking a mapping ----------------------------------------------------------

def section(doc: Doc, parent, key: str, keypath: str) -> dict:
    """``parent[key]`` as a mapping (empty if absent or null); a problem otherwise."""
    value = parent.get(key) if isinstance(parent, dict) else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        doc.add(parent, key, keypath, f"expected a mapping, got {kind(value)}",
                "write key: value pairs under it, indented")
        return {}
    return value


def checked_fields(doc: Doc, node: dict, schema: dict, keypath: str) -> dict:
    """Check each key of ``node`` against ``schema``; the valid ones, converted."""
    found = {}
    for key, value in node.items():
        where = f"{keypath}.{key}"
        if key not in schema:
            doc.add(node, key, where, f"unknown key; {suggest(key, schema)}".rstrip("; "),
                    f"use one of: {', '.join(schema)}")
            continue
        try:
            found[key] = schema[key](value)
        except Bad as bad:
            report(doc, node, key, where, bad)
    return found


def report(doc: Doc, node, key, where: str, bad: Bad) -> None:
    value = node[key]
    if bad.subkey is not None and isinstance(value, dict) and bad.subkey in value:
        doc.add(value, bad.subkey, f"{where}.{bad.subkey}", bad.message, bad.fix)
    else:
        doc.add(node, key, where, bad.message, bad.fix)


def unknown_keys(doc: Doc, node, known: tuple, keypath: str) -> None:
    for key in node:
        if key not in known:
            path = f"{keypath}.{key}" if keypath else str(key)
            doc.add(node, key, path, f"unknown key; {suggest(key, known)}".rstrip("; "),
                    f"use one of: {', '.join(known)}")
