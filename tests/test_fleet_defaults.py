"""Defaults that work on an empty, shared engine, the pure part (no engine needed):
which image a recipe builds, the names a fleet derives from its identity, and
the names it keeps once recorded. The engine side is tests/docker/test_first_hour.py
and tests/docker/test_old_names.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from hatchery.core.paths import state_paths
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import DEFAULT_BROKER_IMAGE, DOCKER, AgentSpec, BrokerSpec, Inventory, fleet_tag
from hatchery.runtime.docker import RECIPES, describe_names, forget_names, old_names_kept, recipe_for, resolved_names


# --- which recipe builds an image ---------------------------------------------------------------

@pytest.mark.parametrize("ref, key", [
    ("hatchery/mosquitto:2.0.11", "broker"),
    ("hatchery/mosquitto:2.0.11-lab", "broker"),
    ("hatchery/mosquitto:2.0.11-t1.a_b-c", "broker"),
    ("hatchery/agent-base:bookworm", "agent-base"),
    ("hatchery/agent-base:bookworm-x1", "agent-base"),
    ("hatchery/agent-base:bookworm-clients", "agent-clients"),     # the longest tag wins
    ("hatchery/agent-base:bookworm-clients-x1", "agent-clients"),
])
def test_a_recipe_builds_its_own_tag_and_the_same_tag_with_a_suffix(ref, key):
    recipe = recipe_for(ref)
    assert recipe.key == key and recipe.tag == ref
    assert recipe.packages == RECIPES[key].packages


@pytest.mark.parametrize("ref", [
    "eclipse-mosquitto:2", "hatchery/mosquitto:2.0.1", "hatchery/mosquitto:2.0.11-",
    "hatchery/mosquitto:2.0.11x", "hatchery/mosquitto:2.0.11--x", "hatchery/agent-base:bookwormish",
    "evil.example/hatchery/mosquitto:2.0.11", "hatchery/mosquitto:2.0.11-a/b", "node:20",
])
def test_no_recipe_for_anything_else(ref):
    assert recipe_for(ref) is None


def test_the_suffixed_tag_is_its_own_recipe_hash():
    """A suffixed tag is labelled with a hash of its own: images.bootstrap never takes it
    for the default image, nor the reverse."""
    assert recipe_for("hatchery/mosquitto:2.0.11-lab").digest("bookworm", "m") != \
        RECIPES["broker"].digest("bookworm", "m")


def test_the_default_broker_image_is_one_hatchery_builds_offline(tmp_path):
    inv = _inv(tmp_path)
    assert inv.broker.image == DEFAULT_BROKER_IMAGE and recipe_for(DEFAULT_BROKER_IMAGE) is not None
    assert recipe_for(AgentSpec("a").image) is not None      # and the agents' base image too


# --- names derived from the fleet's identity --------------------------------------------------------

def _inv(root: Path, broker: BrokerSpec = BrokerSpec(runtime=DOCKER), manager: str = "zephyr") -> Inventory:
    return Inventory(path=root / "fleet_inventory.yaml", manager=manager, broker=broker,
                     state_dir=root / ".hatchery")


def test_two_fleets_with_default_names_never_share_one(tmp_path):
    one, two = _inv(tmp_path / "one"), _inv(tmp_path / "two")
    for key in ("container_prefix", "container", "network"):
        assert getattr(one.broker, key) != getattr(two.broker, key)
    tag = fleet_tag("zephyr", tmp_path / "one" / ".hatchery")
    assert one.broker.container_prefix == f"hatchery-{tag}-" and tag.startswith("zephyr-")
    assert (one.broker.container, one.broker.network) == (f"hatchery-{tag}-broker", f"hatchery-{tag}-net")
    assert set(one.broker.defaulted) == {"container_prefix", "container", "network", "image"}


def test_names_the_inventory_gives_are_kept_and_the_others_follow_the_prefix(tmp_path):
    inv = _inv(tmp_path, BrokerSpec(runtime=DOCKER, container_prefix="lab-"))
    assert (inv.broker.container, inv.broker.network) == ("lab-broker", "lab-net")
    assert "container_prefix" not in inv.broker.defaulted
    given = _inv(tmp_path, BrokerSpec(runtime=DOCKER, container="b", network="n", container_prefix="p-",
                                      image="eclipse-mosquitto:2"))
    assert (given.broker.container, given.broker.network, given.broker.defaulted) == ("b", "n", ())


def test_names_survive_a_copy_of_the_inventory(tmp_path):
    inv = _inv(tmp_path)
    copy = replace(inv, agents={"a": AgentSpec("a", runtime=DOCKER)})
    assert copy.broker == inv.broker


def test_a_long_manager_name_is_cut_in_names(tmp_path):
    inv = _inv(tmp_path, manager="m" * 63)
    assert len(inv.broker.container_prefix) == len("hatchery-") + 24 + 1 + 6 + 1


def test_the_loader_derives_the_same_names(tmp_path):
    (tmp_path / "fleet_inventory.yaml").write_text(
        "broker: {runtime: docker}\nagents:\n  client-a: {runtime: docker}\n")
    loaded = load_inventory(tmp_path / "fleet_inventory.yaml")
    assert loaded.broker == _inv(tmp_path).broker


# --- names recorded at the first deploy ------------------------------------------------------------

def _record(inv: Inventory, data: dict) -> None:
    path = Path(state_paths(inv).docker_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_recorded_names_win_over_derived_ones_but_never_over_given_ones(tmp_path):
    forget_names()
    inv = _inv(tmp_path)
    _record(inv, {"container_prefix": "kept-", "container": "kept-broker", "network": "kept-net"})
    got = resolved_names(inv).broker
    assert (got.container_prefix, got.container, got.network) == ("kept-", "kept-broker", "kept-net")
    assert got.image == DEFAULT_BROKER_IMAGE            # a per-fleet record does not pin the image
    given = resolved_names(_inv(tmp_path, BrokerSpec(runtime=DOCKER, network="mine"))).broker
    assert (given.container, given.network) == ("kept-broker", "mine")
    assert "recorded at its first deploy" in describe_names(inv)


def test_an_old_style_record_keeps_the_old_image_too_and_says_so(tmp_path):
    forget_names()
    inv = _inv(tmp_path)
    _record(inv, {"container_prefix": "hatchery-", "container": "hatchery-broker", "network": "hatchery",
                  "image": "eclipse-mosquitto:2", "old_style": True})
    got = resolved_names(inv).broker
    assert (got.container, got.network, got.image) == ("hatchery-broker", "hatchery", "eclipse-mosquitto:2")
    assert old_names_kept(inv) and "kept from before names were per fleet" in describe_names(inv)
    pinned = resolved_names(_inv(tmp_path, BrokerSpec(runtime=DOCKER, image="mine:1"))).broker
    assert pinned.image == "mine:1"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"container": 5, "network": "n", "container_prefix": "p-"}',
                                  '{"container": "b; rm -rf /", "network": "n", "container_prefix": "p-"}'])
def test_a_damaged_or_hostile_record_is_ignored(tmp_path, text):
    forget_names()
    inv = _inv(tmp_path)
    path = Path(state_paths(inv).docker_names)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert resolved_names(inv).broker.container == inv.broker.container     # derived, as if none


def test_with_every_name_given_nothing_is_looked_up(tmp_path):
    inv = _inv(tmp_path, BrokerSpec(runtime=DOCKER, container="b", network="n", container_prefix="p-"))
    assert resolved_names(inv) is inv
