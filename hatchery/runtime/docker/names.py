"""The names a fleet's containers, network and volume carry on its engines.

The inventory derives them from the fleet's identity unless it gives them
(``inventory.model.derived_names``: ``hatchery-<manager>-<hash of the state
dir>-`` as the prefix, then ``<prefix>broker``, ``<prefix>net``,
``<prefix>agent-<name>``), so two fleets share an engine. Two things may
replace a *derived* name here, never one the inventory gives:

- the names recorded at the fleet's first deploy (``docker-names.json`` in the
  state directory): renaming the manager or moving the state directory later
  renames nothing that runs;
- a fleet deployed before names were per fleet: its containers still carry the
  old defaults (``hatchery-broker``, network ``hatchery``,
  ``hatchery-agent-<name>``). They are told apart from another fleet's by what
  they mount (files of this fleet's state directory); the fleet keeps those
  names, and its old broker image, until the operator recreates it under the
  new ones (docs/operations.md, "Names on a shared engine").

``resolved(inv)`` is what every method of the Docker runtime is handed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Optional

from hatchery.core.paths import state_paths
from hatchery.core.state import read_text, write_if_changed
from hatchery.errors import DockerError, RuntimeFailure
from hatchery.inventory.model import OLD_DEFAULTS, Inventory
from hatchery.runtime.docker.engine import FLEET, docker_errors, engine
from hatchery.runtime.docker.remote import fleet_files
from hatchery.runtime.docker.states import agent_hosts

NAME_KEYS = ("container_prefix", "container", "network")
OLD_STYLE = "old_style"     # the record's flag: names kept from before they were per fleet

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")     # as Docker takes a name
_IMAGE_RE = re.compile(r"[a-z0-9][a-z0-9_./:-]{0,254}")
_detected: dict = {}        # (state dir, old fleet label) -> bool, once per process
_records: dict = {}         # record path -> (mtime, parsed)


def resolved(inv: Inventory) -> Inventory:
    """``inv`` with the names (and broker image) its fleet uses on its engines."""
    defaulted = [k for k in NAME_KEYS if k in inv.broker.defaulted]
    if not defaulted:
        return inv
    chosen = _record(inv)
    if chosen is None:
        chosen = _old_names(inv) if _runs_old_style(inv) else {}
    keep = {k: v for k, v in chosen.items() if k in inv.broker.defaulted}
    return replace(inv, broker=replace(inv.broker, **keep)) if keep else inv


def old_style(inv: Inventory) -> bool:
    """The fleet keeps the names it had before names were per fleet."""
    record = _record(inv)
    if record is not None:
        return bool(record.get(OLD_STYLE))
    return any(k in inv.broker.defaulted for k in NAME_KEYS) and _runs_old_style(inv)


def describe(inv: Inventory) -> str:
    """A line for broker.status and deploy: which names the fleet uses, and why."""
    names = resolved(inv).broker
    shown = f"{names.container_prefix}* (broker {names.container}, network {names.network})"
    if old_style(inv):
        return (f"{shown}: kept from before names were per fleet; to move to per-fleet names see "
                "docs/operations.md, 'Names on a shared engine'")
    if not any(k in inv.broker.defaulted for k in NAME_KEYS):
        return f"{shown}: from the inventory"
    return f"{shown}: per fleet ({'recorded at its first deploy' if _record(inv) else 'derived'})"


def record(inv: Inventory) -> None:
    """Keep the names the fleet now takes (called when its first container is made)."""
    if not any(k in inv.broker.defaulted for k in NAME_KEYS) or _record(inv) is not None:
        return
    names = resolved(inv).broker
    kept = {k: getattr(names, k) for k in NAME_KEYS}
    if old_style(inv):
        kept.update({OLD_STYLE: True, **({"image": OLD_DEFAULTS["image"]} if "image" in inv.broker.defaulted else {})})
    write_if_changed(Path(state_paths(inv).docker_names), json.dumps(kept, sort_keys=True) + "\n", 0o644)


def _record(inv: Inventory) -> Optional[dict]:
    path = Path(state_paths(inv).docker_names)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _records.get(path)
    if cached is None or cached[0] != mtime:
        try:
            data = json.loads(read_text(path))
        except ValueError:
            data = None     # a damaged record: derive again (and say nothing was kept)
        _records[path] = (mtime, _valid(data))
    return _records[path][1]


def _valid(data) -> Optional[dict]:
    """The record's names, or None when it is not one we wrote (a hand edit, a damaged file)."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and _NAME_RE.fullmatch(data[k])
                                             for k in NAME_KEYS):
        return None
    kept = {k: data[k] for k in NAME_KEYS}
    if data.get(OLD_STYLE) is True:
        kept[OLD_STYLE] = True
        if isinstance(data.get("image"), str) and _IMAGE_RE.fullmatch(data["image"]):
            kept["image"] = data["image"]
    return kept


def _old_names(inv: Inventory) -> dict:
    b = inv.broker
    names = {k: OLD_DEFAULTS[k] if k in b.defaulted else getattr(b, k) for k in NAME_KEYS}
    if "image" in b.defaulted:
        names["image"] = OLD_DEFAULTS["image"]
    return names


def _runs_old_style(inv: Inventory) -> bool:
    """Containers under the old names that mount files of this fleet run on one of its engines."""
    old = _old_names(inv)     # (``inv`` may be resolved already: compare with nothing it holds)
    key = (str(inv.state_dir), old["container"])
    if key not in _detected:
        _detected[key] = _mounts_ours(inv, replace(inv, broker=replace(inv.broker, **old)))
    return _detected[key]


def _mounts_ours(inv: Inventory, old: Inventory) -> bool:
    for host in {inv.broker.docker_host} | agent_hosts(inv):
        try:
            root = fleet_files(old, host).path("")
            with docker_errors("list the fleet's containers from before per-fleet names"):
                found = engine(host).containers.list(all=True, sparse=True,
                                                     filters={"label": f"{FLEET}={old.broker.container}"})
        except (DockerError, RuntimeFailure):
            continue        # an engine out of reach says nothing either way; the others may
        if any(_under(m.get("Source") or "", root) for c in found for m in c.attrs.get("Mounts") or ()):
            return True
    return False


def _under(path: str, root: str) -> bool:
    root = root.rstrip(os.sep)
    return path == root or path.startswith(root + os.sep)


def forget() -> None:
    """Drop what this process remembers (tests that make and remove old-style fleets)."""
    _detected.clear()
    _records.clear()
