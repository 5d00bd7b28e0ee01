"""Round 3: the inventory parse cache (hatchery/inventory/cache.py) against a hostile local user.

The cache holds pickles: loading one planted by someone else would run their
code as us. Each test plants a pickle that writes a marker file when loaded,
where the attacker could put it, and fails if the marker appears or the
inventory loaded is not the one on disk. Running as root, "another user" is
uid 65534 (nobody) by chown; otherwise those cases are skipped.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from hatchery.inventory import cache as cache_module
from hatchery.inventory.load import load_inventory

INVENTORY = """\
fleet:
  manager: zephyr
broker:
  port: 1883
agents:
  client-a: {}
"""
NOBODY = 65534


class Planted:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "fleet" / "fleet_inventory.yaml"
    path.parent.mkdir()
    path.write_text(INVENTORY)
    env = {"HATCHERY_CACHE_DIR": str(tmp_path / "cache")}
    load_inventory(path, env=env)               # a real entry: its name and key
    folder = tmp_path / "cache" / "inventory"
    [entry] = list(folder.iterdir())
    key = entry.read_bytes()[:cache_module.KEY_SIZE]
    return path, env, folder, entry, key, tmp_path / "marker"


def _plant(target: Path, key: bytes, marker: Path) -> None:
    target.write_bytes(key + pickle.dumps(Planted(marker)))


def _loads_clean(path: Path, env: dict, marker: Path) -> None:
    inv = load_inventory(path, env=env)
    assert not marker.exists(), "a planted pickle was loaded: its code ran as us"
    assert list(inv.agents) == ["client-a"]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@needs_root
def test_a_private_file_owned_by_another_user_is_not_loaded(setup):
    path, env, _, entry, key, marker = setup
    _plant(entry, key, marker)
    os.chown(entry, NOBODY, NOBODY)
    _loads_clean(path, env, marker)


@needs_root
def test_a_private_folder_owned_by_another_user_is_not_read(setup):
    path, env, folder, entry, key, marker = setup
    _plant(entry, key, marker)
    planted = entry.read_bytes()
    os.chown(folder, NOBODY, NOBODY)
    _loads_clean(path, env, marker)
    assert entry.read_bytes() == planted and len(list(folder.iterdir())) == 1, \
        "nothing is written into another user's folder either"


def test_a_folder_that_is_a_link_to_the_attackers_is_not_read(setup, tmp_path):
    path, env, folder, entry, key, marker = setup
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    _plant(theirs / entry.name, key, marker)
    (theirs / entry.name).chmod(0o600)
    folder.rename(tmp_path / "moved")
    folder.symlink_to(theirs)
    _loads_clean(path, env, marker)


def test_an_entry_that_is_a_link_is_not_followed(setup, tmp_path):
    path, env, _, entry, key, marker = setup
    elsewhere = tmp_path / "elsewhere.pickle"
    _plant(elsewhere, key, marker)
    elsewhere.chmod(0o600)
    entry.unlink()
    entry.symlink_to(elsewhere)
    _loads_clean(path, env, marker)


def test_an_entry_written_by_other_code_is_not_read(setup, monkeypatch):
    """A cache left by another hatchery (another release, an edited loader): another key."""
    path, env, _, entry, key, marker = setup
    _plant(entry, key, marker)
    monkeypatch.setattr(cache_module, "code_fingerprint", lambda: b"another hatchery")
    _loads_clean(path, env, marker)
