"""``invoke swarm.status``: the nodes as one manager sees them, and the tasks on each.

``status_rows(inv, cluster, tasks)`` is pure (the facts in, rows and problems
out); ``swarm_status(inv)`` reads the facts from the first manager that answers.
"""

from __future__ import annotations

from collections import Counter

from hatchery.inventory.model import Inventory
from hatchery.inventory.swarm import swarm_of
from hatchery.runtime.docker.engine import docker_errors, engine
from hatchery.runtime.swarm.cluster import wanted_role
from hatchery.runtime.swarm.facts import ClusterFacts, read_cluster

COLUMNS = ("host", "node", "role", "availability", "state", "reachability", "address", "tasks")


def swarm_status(inv: Inventory) -> tuple:
    """(rows, problems, extras) for every node and every hosts: entry."""
    cluster = read_cluster(inv)
    client = engine(inv.hosts[cluster.manager].docker_host)
    with docker_errors(f"list the swarm's tasks from {cluster.manager}"):
        tasks = client.api.tasks(filters={"desired-state": "running"})
    running = Counter(t.get("NodeID") for t in tasks if (t.get("Status") or {}).get("State") == "running")
    rows, problems = status_rows(inv, cluster, running)
    return rows, problems, {"manager": cluster.manager, "heartbeat_s": cluster.heartbeat_s,
                            "cluster": cluster.cluster_id[:12]}


def status_rows(inv: Inventory, cluster: ClusterFacts, running: Counter) -> tuple:
    rows, problems, seen = [], [], set()
    for node in sorted(cluster.nodes.values(), key=lambda n: (n.host_name(inv) or "~", n.node_id)):
        host = node.host_name(inv)
        seen.add(host)
        reach = node.reachability + (" (leader)" if node.leader else "")
        rows.append({"host": host or "-", "node": node.node_id[:12], "role": node.role,
                     "availability": node.availability, "state": node.state, "reachability": reach,
                     "address": node.address, "tasks": running.get(node.node_id, 0)})
        problems += _node_problems(inv, host, node)
    for host in inv.hosts:
        if host not in seen:
            rows.append({"host": host, "node": "-", "role": wanted_role(inv, host), "availability": "-",
                         "state": "not in the swarm", "reachability": "", "address": inv.hosts[host].address,
                         "tasks": 0})
            problems.append(f"host {host}: not in the swarm; run: invoke swarm.up")
    return rows, problems


def _node_problems(inv: Inventory, host, node) -> list:
    name = f"host {host}" if host else f"node {node.node_id[:12]} (not in hosts:)"
    if host is None:
        return [] if node.state == "down" else [f"{name}: in the swarm but not in the inventory"]
    found = []
    if node.state != "ready":
        found.append(f"{name}: node {node.state}; its tasks run elsewhere if they can be placed")
    if node.role == "manager" and node.reachability not in ("reachable", ""):
        found.append(f"{name}: manager {node.reachability}; the swarm keeps working while a majority "
                     f"of the {len(swarm_of(inv).managers)} managers is reachable")
    if node.availability != "active":
        found.append(f"{name}: availability {node.availability}: no new tasks are placed on it")
    return found
