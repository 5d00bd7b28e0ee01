"""bus.record: keep a bounded, rotated log of bus traffic for bus.audit.

One JSON object per line, in the format of ``observe.recordfile`` (which
also reads it back for bus.audit). Rotation is by size: ``bus.jsonl`` grows
to ``max_bytes``, then becomes ``bus.jsonl.1`` (``.1`` -> ``.2`` ...) and only ``keep`` old files stay, so
the record never holds more than about ``(keep + 1) * max_bytes``. The record
may hold whatever agents leaked, so every file is created 0600.

Rotation must not erase evidence: one leak followed by enough clean traffic
once rotated the finding away and bus.audit said "clean". Before a file falls
off the end, it is audited and its findings are appended to
``bus.jsonl.findings`` (never rotated; masked like every audit finding, never
the data itself). Each discarded file adds at most ``KEPT_PER_FILE`` findings
plus one count per rule; past ``MAX_FINDINGS_BYTES`` only per-rule totals in
``bus.jsonl.findings-counts.json`` grow, so a flood of leaks cannot grow the
evidence without bound either. bus.audit reads both.

The paho callback only queues the message; the calling thread writes, so a
slow disk never stalls the network loop.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from hatchery.bus.client import BusClient, Message
from hatchery.observe.recordfile import (  # noqa: F401  (the record's format, re-exported)
    FINDINGS_SUFFIX,
    counts_path,
    entry,
    entry_payload,
    findings_path,
    read_counts,
    read_file,
    read_kept_findings,
    read_record,
    record_files,
    rotated_name,
)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5
KEPT_PER_FILE = 100
MAX_FINDINGS_BYTES = 1024 * 1024
ALL_TOPICS = "#"     # by MQTT's rules '#' never matches $SYS/...


class RotatingLog:
    """Append JSON lines to ``path``, rotating by size and keeping ``keep`` old files."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP,
                 on_discard: Optional[Callable[[Path], None]] = None):
        """``on_discard(file)`` runs before a file is deleted by rotation
        (default: keep its audit findings in ``findings_path(path)``)."""
        if max_bytes <= 0 or keep < 0:
            raise ValueError("max_bytes must be positive and keep not negative")
        self.path, self.max_bytes, self.keep = Path(path), max_bytes, keep
        self.on_discard = on_discard or (lambda file: keep_findings(file, findings_path(self.path)))
        self.rotations = 0
        self._file = self._open()

    def _open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

    def write(self, line: dict) -> None:
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        if self._file.tell() >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        self._file.close()
        for n in range(self.keep, 0, -1):
            older = rotated_name(self.path, n)
            if n == self.keep:
                self._discard(older)
            elif older.exists():
                older.replace(rotated_name(self.path, n + 1))
        if self.keep:
            self.path.replace(rotated_name(self.path, 1))
        else:
            self._discard(self.path)
        self.rotations += 1
        self._file = self._open()

    def _discard(self, file: Path) -> None:
        if file.exists():
            self.on_discard(file)
            file.unlink()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# --- findings kept when a file rotates away ---------------------------------------

def keep_findings(file: Path, into: Path) -> int:
    """Audit ``file`` (about to be deleted) and keep its findings in ``into``; how many.

    While ``into`` is under MAX_FINDINGS_BYTES it gets up to KEPT_PER_FILE
    findings and one count line per rule for the rest; past that, only the
    per-rule totals in ``counts_path(into)`` grow (a fixed-size file).
    """
    from hatchery.observe.audit import audit_lines   # its PII patterns: ~10 ms at start-up
    findings = audit_lines(read_file(file)).findings
    if not findings:
        return 0
    if into.exists() and into.stat().st_size >= MAX_FINDINGS_BYTES:
        _add_counts(counts_path(into), findings)
        return len(findings)
    kept = findings[:KEPT_PER_FILE]
    lines = [{**f.as_dict(), "from": file.name} for f in kept]
    counts: dict = {}
    for finding in findings[len(kept):]:     # the rest: one count per rule
        counts[finding.rule] = counts.get(finding.rule, 0) + 1
    lines += [{"summary": True, "rule": rule, "count": count, "from": file.name,
               "time": findings[0].time} for rule, count in sorted(counts.items())]
    fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.writelines(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return len(findings)


def _add_counts(path: Path, findings: list) -> None:
    totals = read_counts(path)
    rules = totals.setdefault("rules", {})
    for finding in findings:
        rules[finding.rule] = rules.get(finding.rule, 0) + 1
    totals["files"] = totals.get("files", 0) + 1
    totals.setdefault("first", findings[0].time)
    totals["last"] = findings[-1].time
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(totals, out)
    tmp.replace(path)


# --- recording from the bus ---------------------------------------------------

@dataclass
class RecordStats:
    messages: int = 0
    bytes: int = 0
    rotations: int = 0


def record(bus: BusClient, log: RotatingLog, *, stop: threading.Event,
           max_messages: Optional[int] = None, ready: Optional[threading.Event] = None,
           poll: float = 0.2) -> RecordStats:
    """Write every message on the bus to ``log`` until ``stop`` is set.

    ``bus`` is connected (with the recorder's credentials); ``ready`` is set
    once the broker has acknowledged the subscription. Retained messages
    arrive first, flagged ``retain``.
    """
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    stats = RecordStats()
    with bus.listen([ALL_TOPICS], inbox.put):
        if ready:
            ready.set()
        while not stop.is_set() and not _enough(stats, max_messages):
            _drain(inbox, log, stats, poll)
    _drain(inbox, log, stats, 0)       # what arrived before the unsubscribe
    log.flush()
    stats.rotations = log.rotations
    return stats


def _enough(stats: RecordStats, max_messages: Optional[int]) -> bool:
    return max_messages is not None and stats.messages >= max_messages


def _drain(inbox: queue.SimpleQueue, log: RotatingLog, stats: RecordStats,
           wait: float) -> None:
    try:
        message: Message = inbox.get(timeout=wait) if wait else inbox.get_nowait()
    except queue.Empty:
        return
    while True:
        log.write(entry(message.topic, message.payload, retain=message.retain,
                        when=message.received, properties=message.properties))
        stats.messages += 1
        stats.bytes += len(message.payload)
        try:
            message = inbox.get_nowait()
        except queue.Empty:
            log.flush()
            return
