"""invoke broker.*: deploy, status and stop the Mosquitto broker."""

from __future__ import annotations

from invoke import Collection

from .. import output
from ..dnsplan import dns_unregister_plan
from ..operations import deploy_plan
from ..runtime import for_runtime
from .common import fail_unless, load, op, run_plan


@op()
def deploy(c, inventory=None, check=False, diff=False, json=False):
    """Render mosquitto.conf, credentials and ACL; start or update the broker; register its DNS name."""
    run_plan("broker.deploy", deploy_plan(load(inventory)), check=check, diff=diff, json=json)


@op()
def status(c, inventory=None, json=False):
    """Show whether the broker runs and where; exit 1 when it does not."""
    inv = load(inventory)
    state = for_runtime(inv.broker.runtime).broker_status(inv)
    if json:
        output.emit_json(state)
    else:
        output.table([{"key": k, "value": v} for k, v in state.items()], ["key", "value"])
    fail_unless(state.get("running", False))


@op()
def stop(c, inventory=None, check=False, json=False):
    """Stop the broker (its data is kept) and unregister its DNS name."""
    inv = load(inventory)
    changes = for_runtime(inv.broker.runtime).broker_stop_plan(inv)
    changes += dns_unregister_plan(inv)
    run_plan("broker.stop", changes, check=check, json=json)


broker = Collection("broker", deploy, status, stop)
