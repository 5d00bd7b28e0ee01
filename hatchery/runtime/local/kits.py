"""Provenance: which agent_kit and config each handler was started from, and the one before."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from hatchery.core.assets import PROJECT_ROOT
from hatchery.core.paths import StatePaths
from hatchery.core.render import content_hash
from hatchery.core.state import ensure_dir, read_text

# --- provenance: what each handler came from ------------------------------------------

KIT_PACKAGE = "agent_kit"


_kit_hashes: dict = {}      # (file names, sizes, mtimes) -> hash: a plan of 100 agents reads the code once


def kit_hash(source: Path | None = None) -> str:
    """The code hash of an agent_kit tree (its .py files, by name and content)."""
    files = sorted(Path(source or PROJECT_ROOT / KIT_PACKAGE).glob("*.py"))
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _kit_hashes:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _kit_hashes[key] = digest.hexdigest()[:12]
    return _kit_hashes[key]


def ensure_kit(paths: StatePaths, source: Path | None = None) -> str:
    """Copy this checkout's agent_kit to kits/<hash>/ once; its hash.

    Copied to a temporary name and renamed, so a half-written copy is never used.
    """
    source = Path(source or PROJECT_ROOT / KIT_PACKAGE)
    digest = kit_hash(source)
    target = Path(paths.kit_dir(digest))
    if not (target / KIT_PACKAGE / "__init__.py").exists():
        staging = Path(paths.kits_dir) / f".{digest}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        ensure_dir(staging / KIT_PACKAGE)
        for path in source.glob("*.py"):
            shutil.copy2(path, staging / KIT_PACKAGE / path.name)
        try:
            os.rename(staging, target)
        except OSError:             # another run made it first
            shutil.rmtree(staging, ignore_errors=True)
    return digest


def read_provenance(paths: StatePaths, name: str) -> dict | None:
    return read_json(paths.agent_provenance(name))


def keep_previous(paths: StatePaths, name: str, kit: str, config_text: str) -> None:
    record = read_provenance(paths, name)
    old_text = read_text(paths.agent_config(name))
    if record is None or old_text is None:
        return
    if (record.get("kit"), record.get("config")) != (kit, content_hash(config_text)):
        write_json(paths.agent_previous(name), {"kit": record.get("kit"), "config": record.get("config"),
                                                 "config_text": old_text})


def read_json(path) -> dict | None:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path, value: dict) -> None:
    # atomic: a reader (or a crash) never sees half a record
    path = Path(path)
    ensure_dir(path.parent)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(value, sort_keys=True) + "\n")
    os.replace(staging, path)


