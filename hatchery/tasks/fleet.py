"""invoke fleet.*: the command vocabulary, to one agent, a group, or all.

The readers (monitor, health, crosscheck, exporter, alerting) are imported
inside the tasks that use them: every command loads this module.
"""

from __future__ import annotations

from pathlib import Path

from invoke import Collection

from agent_kit import contract
from hatchery.bus.commands import broadcast as send_broadcast
from hatchery.bus.commands import collect as run_collect
from hatchery.bus.commands import run_command
from hatchery.bus.connection import bus_for
from hatchery.core.results import Rows
from hatchery.core.state import StatePaths
from hatchery.errors import UsageError
from hatchery.inventory.select import select_names
from hatchery.provision import schedule
from hatchery.tasks import answers, output
from hatchery.tasks.common import (
    as_envelope,
    choice,
    choices,
    fail_unless,
    load,
    op,
    run_plan,
    show,
    stop_event,
)

TIMEOUT = 5.0
KINDS = ("heartbeat", "status", "alert", "command")


def _run(verb, selectors, timeout, inventory, json):
    inv = load(inventory)
    _show_answers(run_command(inv, verb, timeout=timeout, **selectors), json)


def _show_answers(result, json) -> None:
    """A verb's replies: the envelope, or each answer's fields as columns; exit 1 unless all ok."""
    if json:
        show(result, json)
    else:
        answers.show_wide(result)
        show(result, json, table=False)
    fail_unless(result.ok)


def _selectors(name, group, pattern, host=None) -> dict:
    return {"names": name, "group": group, "pattern": pattern, "host": host}


@op()
def version_report(c, name=None, group=None, pattern=None, host=None, timeout=TIMEOUT,
                   inventory=None, json=False):
    """Ask agents which version of their software they run (their version_command)."""
    _run("version-report", _selectors(name, group, pattern, host), timeout, inventory, json)


@op()
def health_check(c, name=None, group=None, pattern=None, host=None, timeout=TIMEOUT,
                 inventory=None, json=False):
    """Ask agents for an immediate health report (and a fresh retained heartbeat)."""
    _run("health-check", _selectors(name, group, pattern, host), timeout, inventory, json)


@op()
def status_report(c, name=None, group=None, pattern=None, host=None, timeout=TIMEOUT,
                  inventory=None, json=False):
    """Ask agents for their full operational status (counters, uptime, connection)."""
    _run("status-report", _selectors(name, group, pattern, host), timeout, inventory, json)


@op()
def config_reload(c, name=None, group=None, pattern=None, host=None, timeout=TIMEOUT,
                  inventory=None, json=False):
    """Ask agents to reload their configuration the way their inventory entry says."""
    _run("config-reload", _selectors(name, group, pattern, host), timeout, inventory, json)


# --- seeing the fleet -------------------------------------------------------------

@op(snapshot="read the retained heartbeats and states, print one table, exit (the default)",
    stream="follow the bus live, one line per message (with --json: one envelope per line), "
           "until Ctrl-C or --duration",
    kinds=f"stream only these kinds, comma-separated: {','.join(KINDS)}",
    duration="--stream: stop after this many seconds (default: until Ctrl-C)")
def monitor_(c, snapshot=False, stream=False, name=None, group=None, pattern=None, kinds=None,
             duration=None, inventory=None, json=False, timeout=5.0):
    """Show the whole fleet at a glance (--snapshot), or follow the bus live (--stream)."""
    from hatchery.observe import monitor
    inv = load(inventory)
    if snapshot and stream:
        raise UsageError("--snapshot and --stream exclude each other", "pick one")
    chosen_kinds = choices(kinds, KINDS, "--kinds")
    agents = _chosen(inv, name, group, pattern)
    # read-only login: the monitor role may read fleet/# but publish no command
    with bus_for(inv, connect_timeout=timeout, role="monitor") as bus:
        if stream:
            _stream(inv, bus, agents, chosen_kinds, duration, json)
            return
        snap = monitor.snapshot(inv, bus, timeout=timeout)
    if agents is not None:
        snap.agents = {n: v for n, v in snap.agents.items() if n in agents}
    show(snap, json)
    if not json:
        output.emit(f"{output.plural(len(snap.agents), 'agent')}, read in {snap.seconds * 1000:.1f} ms")


def _chosen(inv, name, group, pattern):
    """The selected agents' names, or None when no selector was given (every agent)."""
    if not (name or group or pattern):
        return None
    return select_names(inv, names=name, group=group, pattern=pattern)


def _stream(inv, bus, agents, kinds, duration, json):
    from hatchery.observe import monitor
    if json:
        def show_event(event):
            output.emit_json_line(event_envelope(event))
    else:
        def show_event(event):
            output.emit_untrusted(event.line())
    monitor.stream(inv, bus, on_event=show_event, agents=agents, kinds=kinds,
                   duration=duration, stop=stop_event())


def event_envelope(event) -> dict:
    """One streamed event in the envelope's keys: one item, ok unless it broke the contract."""
    return {"task": "fleet.monitor", "ok": event.valid, "items": [event.as_dict()],
            "problems": [] if event.valid else [
                {"message": f"{event.agent}: {event.kind} breaks the contract"}],
            "timings": {"at": event.at, "seconds": 0.0}, "stream": True}


@op(threshold="seconds without a heartbeat before an agent is stale (default: twice its interval)",
    verify_docker="also ask the Docker API about docker agents; exit 1 on any inconsistency")
def bus_health(c, threshold=None, verify_docker=False, name=None, group=None, pattern=None,
               inventory=None, json=False, timeout=5.0):
    """Staleness check for cron: exit 1 naming every stale, offline, missing, unknown or unhealthy
    agent (stopped and retired ones never fail it)."""
    from hatchery.observe import crosscheck, health
    inv = load(inventory)
    agents = _chosen(inv, name, group, pattern)
    with bus_for(inv, connect_timeout=timeout, role="monitor") as bus:
        if verify_docker:
            report, docker = crosscheck.bus_and_docker(inv, bus, threshold=threshold)
        else:
            report, docker = health.bus_health(inv, bus, threshold=threshold), None
    if agents is not None:
        report.agents = [a for a in report.agents if a.agent in agents]
        if docker:
            docker.agents = [a for a in docker.agents if a.agent in agents]
    ok = report.ok and (docker is None or docker.ok)
    if json:
        body = as_envelope(report)
        if docker:
            body["ok"] = ok
            body["problems"] += docker.as_dict()["problems"]
            body["docker"] = docker.as_dict()
        output.emit_json(body)
    else:
        show(report, json)
        if docker:
            show(docker, json)
    fail_unless(ok)


# --- acting on the fleet ------------------------------------------------------------

@op()
def collect(c, timeout=10.0, inventory=None, json=False):
    """The heartbeat collector: one broadcast health-check; exit 1 if anyone is missing."""
    _show_answers(run_collect(load(inventory), timeout), json)


@op(verb=f"one of {', '.join(contract.VERBS)}",
    dry_run="list who would receive it; send nothing")
def broadcast(c, verb, name=None, group=None, pattern=None, dry_run=False, timeout=TIMEOUT,
              inventory=None, json=False):
    """Send one command fleet-wide on {manager}/broadcast (or to a chosen subset)."""
    inv = load(inventory)
    result = send_broadcast(inv, verb, names=name, group=group, pattern=pattern,
                            dry_run=dry_run, timeout=timeout)
    if not dry_run:
        _show_answers(result, json)
        return
    if not json:
        output.emit(f"{verb} would go to {output.plural(len(result.recipients), 'agent')} ({result.mode}):")
    show(result, json)


# --- Prometheus and scheduling -------------------------------------------------------

@op(port="port to serve /metrics on", addr="address to bind",
    rules="print the Prometheus alerting rules and exit (with --json: in the envelope's 'rules')",
    alertmanager_config="print an Alertmanager config routing those alerts and exit "
                        "(needs --webhook and/or --email-to, --email-from, --smarthost)",
    webhook="with --alertmanager-config: the URL Alertmanager posts alerts to",
    email_to="with --alertmanager-config: the address alerts are mailed to",
    email_from="with --email-to: the sender address",
    smarthost="with --email-to: the SMTP server, HOST:PORT",
    json="errors, --rules and --alertmanager-config as the JSON envelope "
         "(serving prints nothing on stdout)")
def exporter_(c, port=9883, addr="127.0.0.1", rules=False, alertmanager_config=False,
              webhook=None, email_to=None, email_from=None, smarthost=None, duration=None,
              inventory=None, timeout=5.0, json=False):
    """Serve Prometheus metrics from the bus at http://ADDR:PORT/metrics (Ctrl-C stops)."""
    from hatchery.observe import alerting, exporter
    inv = load(inventory)
    if rules:
        text = exporter.render_rules(inventory=inv)
        if json:
            show(Rows([], (), extras={"rules": text}), json)
        else:
            output.emit(text.rstrip("\n"))
        return
    if alertmanager_config:
        text = alerting.render_alertmanager_config(
            webhook_url=webhook, email_to=email_to, email_from=email_from, smarthost=smarthost,
            inventory=inv)
        if json:
            show(Rows([], (), extras={"alertmanager_config": text}), json)
        else:
            output.emit(text.rstrip("\n"))
        return
    log = StatePaths(inv.state_dir).broker_log
    stop = stop_event(duration)
    with bus_for(inv, connect_timeout=timeout, role="exporter") as bus:
        exporter.serve(inv, bus, port=port, addr=addr, stop=stop,
                       broker_log=log if log.exists() else None,
                       on_ready=lambda a: output.log_line(f"serving http://{a[0]}:{a[1]}/metrics",
                                                          err=True))
    output.log_line("fleet.exporter stopped", err=True)


@op(job="which job: collect (the heartbeat collector, default), audit (bus.audit), heal "
        "(fleet.heal, one pass) or supervisor (fleet.heal --watch as a long-running service)",
    every="collect, heal: interval in minutes (default 10 for collect, 5 for heal)",
    weekly="audit: run once a week (the default for the audit; at --at)",
    at="audit: the weekly day and local time (default 'Mon 03:00', cron's 0 3 * * 1)",
    listen="audit: seconds the audit listens live (default 300)",
    record="audit: audit this bus.record file instead of listening",
    kind=f"scheduler: {', '.join(schedule.KINDS)} (default: launchd on macOS, systemd where it runs, else cron)",
    remove="remove the schedule instead of installing it",
    target_dir="where unit or plist files go (default: the scheduler's user directory)")
def schedule_(c, job=schedule.COLLECT, every=None, weekly=False, at=None, listen=None, record=None,
              kind=None, remove=False, target_dir=None, inventory=None, check=False, diff=False,
              json=False):
    """Install (or --remove) the collector or the weekly audit as a scheduled job; no LLM involved."""
    inv = load(inventory)
    choice(job, schedule.JOBS, "--job")
    if kind is not None:
        choice(kind, schedule.KINDS, "--kind")
    spec = _schedule_spec(inv, job, kind or schedule.default_kind(), every=every, weekly=weekly,
                          at=at, listen=listen, record=record)
    target = Path(target_dir) if target_dir else None
    plan = (schedule.remove_plan if remove else schedule.install_plan)(spec, target_dir=target)
    run_plan("fleet.schedule", plan, check=check, diff=diff, json=json)


def _schedule_spec(inv, job, kind, *, every, weekly, at, listen, record):
    if job == schedule.COLLECT:
        if weekly or at or listen or record:
            raise UsageError("--weekly, --at, --listen and --record belong to the audit job",
                             "add --job audit")
        return schedule.make_spec(kind, every or 10, inv.path, state_dir=inv.state_dir)
    if job == schedule.AUDIT:
        if every:
            raise UsageError("the audit runs weekly; --every is for the collector",
                             "use --at 'Mon 03:00' to choose the day and time")
        return schedule.make_audit_spec(
            kind, schedule.parse_at(at or schedule.DEFAULT_AT), inv.path, state_dir=inv.state_dir,
            listen=listen, record=Path(record) if record else None)
    if job == schedule.HEAL:
        _only_every(weekly, at, listen, record, job)
        return schedule.make_heal_spec(kind, every or 5, inv.path, state_dir=inv.state_dir)
    if job == schedule.SUPERVISOR:
        _only_every(weekly, at, listen, record, job)
        if every:
            raise UsageError("the supervisor runs all the time; --every is for scheduled jobs",
                             "drop --every, or use --job heal --every N for one pass every N minutes")
        return schedule.make_supervisor_spec(kind, inv.path, state_dir=inv.state_dir)
    raise UsageError(f"unknown job {job!r}", f"use one of: {', '.join(schedule.JOBS)}")


def _only_every(weekly, at, listen, record, job) -> None:
    if weekly or at or listen or record:
        raise UsageError(f"--weekly, --at, --listen and --record belong to the audit, not to --job {job}",
                         "drop them")


fleet = Collection("fleet", version_report, health_check, status_report, config_reload,
                   bus_health, collect, broadcast)
fleet.add_task(monitor_, name="monitor")
fleet.add_task(exporter_, name="exporter")
fleet.add_task(schedule_, name="schedule")
