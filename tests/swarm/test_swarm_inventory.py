"""The swarm: section and placement (pure): what a good swarm inventory loads into.
The bad cases are data: tests/inventory_cases/swarm_*.yaml."""

from __future__ import annotations

import pytest

from hatchery.inventory.swarm import (
    HOST_LABEL,
    Placement,
    eligible_hosts,
    node_labels,
    placement_of,
    quorum_problem,
    swarm_of,
)
from tests.hosts.fleettext import load_text

INVENTORY = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2", labels: {zone: a}}
  h2: {docker_host: "ssh://root@10.250.1.3", labels: {zone: b}}
  h3: {docker_host: "ssh://root@10.250.1.4", labels: {zone: b, disk: ssd}}
  h4: {docker_host: "ssh://root@10.250.1.5", labels: {zone: a}}
swarm:
  managers: [h2, h1, h3]
broker: {runtime: swarm, tls: true, placement: {constraints: ["node.role==manager"]}}
groups:
  edge:
    agents: [e1, e2]
    vars: {runtime: swarm, placement: {constraints: ["node.labels.zone==b"], preferences: ["spread=node.labels.disk"]}}
agents:
  e1: {}
  e2: {placement: {constraints: ["node.labels.hatchery.host==h4"]}}
  plain: {runtime: swarm}
  here: {}
"""


@pytest.fixture
def inv(tmp_path):
    return load_text(tmp_path, INVENTORY)


def test_the_swarm_section_and_placement_load(inv):
    assert swarm_of(inv).managers == ("h2", "h1", "h3") and swarm_of(inv).heartbeat == 2.0
    assert inv.broker.runtime == "swarm" and inv.broker.host == "10.250.1.3"   # the first manager's
    assert inv.broker.alternates == ("10.250.1.2", "10.250.1.4")            # managers only (placement)
    e1, e2 = inv.agents["e1"], inv.agents["e2"]
    assert e1.runtime == "swarm" and placement_of(e1) == Placement(("node.labels.zone==b",),
                                                               ("spread=node.labels.disk",))
    assert placement_of(e2).constraints == ("node.labels.hatchery.host==h4",)   # its own replaces the group's
    assert placement_of(inv.agents["plain"]) is None and inv.agents["here"].runtime == "local"
    assert e1.host is None and e1.docker_host is None


def test_eligible_hosts_follow_labels_and_roles(inv):
    names = lambda placement: [h.name for h in eligible_hosts(inv.hosts, swarm_of(inv), placement)]  # noqa: E731
    assert names(None) == ["h1", "h2", "h3", "h4"]
    assert names(placement_of(inv.agents["e1"])) == ["h2", "h3"]
    assert names(placement_of(inv.agents["e2"])) == ["h4"]
    assert names(placement_of(inv.broker)) == ["h1", "h2", "h3"]
    assert names(Placement(("node.role!=manager", "node.labels.zone!=b"))) == ["h4"]
    assert names(Placement(("node.platform.os==linux",))) == ["h1", "h2", "h3", "h4"]  # Swarm's to judge


def test_node_labels_are_the_host_labels_and_its_name(inv):
    assert node_labels(inv.hosts["h3"]) == {"zone": "b", "disk": "ssd", HOST_LABEL: "h3"}


@pytest.mark.parametrize("count,majority,tolerated", [(2, 2, 0), (4, 3, 1), (6, 4, 2)])
def test_the_quorum_rule_is_spelled_out(count, majority, tolerated):
    text = quorum_problem(count)
    assert f"majority ({majority} of {count})" in text and f"tolerate losing {tolerated}, as {count - 1}" in text
