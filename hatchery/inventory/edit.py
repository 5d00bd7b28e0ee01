"""Editing the inventory file: add an agent, keeping every comment and byte around it.

``add_agent`` is what ``agent.hatch --name NEW`` applies (``enrol.py`` plans
it). The new entry is inserted as text after the last agent, so the rest of
the file stays byte for byte as it was; ruamel's round trip rewrites the file
only when ``agents:`` is empty or written in flow style. Every edit is parsed
back and checked before the file is replaced in one step.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from agent_kit.contract import name_problem
from hatchery.core.plan import text_diff
from hatchery.errors import UsageError
from hatchery.inventory import parse
from hatchery.inventory.fields import plain, rename_fix

if TYPE_CHECKING:    # imported where an edit is made: ruamel costs every command ~15 ms
    from ruamel.yaml.comments import CommentedMap


def add_agent(path, name: str, fields: dict) -> str:
    """Add ``agents.<name>`` to the inventory file, keeping its comments and order.

    Returns the unified diff of the change. The new entry goes after the last
    agent; the rest of the file is left byte for byte as it was.
    """
    path = Path(path)
    problem = name_problem(name)
    if problem:
        raise UsageError(f"cannot add agent: {problem}", rename_fix(name))
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    data = parse.with_lines(before, str(path)) if before.strip() else None
    after = _with_agent(before, data, name, fields)
    _check_added(after, name, fields, str(path))
    write_atomically(path, after)
    return text_diff(before, after, path.name)


def _with_agent(text: str, data, name: str, fields: dict) -> str:
    from ruamel.yaml.comments import CommentedMap
    if data is not None and not isinstance(data, CommentedMap):
        raise UsageError(f"cannot add agent {name!r}: the inventory is not a mapping",
                         "fix the inventory first: any task lists its problems")
    agents = data.get("agents") if data is not None else None
    if data is not None and name in (agents or {}):
        raise UsageError(f"agent {name!r} is already in the inventory", "pick another name")
    if data is None or "agents" not in data:
        return _append_section(text, name, fields)
    if isinstance(agents, CommentedMap) and agents and agents.fa.flow_style() is False:
        return _insert_block(text, data, name, fields)
    return _round_trip(data, name, fields)


def _fragment(name: str, fields: dict, indent: int, step: int = 2) -> str:
    """``name: fields`` as block YAML, each line indented by ``indent`` spaces."""
    if not fields:
        return " " * indent + f"{name}: {{}}\n"
    yaml = parse.round_trip_yaml()
    yaml.indent(mapping=step, sequence=step + 2, offset=step)
    out = io.StringIO()
    yaml.dump({name: dict(fields)}, out)
    text = out.getvalue()
    return "".join(" " * indent + line if line.strip() else line
                   for line in text.splitlines(keepends=True))


def _append_section(text: str, name: str, fields: dict) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "agents:\n" + _fragment(name, fields, 2)


def _insert_block(text: str, data: CommentedMap, name: str, fields: dict) -> str:
    """Insert after the last agent's lines, before any comment that leads the next key."""
    lines = text.splitlines(keepends=True)
    agents = data["agents"]
    indent = agents.lc.key(next(iter(agents)))[1]
    end = _section_end(data, "agents", len(lines))
    while end > 0 and _is_filler(lines[end - 1]) and _leads_next(lines, end):
        end -= 1
    if end and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines.insert(end, _fragment(name, fields, indent, _step(agents, indent)))
    return "".join(lines)


def _step(agents: CommentedMap, indent: int) -> int:
    """How far the file indents an agent's keys under its name (2 if no example)."""
    from ruamel.yaml.comments import CommentedMap
    for value in agents.values():
        if isinstance(value, CommentedMap) and value and value.fa.flow_style() is False:
            return max(1, value.lc.key(next(iter(value)))[1] - indent)
    return 2


def _section_end(data: CommentedMap, key: str, total: int) -> int:
    """0-based line where the top-level key after ``key`` starts (or the file's end)."""
    keys = list(data)
    later = keys[keys.index(key) + 1:]
    return data.lc.key(later[0])[0] if later else total


def _is_filler(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _leads_next(lines: list, end: int) -> bool:
    # A blank or comment line belongs to what follows it, unless only filler follows.
    return any(not _is_filler(line) for line in lines[end:])


def _round_trip(data: CommentedMap, name: str, fields: dict) -> str:
    """Fallback for an empty or flow-style ``agents:``: let ruamel rewrite the file."""
    from ruamel.yaml.comments import CommentedMap
    if not isinstance(data.get("agents"), CommentedMap):
        data["agents"] = CommentedMap()
    data["agents"][name] = CommentedMap(fields)
    out = io.StringIO()
    parse.round_trip_yaml().dump(data, out)
    return out.getvalue()


def _check_added(text: str, name: str, fields: dict, shown: str) -> None:
    agents = (parse.with_lines(text, shown) or {}).get("agents") or {}
    if plain(agents.get(name) or {}) != plain(fields):
        raise UsageError(f"could not add agent {name!r} to {shown} safely",
                         f"add it by hand under 'agents:' with {fields}")


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step so a crash never leaves half an inventory."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    if path.exists():
        os.chmod(temp, path.stat().st_mode & 0o7777)
    os.replace(temp, path)
