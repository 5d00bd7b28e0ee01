"""A parsed inventory, remembered: an unchanged inventory is not parsed again.

Parsing and checking 10,000 agents costs about half a second of CPU on every
command. ``load_inventory`` keeps the result in a private cache file and uses
it while nothing it was made from has changed. The key hashes:

- the inventory file's bytes and its absolute path (paths in the result are
  absolute),
- every ``roles/*/defaults.yaml`` the loader could read (beside the
  inventory, then the hatchery repo's), names and bytes: a role file added,
  edited or removed changes the key even if no agent names that role,
- this hatchery: the source of the modules that build an Inventory and of
  the file holding its version (``CODE``), and the Python version, so a cache
  written by other code is never read.

Where: ``$HATCHERY_CACHE_DIR``, else ``$XDG_CACHE_HOME/hatchery``, else
``~/.cache/hatchery``, then ``inventory/``: a 0700 directory of 0600 files,
one per inventory path, written atomically (temporary file + rename). A file
or directory that is not ours or not private is never read (a pickle planted
by someone else would be code run as us), and then not written either. With
no such directory (no HOME in the environment given) nothing is cached.
Every failure of the cache means a plain parse: it can make a load faster,
never make one fail.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import secrets
import stat
import sys
from pathlib import Path
from typing import Mapping, Optional

CACHE_ENV = "HATCHERY_CACHE_DIR"
FORMAT = b"hatchery-inventory-cache-1"
KEY_SIZE = 64                      # hex sha256, at the head of every cache file
_PACKAGE = Path(__file__).resolve().parents[1]
# The modules whose code decides what an Inventory looks like.
# agent_kit/__init__.py holds the version both halves share: a release changes the key.
CODE = (*sorted((_PACKAGE / "inventory").rglob("*.py")), _PACKAGE / "errors.py",
        _PACKAGE / "core" / "assets.py",
        *(_PACKAGE.parent / "agent_kit" / f"{name}.py" for name in ("contract", "codec", "topics")),
        _PACKAGE.parent / "agent_kit" / "__init__.py")


def cache_dir(env: Mapping[str, str]) -> Optional[Path]:
    """The cache directory for this environment; None: do not cache."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]) / "inventory"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "hatchery" / "inventory"
    if env.get("HOME"):
        return Path(env["HOME"]) / ".cache" / "hatchery" / "inventory"
    return None


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> bytes:
    """What identifies this hatchery's loader: Python, and the loader's source (with the
    version it carries)."""
    digest = hashlib.sha256(FORMAT + b"\0" + sys.version.encode())
    for module in CODE:
        digest.update(str(module.relative_to(_PACKAGE.parent)).encode() + b"\0"
                      + module.read_bytes())
    return digest.digest()


def cache_key(path: Path, text: bytes, role_dirs: list) -> Optional[str]:
    """The key of an inventory at ``path`` holding ``text``; None if a role file is unreadable."""
    digest = hashlib.sha256(code_fingerprint())
    digest.update(str(path.absolute()).encode() + b"\0")
    digest.update(hashlib.sha256(text).digest())
    try:
        for folder in role_dirs:
            digest.update(b"\0dir\0" + str(folder).encode())
            for role in sorted(folder.glob("*/defaults.yaml")):
                digest.update(role.parent.name.encode() + b"\0" + role.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


class InventoryCache:
    """One private directory of cached inventories."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def for_env(cls, env: Mapping[str, str]) -> Optional["InventoryCache"]:
        folder = cache_dir(env)
        return cls(folder) if folder is not None else None

    def file_for(self, path: Path) -> Path:
        return self.folder / (hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:32]
                              + ".pickle")

    def get(self, path: Path, key: str):
        """The Inventory cached under ``key`` for ``path``, or None."""
        if not _private_dir(self.folder):
            return None
        try:
            fd = os.open(self.file_for(path), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            if not _ours_and_private(os.fstat(fd)):
                return None
            if file.read(KEY_SIZE) != key.encode():
                return None
            try:
                return pickle.loads(file.read())
            except Exception:     # a damaged file is a miss, whatever unpickling raised
                return None

    def put(self, path: Path, key: str, inventory) -> None:
        """Remember ``inventory`` for ``path`` under ``key`` (best effort, atomic)."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return
        if not _private_dir(self.folder):
            return
        target = self.file_for(path)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(key.encode())
                pickle.dump(inventory, file, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, target)
        except (OSError, pickle.PicklingError):
            temporary.unlink(missing_ok=True)


def _private_dir(folder: Path) -> bool:
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and _ours_and_private(info)


def _ours_and_private(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077
