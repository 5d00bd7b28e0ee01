"""The inventory's fast parse reads YAML as the round trip does, or says it is unsure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hatchery.errors import InventoryError
from hatchery.inventory import parse
from hatchery.inventory.fields import plain
from hatchery.inventory.load import load_inventory
from inventoryfiles import EXAMPLE, PRECEDENCE, write


TRICKY_SCALARS = [
    "yes", "no", "on", "off", "y", "n", "true", "False", "TRUE", "null", "Null", "~", "",
    "0", "-0", "+5", "1883", "010", "0o17", "0x1F", "0b11", "1_000", "1e3", "1.5e3", "0.5",
    "+.5", ".5", "1.", ".inf", "-.inf", ".nan", "12:30", "1:20:30", "2001-12-14",
    "2001-12-14 21:59:43.10 -5", "127.0.0.1", "1.2.3", "3.11", ".hatchery", "-", "--x",
    "<<", "=", "hatchery/agent-base:bookworm", "echo 1.0", "a: b", "'quoted'", '"0x1F"',
    "!!str 5", "!!int 5", "! 5", "&a 5", "[1, 2]", "{a: 1}", "|\n  block\n", "ssh://ops@nas",
]


def _both(text: str):
    """(fast data or 'unsure', the round trip's data as plain values or 'refused')."""
    try:
        fast = parse.fast(text)
    except parse.Unsure:
        fast = "unsure"
    try:
        slow = plain(parse.with_lines(text, "t.yaml"))
    except InventoryError:
        slow = "refused"
    return fast, slow


def _agree(fast, slow) -> bool:
    """What the loader relies on: the fast parse is unsure, or reads what ruamel reads."""
    return fast == "unsure" or (fast == slow and _types(fast) == _types(slow))


@pytest.mark.parametrize("scalar", TRICKY_SCALARS)
def test_fast_parse_agrees_with_the_round_trip_or_is_unsure(scalar):
    fast, slow = _both(f"key: {scalar}\n")
    assert _agree(fast, slow), (fast, slow)


def _types(value):
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-._:eExXoObBaf yYnN~<=", max_size=12))
def test_fast_parse_never_reads_a_scalar_differently(scalar):
    fast, slow = _both(f"key: {scalar}\n")
    assert _agree(fast, slow), (scalar, fast, slow)


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n",                       # ruamel refuses a duplicate key
    "%YAML 1.1\n---\na: yes\n",           # a directive changes how scalars read
    "a: !!int 0x1F\n",                    # an explicit tag
    "a: &x {b: 1}\nc:\n  <<: *x\n",       # a merge key
    "a: [\n",                             # a syntax error: ruamel words it
])
def test_fast_parse_is_unsure_where_the_round_trip_decides(text):
    with pytest.raises(parse.Unsure):
        parse.fast(text)


def test_fast_parse_keeps_the_line_of_every_key_and_item():
    data = parse.fast("# c\na:\n  b: 1\n\n  c: [x,\n    y]\n")
    assert parse.line(data, "a") == 2 and parse.line(data["a"], "c") == 5
    assert [parse.line(data["a"]["c"], i) for i in (0, 1)] == [5, 6]


def test_a_good_inventory_is_never_read_twice(tmp_path, monkeypatch):
    def no_round_trip(text, shown):
        raise AssertionError("a good inventory must not need the slow parse")
    monkeypatch.setattr(parse, "with_lines", no_round_trip)
    inv = load_inventory(EXAMPLE, env={})
    assert list(inv.agents) == ["client-a", "client-b"] and inv.agents["client-b"].source == 49


def test_fast_and_round_trip_loads_build_the_same_inventory(tmp_path, monkeypatch):
    path = write(tmp_path, PRECEDENCE)
    write(tmp_path, "heartbeat_interval: 100\nenv: {LEVEL: role}\n", "roles/custom/defaults.yaml")
    fast = load_inventory(path, env={})
    monkeypatch.setattr(parse, "fast_available", lambda: False)
    assert load_inventory(path, env={}) == fast


def test_a_scalar_the_fast_parse_is_unsure_of_still_loads(tmp_path):
    inv = load_inventory(write(tmp_path, "agents:\n  a: {heartbeat_interval: 1_200}\n"), env={})
    assert inv.agents["a"].heartbeat_interval == 1200.0
