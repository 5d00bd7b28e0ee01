"""Enrolment: an agent named on the command line but not in the inventory yet.

``agent.hatch --name X`` adds ``agents.X`` to the inventory file (keeping its
comments and order) as a planned change, so ``--check`` shows the diff and
writes nothing.
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


def enrol_plan(inv: Inventory, name: str | None) -> tuple:
    """(inventory including ``name``, [Change]) — the change adds it to the file."""
    if not name or name in inv.agents:
        return inv, []
    fields = {"runtime": inv.broker.runtime}
    preview, diff = _with_agent(inv, name, fields)

    def apply() -> str:
        _editor().add_agent(inv.path, name, fields)
        return f"added agents.{name} to {inv.path.name}"

    change = Change(f"inventory agents.{name}", Action.UPDATE, "not in the inventory yet", diff, apply)
    return preview, [change]


def _with_agent(inv: Inventory, name: str, fields: dict) -> tuple:
    """Load a copy of the inventory with the agent added (validating it); the diff.

    The copy sits beside the original so that the fleet's own roles/ are found.
    """
    fd, tmp = tempfile.mkstemp(dir=inv.path.parent, prefix=".hatchery-enrol-", suffix=".yaml")
    os.close(fd)
    copy = Path(tmp)
    try:
        shutil.copy2(inv.path, copy)
        diff = _editor().add_agent(copy, name, fields)
        loaded = load_inventory(copy, env={})
    except InventoryError as exc:
        raise _refused(exc, copy, inv.path) from None
    finally:
        copy.unlink(missing_ok=True)
    diff = diff.replace(copy.name, inv.path.name)
    return dataclasses.replace(loaded, path=inv.path, state_dir=inv.state_dir), diff


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
