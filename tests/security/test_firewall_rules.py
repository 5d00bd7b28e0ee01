"""The per-address limits broker.deploy renders (configs/firewall.py): pure, no broker, no netns.

The rules themselves are exercised against a real flood in test_hostile_firewall.py.
"""

from __future__ import annotations

import textwrap

import pytest

from hatchery.configs import firewall
from hatchery.core.paths import StatePaths
from hatchery.errors import UsageError
from hatchery.inventory.load import load_inventory
from hatchery.provision.firewall import firewall_change


def _inventory(tmp_path, text: str):
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text(textwrap.dedent(text))
    return load_inventory(path, env={})


HOSTS = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2"}
  h2: {docker_host: "ssh://root@10.250.2.2"}
broker:
  on_host: h1
  bind: 0.0.0.0
  allow_plain: true
  tls: true
agents:
  a: {}
  b: {host: h2}
  c: {host: h2}
"""


@pytest.mark.parametrize("bad", [0, 65536, -1, True, "1883", "1883\n}", 1.5, None])
def test_every_value_in_the_file_is_a_bounded_integer(bad):
    with pytest.raises(UsageError):
        firewall.render_rules(ports=[bad])
    with pytest.raises(UsageError):
        firewall.render_rules(ports=[1883], per_source=bad)


def test_no_port_is_refused():
    with pytest.raises(UsageError):
        firewall.render_rules(ports=[])


def test_the_rules_limit_each_address_and_spare_loopback():
    text = firewall.render_rules(ports=[8883, 1883], per_source=20, rate=5, burst=30)
    assert "table inet hatchery_mqtt_1883 {" in text
    assert "delete table inet hatchery_mqtt_1883" in text     # loading again replaces it
    assert "tcp dport { 1883, 8883 } ct state new jump mqtt_new" in text
    assert 'iif "lo" accept' in text
    assert "ct count over 20" in text and "limit rate over 5/second burst 30 packets" in text
    assert "ip6 saddr and ffff:ffff:ffff:ffff::" in text       # a /64 is one neighbour
    assert "hook prerouting priority mangle" in text            # before Docker's DNAT
    assert "the broker's MQTT ports 1883, 8883. Install" in text
    assert "the broker's MQTT port 1883. Install" in firewall.render_rules(ports=[1883])


def test_a_loopback_broker_needs_no_rules(tmp_path):
    inv = _inventory(tmp_path, "agents:\n  a: {}\n")
    assert firewall.exposed_ports(inv) == []
    assert firewall.render_for(inv) == ""
    assert firewall_change(inv) == []


def test_exposed_ports_and_room_for_the_busiest_other_host(tmp_path):
    inv = _inventory(tmp_path, HOSTS)
    assert firewall.exposed_ports(inv) == [1883, 8883]
    assert firewall.broker_host(inv) == "h1"
    # h2's two agents share its address; a shares the broker's host and is not counted
    assert firewall.per_source_limit(inv) == firewall.PER_SOURCE_MIN
    many = HOSTS + "".join(f"  x{i}: {{host: h2}}\n" for i in range(30))
    inv = _inventory(tmp_path, many)
    assert firewall.per_source_limit(inv) == 2 * 32 + firewall.PER_SOURCE_MARGIN
    assert f"ct count over {2 * 32 + firewall.PER_SOURCE_MARGIN}" in firewall.render_for(inv)


def test_deploy_renders_the_file_once_and_never_applies_it(tmp_path):
    inv = _inventory(tmp_path, HOSTS)
    [change] = firewall_change(inv)
    assert change.action == "create"
    assert "not applied" in change.reason and "nft -f broker.nft" in change.reason
    assert "+table inet hatchery_mqtt_1883 {" in change.diff
    change.apply()
    path = StatePaths(inv.state_dir).broker_firewall
    assert path.read_text() == firewall.render_for(inv)
    assert path.stat().st_mode & 0o777 == 0o644
    [again] = firewall_change(inv)
    assert again.action == "none"
