"""invoke broker.*: deploy, status and stop the Mosquitto broker."""

from __future__ import annotations

from invoke import Collection

from hatchery.core.results import Rows
from hatchery.runtime import for_runtime
from hatchery.tasks import output
from hatchery.tasks.common import fail_unless, load, op, run_plan, show


@op()
def deploy(c, inventory=None, check=False, diff=False, json=False):
    """Render mosquitto.conf, credentials and ACL; start or update the broker; register its DNS name."""
    from hatchery.provision.operations import deploy_plan   # not for broker.status: see agent.py
    inv = load(inventory)
    run_plan("broker.deploy", lambda: deploy_plan(inv), lock=inv.state_dir,
             check=check, diff=diff, json=json)


@op()
def status(c, inventory=None, json=False):
    """Show whether the broker runs and where; exit 1 when it does not."""
    inv = load(inventory)
    state = for_runtime(inv.broker.runtime).broker_status(inv)
    running = bool(state.get("running", False))
    problems = [] if running else ["broker: not running; start it with: invoke broker.deploy"]
    result = Rows([{"item": "broker", **state}], ("item",), ok=running, problems=problems)
    if json:
        show(result, json)
    else:
        output.table([{"key": k, "value": v} for k, v in state.items()], ["key", "value"])
    fail_unless(running)


@op()
def stop(c, inventory=None, check=False, json=False):
    """Stop the broker (its data is kept) and unregister its DNS name."""
    from hatchery.provision.operations import stop_broker_plan
    inv = load(inventory)
    run_plan("broker.stop", lambda: stop_broker_plan(inv), lock=inv.state_dir,
             check=check, json=json)


broker = Collection("broker", deploy, status, stop)
