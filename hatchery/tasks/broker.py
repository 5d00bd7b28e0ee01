"""invoke broker.*: deploy, status and stop the Mosquitto broker."""

from __future__ import annotations

from invoke import Collection

from .. import output
from ..brokerconf import ACL_FILE, PASSWORD_FILE, render_conf
from ..credentials import plan_auth
from ..dnsplan import dns_register_plan, dns_unregister_plan
from ..runtime import for_runtime
from ..security.tlsplan import tls_change
from .common import fail_unless, load, op, run_plan


def auth_files(auth) -> dict:
    """The files the broker reads beside its config, from a ``FleetAuth``."""
    return {PASSWORD_FILE: auth.password_text(), ACL_FILE: auth.acl_text()}


@op()
def deploy(c, inventory=None, check=False, diff=False, json=False):
    """Render mosquitto.conf, credentials and ACL; start or update the broker; register its DNS name."""
    inv = load(inventory)
    runtime = for_runtime(inv.broker.runtime)
    changes, files = [], None
    if inv.broker.auth:
        auth = plan_auth(inv)
        changes.append(auth.change())
        files = auth_files(auth)
    changes += tls_change(inv)
    changes += runtime.broker_plan(inv, conf_text=render_conf(inv), auth_files=files)
    changes += dns_register_plan(inv)
    run_plan("broker.deploy", changes, check=check, diff=diff, json=json)


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
