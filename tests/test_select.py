"""Selectors: --name a,b, --pattern 'client-*', --group G, and how they combine."""

from pathlib import Path

import pytest

from hatchery.errors import UsageError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.inventory.select import entries, select_names

NAMES = [f"client-{c}" for c in "abcdefgh"] + ["manager-1", "db-primary"]


@pytest.fixture
def inv():
    return Inventory(path=Path("/nonexistent/fleet.yaml"), state_dir=Path("/nonexistent/.hatchery"),
                     agents={n: AgentSpec(n) for n in NAMES},
                     groups={"warm": ("client-c", "client-a", "db-primary"),
                             "cold": ("client-h",)})


def test_no_selector_is_every_agent_in_inventory_order(inv):
    assert select_names(inv) == NAMES


def test_a_list_of_names_keeps_inventory_order(inv):
    assert select_names(inv, names="client-c, client-a") == ["client-a", "client-c"]
    assert select_names(inv, names=["db-primary"]) == ["db-primary"]


def test_globs_are_alternatives(inv):
    assert select_names(inv, pattern="client-[ab]") == ["client-a", "client-b"]
    assert select_names(inv, pattern="manager-*,db-*") == ["manager-1", "db-primary"]


def test_groups_keep_their_listing_order_and_union(inv):
    assert select_names(inv, group="warm") == ["client-c", "client-a", "db-primary"]
    assert select_names(inv, group="warm,cold") == ["client-c", "client-a", "db-primary",
                                                    "client-h"]


def test_flags_narrow_each_other(inv):
    assert select_names(inv, group="warm", pattern="client-*") == ["client-c", "client-a"]
    assert select_names(inv, group="warm", names="client-a,client-b") == ["client-a"]


def test_nothing_left_after_narrowing_is_a_usage_error(inv):
    with pytest.raises(UsageError, match="no agent matches --name client-b --group cold"):
        select_names(inv, names="client-b", group="cold")
    with pytest.raises(UsageError, match="no agent matches --pattern 'x\\*'|no agent matches"):
        select_names(inv, pattern="x*")


def test_an_unknown_name_suggests_the_closest_few_not_the_whole_fleet(inv):
    with pytest.raises(UsageError) as caught:
        select_names(inv, names="clinet-a")
    assert caught.value.exit_code == 2
    assert caught.value.fix.startswith("did you mean client-a or ")   # the closest first
    assert caught.value.fix.count("client-") <= 3                        # a few, not all 10
    assert "manager-1" not in str(caught.value) and "db-primary" not in str(caught.value)
    with pytest.raises(UsageError) as far:
        inv.agent("zzzzzz")
    assert "10 agents" in far.value.fix and "client-a" not in far.value.fix


def test_an_unknown_group_suggests_a_group(inv):
    with pytest.raises(UsageError, match="group 'wram'") as caught:
        select_names(inv, group="wram")
    assert "did you mean warm" in caught.value.fix


def test_hostile_selectors_match_nothing_and_are_bounded(inv):
    with pytest.raises(UsageError):
        select_names(inv, names="client-a/../#")
    assert entries(" , ,") == []
    with pytest.raises(UsageError, match="at most"):
        entries(",".join(str(i) for i in range(1001)))


def test_inventory_select_is_the_same_resolver(inv):
    assert [a.name for a in inv.select(name="client-a,client-b", pattern="*-b")] == ["client-b"]


def test_did_you_mean_puts_the_same_name_in_another_case_first(inv):
    with pytest.raises(UsageError) as caught:
        select_names(inv, names="Client-A")
    assert caught.value.fix.startswith("did you mean client-a or ")


@pytest.mark.parametrize("word, first", [
    ("CLIENT-H", "client-h"), ("client-hh", "client-h"), ("db-primry", "db-primary"),
    ("clinet-b", "client-b"), ("Manager-1", "manager-1"),
])
def test_suggestions_are_ordered_by_closeness(word, first):
    from hatchery.inventory.select import suggest
    found = suggest(word, NAMES)
    assert found[0] == first and len(found) <= 3
    assert suggest("zzzz", NAMES) == [] and suggest("client-a", NAMES)[0] != "client-a"


def test_ties_keep_the_inventory_order_where_difflib_reversed_the_alphabet():
    from hatchery.inventory.select import suggest
    assert suggest("client-x", ["client-a", "client-b", "client-c"]) == \
        ["client-a", "client-b", "client-c"]
