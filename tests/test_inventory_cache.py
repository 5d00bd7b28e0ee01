"""The parsed-inventory cache: used while nothing changed, never across a change, private.

Fixture inventories in tmp_path, the cache in a tmp directory (HATCHERY_CACHE_DIR);
no broker, no engine.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from hatchery.errors import InventoryError
from hatchery.inventory import cache as cache_module
from hatchery.inventory import load as load_module
from hatchery.inventory.load import load_inventory

INVENTORY = """\
fleet:
  manager: zephyr
broker:
  port: 1883
groups:
  warm:
    agents: [client-a]
    vars: {heartbeat_interval: 30}
agents:
  client-a: {}
  client-b:
    role: worker
"""


@pytest.fixture
def setup(tmp_path):
    folder = tmp_path / "fleet"
    (folder / "roles" / "worker").mkdir(parents=True)
    (folder / "roles" / "worker" / "defaults.yaml").write_text("heartbeat_interval: 45\n")
    path = folder / "fleet_inventory.yaml"
    path.write_text(INVENTORY)
    env = {"HATCHERY_CACHE_DIR": str(tmp_path / "cache")}
    return path, env, tmp_path / "cache" / "inventory"


def forbid_parsing(monkeypatch):
    """From here on a load that parses fails the test: only the cache can answer."""
    monkeypatch.setattr(load_module, "_load_checked",
                        lambda *args: pytest.fail("the inventory was parsed again"))


def test_an_unchanged_inventory_comes_from_the_cache(setup, monkeypatch):
    path, env, _ = setup
    first = load_inventory(path, env=env)
    forbid_parsing(monkeypatch)
    again = load_inventory(path, env=env)
    assert again == first and again is not first
    assert again.agents["client-b"].heartbeat_interval == 45
    assert again.agents["client-a"].groups == ("warm",)


def test_touching_the_file_without_changing_it_keeps_the_cache(setup, monkeypatch):
    path, env, _ = setup
    first = load_inventory(path, env=env)
    os.utime(path, (1, 1))
    forbid_parsing(monkeypatch)
    assert load_inventory(path, env=env) == first


def test_any_change_to_the_inventory_is_read(setup):
    path, env, _ = setup
    assert load_inventory(path, env=env).agents["client-a"].heartbeat_interval == 30
    path.write_text(INVENTORY.replace("heartbeat_interval: 30", "heartbeat_interval: 31"))
    assert load_inventory(path, env=env).agents["client-a"].heartbeat_interval == 31


@pytest.mark.parametrize("change", ["edit", "add", "remove"])
def test_a_change_to_any_role_file_is_read(setup, change):
    path, env, _ = setup
    load_inventory(path, env=env)
    roles = path.parent / "roles"
    if change == "edit":
        (roles / "worker" / "defaults.yaml").write_text("heartbeat_interval: 46\n")
        assert load_inventory(path, env=env).agents["client-b"].heartbeat_interval == 46
    elif change == "add":     # a role nobody names yet: the key changes all the same
        (roles / "agent").mkdir()
        (roles / "agent" / "defaults.yaml").write_text("heartbeat_interval: 47\n")
        assert load_inventory(path, env=env).agents["client-a"].heartbeat_interval == 30
        assert load_inventory(path, env=env).agents["client-a"].role == "agent"
    else:
        (roles / "worker" / "defaults.yaml").unlink()
        with pytest.raises(InventoryError, match="role 'worker' not found"):
            load_inventory(path, env=env)


def test_another_hatchery_never_reads_this_cache(setup, monkeypatch):
    path, env, _ = setup
    load_inventory(path, env=env)
    monkeypatch.setattr(cache_module, "code_fingerprint", lambda: b"other code")
    monkeypatch.setattr(load_module, "_load_checked", lambda *a: "parsed")
    assert load_inventory(path, env=env) == "parsed"


def test_the_same_text_elsewhere_is_its_own_entry(setup, tmp_path):
    path, env, folder = setup
    copy = tmp_path / "elsewhere" / "fleet_inventory.yaml"
    copy.parent.mkdir()
    (copy.parent / "roles").symlink_to(path.parent / "roles")
    copy.write_text(INVENTORY)
    here, there = load_inventory(path, env=env), load_inventory(copy, env=env)
    assert here.state_dir != there.state_dir
    assert load_inventory(copy, env=env).state_dir == there.state_dir
    assert len(list(folder.iterdir())) == 2


def test_a_bad_inventory_is_never_cached(setup):
    path, env, folder = setup
    path.write_text(INVENTORY.replace("port: 1883", "port: many"))
    for _ in range(2):
        with pytest.raises(InventoryError, match="fleet_inventory.yaml:4"):
            load_inventory(path, env=env)
    assert not folder.exists() or not list(folder.iterdir())


def test_the_cache_is_private_and_written_atomically(setup):
    path, env, folder = setup
    load_inventory(path, env=env)
    assert folder.stat().st_mode & 0o777 == 0o700
    files = list(folder.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pickle"
    assert files[0].stat().st_mode & 0o777 == 0o600


class Planted:
    """A pickle that runs code when loaded: what someone else could leave in a shared cache."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


@pytest.mark.parametrize("loosen", ["file", "folder"])
def test_a_cache_file_others_could_write_is_never_loaded(setup, tmp_path, loosen):
    path, env, folder = setup
    load_inventory(path, env=env)
    target = next(folder.iterdir())
    key = target.read_bytes()[:cache_module.KEY_SIZE]
    marker = tmp_path / "marker"
    target.write_bytes(key + pickle.dumps(Planted(marker)))
    (target if loosen == "file" else folder).chmod(0o666 if loosen == "file" else 0o777)
    inv = load_inventory(path, env=env)
    assert not marker.exists(), "a pickle from a loose cache was loaded"
    assert inv.agents["client-b"].role == "worker"


def test_a_damaged_cache_file_is_a_miss_and_is_rewritten(setup):
    path, env, folder = setup
    first = load_inventory(path, env=env)
    target = next(folder.iterdir())
    target.write_bytes(target.read_bytes()[:cache_module.KEY_SIZE + 20])
    assert load_inventory(path, env=env) == first
    assert load_inventory(path, env=env) == first
    assert len(target.read_bytes()) > cache_module.KEY_SIZE + 20


def test_without_a_cache_directory_nothing_is_cached(setup, tmp_path):
    path, _, _ = setup
    assert cache_module.cache_dir({}) is None
    assert load_inventory(path, env={}).agents
    assert cache_module.cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/hatchery/inventory")
    assert cache_module.cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == \
        Path("/c/hatchery/inventory")
