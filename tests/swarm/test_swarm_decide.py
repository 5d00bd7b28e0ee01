"""swarm.up's decisions as data: host and cluster facts in, steps out (no engine)."""

from __future__ import annotations

import pytest

from hatchery.runtime.swarm import Act, ClusterFacts, HostFacts, NodeFacts, decide
from tests.hosts.fleettext import load_text

INVENTORY = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2", labels: {zone: a}}
  h2: {docker_host: "ssh://root@10.250.1.3"}
  h3: {docker_host: "ssh://root@10.250.1.4"}
  w1: {docker_host: "ssh://root@10.250.1.5"}
swarm: {managers: [h2, h1, h3]}
"""


@pytest.fixture
def inv(tmp_path):
    return load_text(tmp_path, INVENTORY)


def fresh(*down) -> dict:
    return {h: HostFacts(h, h not in down, error="ssh: connect refused" if h in down else "",
                         state="inactive") for h in ("h1", "h2", "h3", "w1")}


def formed(inv, heartbeat=2.0, **changes) -> tuple:
    """Every host in cluster c1 as wanted; ``changes`` replace fields of a host's node."""
    hosts, nodes = {}, {}
    for index, name in enumerate(("h1", "h2", "h3", "w1")):
        role = "worker" if name == "w1" else "manager"
        hosts[name] = HostFacts(name, True, state="active", node_id=f"n{index}", cluster_id="c1",
                                manager=role == "manager")
        labels = {**inv.hosts[name].labels, "hatchery.host": name}
        fields = dict(node_id=f"n{index}", role=role, labels=labels, availability="active", state="ready",
                      address=inv.hosts[name].address, reachability="reachable" if role == "manager" else "")
        fields.update(changes.get(name, {}))
        nodes[f"n{index}"] = NodeFacts(**fields)
    return hosts, ClusterFacts("h2", "c1", heartbeat, nodes)


def acts(steps) -> list:
    return [(s.item, s.act, s.role) for s in steps]


def test_a_new_swarm_is_formed_on_the_first_manager_then_managers_then_workers(inv):
    steps = decide(inv, fresh(), None)
    assert acts(steps) == [("node h2", Act.INIT, "manager"), ("node h1", Act.JOIN, "manager"),
                           ("node h3", Act.JOIN, "manager"), ("node w1", Act.JOIN, "worker"),
                           ("swarm heartbeat", Act.NONE, "")]
    assert steps[1].labels == {"zone": "a", "hatchery.host": "h1"}


def test_the_first_manager_down_another_forms_it_and_the_down_one_fails_alone(inv):
    steps = decide(inv, fresh("h2"), None)
    assert acts(steps)[:2] == [("node h1", Act.INIT, "manager"), ("node h2", Act.REFUSE, "")]
    assert "connect refused" in steps[1].reason


def test_a_formed_swarm_as_wanted_changes_nothing(inv):
    hosts, cluster = formed(inv)
    assert {s.act for s in decide(inv, hosts, cluster)} == {Act.NONE}


def test_roles_labels_and_heartbeat_are_brought_in_line(inv):
    hosts, cluster = formed(inv, heartbeat=5.0, h3={"role": "worker"}, w1={"role": "manager"},
                            h1={"labels": {"zone": "b", "by-hand": "x", "hatchery.host": "h1"}})
    steps = {s.item: s for s in decide(inv, hosts, cluster)}
    assert steps["node h3"].act is Act.PROMOTE and steps["node w1"].act is Act.DEMOTE
    assert steps["node h1"].act is Act.LABEL and steps["node h1"].labels == {"zone": "a", "hatchery.host": "h1"}
    assert steps["swarm heartbeat"].act is Act.HEARTBEAT and "5 s → 2 s" in steps["swarm heartbeat"].reason


def test_a_host_in_another_swarm_is_refused_not_taken(inv):
    hosts, cluster = formed(inv)
    hosts["w1"] = HostFacts("w1", True, state="active", node_id="x9", cluster_id="other-cluster")
    step = next(s for s in decide(inv, hosts, cluster) if s.item == "node w1")
    assert step.act is Act.REFUSE and "docker swarm leave --force" in step.reason


def test_a_node_left_behind_is_reported_and_left_alone(inv):
    hosts, cluster = formed(inv)
    old = NodeFacts("stale1", "worker", {}, "active", "down", "10.250.1.99")
    cluster = ClusterFacts("h2", "c1", 2.0, {**cluster.nodes, "stale1": old})
    step = decide(inv, hosts, cluster)[-1]
    assert step.act is Act.NONE and "docker node rm stale1" in step.reason


def test_a_worker_that_left_joins_again(inv):
    hosts, cluster = formed(inv)
    hosts["w1"] = HostFacts("w1", True, state="inactive")
    step = next(s for s in decide(inv, hosts, cluster) if s.item == "node w1")
    assert (step.act, step.role) == (Act.JOIN, "worker")
