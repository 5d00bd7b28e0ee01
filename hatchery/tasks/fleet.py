"""invoke fleet.*: the command vocabulary, to one agent, a group, or all."""

from __future__ import annotations

from invoke import Collection

from .. import output
from ..fleet import run_command
from .common import fail_unless, load, op

TIMEOUT = 5.0


def _run(verb, name, group, timeout, inventory, json):
    inv = load(inventory)
    result = run_command(inv, verb, names=[name] if name else None, group=group,
                         timeout=float(timeout))
    if json:
        output.emit_json(result.as_dict())
    else:
        output.table(result.rows(), result.columns)
        for line in result.problems():
            output.emit(line, err=True)
    fail_unless(result.ok)


@op()
def version_report(c, name=None, group=None, timeout=TIMEOUT, inventory=None, json=False):
    """Ask agents which version of their software they run (their version_command)."""
    _run("version-report", name, group, timeout, inventory, json)


@op()
def health_check(c, name=None, group=None, timeout=TIMEOUT, inventory=None, json=False):
    """Ask agents for an immediate health report (and a fresh retained heartbeat)."""
    _run("health-check", name, group, timeout, inventory, json)


@op()
def status_report(c, name=None, group=None, timeout=TIMEOUT, inventory=None, json=False):
    """Ask agents for their full operational status (counters, uptime, connection)."""
    _run("status-report", name, group, timeout, inventory, json)


@op()
def config_reload(c, name=None, group=None, timeout=TIMEOUT, inventory=None, json=False):
    """Ask agents to reload their configuration the way their inventory entry says."""
    _run("config-reload", name, group, timeout, inventory, json)


fleet = Collection("fleet", version_report, health_check, status_report, config_reload)
