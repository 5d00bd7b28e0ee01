"""invoke swarm.*: form the Docker Swarm the inventory describes, and show its nodes."""

from __future__ import annotations

from invoke import Collection

from hatchery.core.results import Rows
from hatchery.errors import UsageError
from hatchery.inventory.swarm import swarm_of
from hatchery.tasks.common import fail_unless, load, op, run_plan, show


def _swarm_inventory(inventory):
    inv = load(inventory)
    if swarm_of(inv) is None:
        raise UsageError(f"{inv.path} has no swarm: section",
                         "add e.g. swarm: {managers: [h1, h2, h3]} (hosts: entries; the others join as workers)")
    return inv


@op()
def up(c, inventory=None, check=False, diff=False, json=False):
    """Form the swarm of the inventory's swarm: section, or bring it in line (idempotent).

    Initialises it on the first manager (its address advertised), joins the other
    hosts as managers or workers, gives each node its host's labels (and
    hatchery.host), and sets the dispatcher heartbeat (swarm.heartbeat, 2 s) so a
    lost node is noticed in seconds. A host in another swarm is refused, not taken.
    """
    from hatchery.runtime.swarm import up_plan
    inv = _swarm_inventory(inventory)
    run_plan("swarm.up", lambda: up_plan(inv), lock=inv.state_dir, check=check, diff=diff, json=json)


@op()
def status(c, inventory=None, json=False):
    """Show the swarm's nodes: role, availability, state, reachability, tasks; exit 1 on a problem."""
    from hatchery.runtime.swarm import STATUS_COLUMNS, swarm_status
    inv = _swarm_inventory(inventory)
    rows, problems, extras = swarm_status(inv)
    show(Rows(rows, STATUS_COLUMNS, problems=problems, extras=extras), json)
    fail_unless(not problems)


swarm = Collection("swarm", up, status)
