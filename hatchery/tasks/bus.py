"""invoke bus.*: record bus traffic and audit it against the contract.

Both log in as the ``recorder`` user (ACL: read ``#``) when the broker
requires credentials. ``bus.audit`` exits 1 when it finds anything, so a
weekly cron job can alert on its status alone.
"""

from __future__ import annotations

import threading
from pathlib import Path

from invoke import Collection

from hatchery.core.results import Rows
from hatchery.errors import UsageError
from hatchery.observe.record import (
    ALL_TOPICS,
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    RotatingLog,
)
from hatchery.observe.record import record as record_bus
from hatchery.observe.recordfile import properties_json, rfc3339
from hatchery.tasks import output
from hatchery.tasks.common import fail_unless, load, op, show

RECORDER = "recorder"
FINDING_COLUMNS = ["time", "topic", "rule", "detail"]


def _bus(inv, timeout: float):
    from hatchery.bus.connection import bus_for    # only when a task uses the bus
    return bus_for(inv, connect_timeout=timeout, role=RECORDER if inv.broker.auth else None)


@op(duration="seconds to record (required: the record is bounded in time too)",
    out="the record file (JSON lines; rotated as FILE.1, FILE.2, ...)",
    max_bytes="rotate when the file reaches this size (default 10 MiB)",
    keep="rotated files to keep (default 5)")
def record(c, duration, out, max_bytes=DEFAULT_MAX_BYTES, keep=DEFAULT_KEEP, inventory=None,
           json=False, timeout=5.0):
    """Record every message on the bus for --duration seconds into a bounded, rotated log."""
    inv = load(inventory)
    seconds = float(duration)
    log = RotatingLog(Path(out), max_bytes=max_bytes, keep=keep)
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    try:
        with _bus(inv, timeout) as bus:
            timer.start()
            stats = record_bus(bus, log, stop=stop)
    finally:
        timer.cancel()
        log.close()
    summary = {"out": str(out), "seconds": seconds, "messages": stats.messages,
               "bytes": stats.bytes, "rotations": stats.rotations}
    if json:
        show(Rows([summary], tuple(summary)), json)
    else:
        output.emit(f"recorded {output.plural(stats.messages, 'message')}, "
                    f"{output.plural(stats.bytes, 'byte')} in {seconds:g}s to {out} "
                    f"({output.plural(stats.rotations, 'rotation')})")


@op(record="audit this record file (written by bus.record), rotated files included",
    listen="instead, listen live for this many seconds and audit what passes")
def audit(c, record=None, listen=None, inventory=None, json=False, timeout=5.0):
    """Check bus traffic against the contract: topics, verbs, JSON, size, free text, personal data."""
    inv = load(inventory)
    if bool(record) == bool(listen):
        raise UsageError("give exactly one of --record FILE or --listen SECONDS",
                         "e.g. invoke bus.audit --record bus.jsonl")
    if record:
        if not Path(record).exists():
            raise UsageError(f"no record at {record}", "write one with: invoke bus.record")
        from hatchery.observe.audit import audit_record   # its PII patterns cost ~8 ms
        result = audit_record(Path(record), manager=inv.manager)
    else:
        result = _audit_live(inv, listen, timeout)
    if json:
        show(result, json)
    else:
        output.findings(result)
    fail_unless(result.ok)


def _audit_live(inv, seconds: float, timeout: float):
    from hatchery.observe.audit import BusMessage, audit_messages
    with _bus(inv, timeout) as bus:
        messages = bus.subscribe_collect([ALL_TOPICS], seconds)
    return audit_messages([BusMessage(m.topic, m.payload, rfc3339(m.received), m.retain,
                                      properties_json(m.properties) if m.properties else None)
                           for m in messages], manager=inv.manager)


bus = Collection("bus", record, audit)
