"""Agent selection is linear in the fleet, guarded by counting work, not by timing.

A trace function counts every Python line and call while a selection runs
over a fixture inventory; the budget is per agent, so a selector that rescans
the fleet (or recomputes the known hosts) per agent fails whatever the
machine's speed. ``--host local`` over 3,000 agents once took 0.93 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hatchery.inventory.model import AgentSpec, BrokerSpec, HostSpec, Inventory
from hatchery.inventory.select import select_names

AGENTS = 3000
STEPS_PER_AGENT = 60


class BudgetSpent(Exception):
    pass


def count_steps(budget: int, func):
    steps = 0

    def tracer(frame, event, arg):
        nonlocal steps
        steps += 1
        if steps > budget:
            raise BudgetSpent(f"more than {budget} steps")
        return tracer

    sys.settrace(tracer)
    try:
        return func(), steps
    finally:
        sys.settrace(None)


def fleet() -> Inventory:
    hosts = {"h2": HostSpec("h2", "ssh://root@10.0.0.2", "10.0.0.2")}
    agents = {}
    for i in range(AGENTS):
        name = f"agent-{i:05d}"
        remote = i % 3 == 0
        agents[name] = AgentSpec(name, runtime="docker" if remote else "local",
                                 host="h2" if remote else None,
                                 docker_host="ssh://root@10.0.0.2" if remote else None)
    names = list(agents)
    return Inventory(Path("/nonexistent/fleet_inventory.yaml"), broker=BrokerSpec(),
                     state_dir=Path("/nonexistent/.hatchery"),
                     agents=agents, hosts=hosts,
                     groups={"evens": tuple(names[::2]), "all": tuple(names)})


@pytest.mark.parametrize("selectors, expected", [
    ({"host": "local"}, 2000),
    ({"host": "h2,local"}, 3000),
    ({"group": "evens,all"}, 3000),
    ({"group": "all", "pattern": "agent-0*1,agent-02*"}, 300 + 1000 - 100),
    ({"names": ",".join(f"agent-{i:05d}" for i in range(0, 2000, 2))}, 1000),
    ({"group": "evens", "names": ",".join(f"agent-{i:05d}" for i in range(1000)), "host": "local"},
     333),
])
def test_selection_work_grows_linearly(selectors, expected):
    inv = fleet()
    budget = STEPS_PER_AGENT * AGENTS
    try:
        chosen, steps = count_steps(budget, lambda: select_names(inv, **selectors))
    except BudgetSpent:
        pytest.fail(f"selecting with {sorted(selectors)} over {AGENTS} agents took more than "
                    f"{STEPS_PER_AGENT} steps per agent: quadratic?")
    assert len(chosen) == expected
    assert chosen == sorted(chosen, key=list(inv.agents).index) or "group" in selectors
