"""Enrolment: an agent named on the command line but not in the inventory yet.

``agent.hatch --name X,Y`` adds ``agents.X`` and ``agents.Y`` to the inventory
file (keeping its comments and order) as planned changes, one per agent, so
``--check`` shows the diff and writes nothing. The new entries are validated
together, before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from hatchery.core.plan import Action, Change
from hatchery.errors import InventoryError, Problem
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import Inventory
from hatchery.inventory.select import entries


def enrol_plan(inv: Inventory, names) -> tuple:
    """(inventory including ``names``, [Change per new name]) — each change adds one agent
    to the file. ``names``: one name, a list, or None; names already there are left alone."""
    new = [n for n in dict.fromkeys(entries(names)) if n not in inv.agents]
    if not new:
        return inv, []
    fields = {"runtime": inv.broker.runtime}
    preview, diffs = _with_agents(inv, new, fields)
    return preview, [_enrol_change(inv, name, fields, diff) for name, diff in zip(new, diffs)]


def _enrol_change(inv: Inventory, name: str, fields: dict, diff: str) -> Change:
    def apply() -> str:
        _editor().add_agent(inv.path, name, fields)
        return f"added agents.{name} to {inv.path.name}"
    return Change(f"inventory agents.{name}", Action.UPDATE, "not in the inventory yet", diff, apply)


def _with_agents(inv: Inventory, names: list, fields: dict) -> tuple:
    """Load a copy of the inventory with the agents added (validating them all at once);
    each addition's diff, one after the other.

    The copy sits beside the original so that the fleet's own roles/ are found.
    """
    fd, tmp = tempfile.mkstemp(dir=inv.path.parent, prefix=".hatchery-enrol-", suffix=".yaml")
    os.close(fd)
    copy = Path(tmp)
    try:
        shutil.copy2(inv.path, copy)
        diffs = [_editor().add_agent(copy, name, fields) for name in names]
        loaded = load_inventory(copy, env={})
    except InventoryError as exc:
        raise _refused(exc, copy, inv.path) from None
    finally:
        copy.unlink(missing_ok=True)
    diffs = [diff.replace(copy.name, inv.path.name) for diff in diffs]
    return dataclasses.replace(loaded, path=inv.path, state_dir=inv.state_dir), diffs


def _refused(exc: InventoryError, copy: Path, original: Path) -> InventoryError:
    """The copy's problems, told about the real file (the copy is gone by then).

    Their lines are those of the file as it would have been, so they are left out.
    """
    problems = [Problem(str(original), None, p.keypath, p.message, p.fix) if p.path == str(copy)
                else p for p in exc.problems]
    return InventoryError(f"{original} (with the new agent)", problems)


def _editor():
    """``hatchery.inventory.edit``, imported only when an agent is enrolled: it
    brings in ruamel's round-trip YAML, which no other command needs to start."""
    from hatchery.inventory import edit
    return edit
