"""Retirement in the inventory: ``agent.retire`` comments the agent's entry out.

Commented out, not deleted: the entry (and its own comments) stays in the
file as the record of what the agent was, under a line that says when it was
retired and how to bring it back; every other line is left byte for byte.
A group that lists the agent loses it from its list (else the inventory would
name an agent it no longer has). The result is loaded and validated before
anything is written, so ``--check`` shows the diff and a file we cannot edit
safely is refused with the fix.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

from hatchery.core.plan import Action, Change, text_diff
from hatchery.errors import HatcheryError, UsageError
from hatchery.inventory.edit import write_atomically
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import Inventory
from hatchery.inventory.parse import round_trip_yaml as _yaml
from hatchery.inventory.parse import with_lines as _parse

MARK = "# retired by agent.retire on {day}; uncomment and run agent.hatch --name {name} to bring it back"


def retire_change(inv: Inventory, name: str, *, today: datetime.date | None = None) -> Change:
    """The Change that comments ``agents.<name>`` out of the inventory file."""
    before = inv.path.read_text(encoding="utf-8")
    after = without_agent(before, name, str(inv.path), today or datetime.date.today())
    _check_loads(inv, after, name)
    item = f"inventory agents.{name}"

    def apply() -> str:
        write_atomically(inv.path, after)
        return f"agents.{name} commented out in {inv.path.name}"
    return Change(item, Action.UPDATE, "retired: entry commented out, kept as a record",
                  text_diff(before, after, inv.path.name), apply)


def without_agent(text: str, name: str, shown: str, day: datetime.date) -> str:
    """``text`` with the agent's block commented out and the agent dropped from groups."""
    data = _parse(text, shown)
    agents = data.get("agents") if hasattr(data, "get") else None
    if not hasattr(agents, "lc") or name not in agents or agents.fa.flow_style():
        raise UsageError(f"cannot comment agents.{name} out of {shown}: it is not a block entry",
                         f"delete agents.{name} from the inventory by hand")
    lines = text.splitlines(keepends=True)
    first = agents.lc.key(name)[0]
    last = _block_end(lines, first)
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    marked = [indent + MARK.format(day=day.isoformat(), name=name) + "\n"]
    marked += [_commented(line, indent) for line in lines[first:last]]
    text = "".join(lines[:first] + marked + lines[last:])
    if not _agents_left(text, shown):
        text = text.replace(lines[_key_line(lines, agents)], _empty_agents(lines[_key_line(lines, agents)]), 1)
    return _drop_from_groups(text, name, shown)


def _block_end(lines: list, first: int) -> int:
    """The line after the entry: the next non-blank line indented no deeper than its key."""
    depth = len(lines[first]) - len(lines[first].lstrip())
    end = first + 1
    for at in range(first + 1, len(lines)):
        stripped = lines[at].strip()
        if not stripped:
            continue
        if len(lines[at]) - len(lines[at].lstrip()) <= depth:
            break
        end = at + 1
    return end


def _commented(line: str, indent: str) -> str:
    if not line.strip():
        return line
    return indent + "# " + line[len(indent):] if line.startswith(indent) else "# " + line


def _agents_left(text: str, shown: str) -> bool:
    data = _parse(text, shown)
    return bool(data.get("agents"))


def _key_line(lines: list, agents) -> int:
    """The line of ``agents:`` itself: the last 'agents:' line above the first entry."""
    first_entry = min(agents.lc.key(k)[0] for k in agents)
    return max(i for i in range(first_entry) if lines[i].lstrip().startswith("agents:")
               and not lines[i].startswith(" "))


def _empty_agents(line: str) -> str:
    return line.rstrip("\n").rstrip() + " {}\n"


def _drop_from_groups(text: str, name: str, shown: str) -> str:
    data = _parse(text, shown)
    groups = data.get("groups") or {}
    touched = False
    for body in groups.values() if hasattr(groups, "values") else ():
        members = body.get("agents") if hasattr(body, "get") else None
        if isinstance(members, list) and name in members:
            members.remove(name)
            touched = True
    if not touched:
        return text
    import io
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def _check_loads(inv: Inventory, text: str, name: str) -> None:
    """Load the edited text beside the original (so roles/ resolve); refuse it if it fails."""
    fd, tmp = tempfile.mkstemp(dir=inv.path.parent, prefix=".hatchery-retire-", suffix=".yaml")
    os.close(fd)
    copy = Path(tmp)
    try:
        shutil.copymode(inv.path, copy)
        copy.write_text(text, encoding="utf-8")
        load_inventory(copy, env={})
    except HatcheryError as exc:
        raise UsageError(f"commenting agents.{name} out would leave an invalid inventory: {exc.message}",
                         f"delete agents.{name} (and mentions of it) from {inv.path.name} by hand") from None
    finally:
        copy.unlink(missing_ok=True)
