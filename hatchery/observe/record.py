"""bus.record: keep a bounded, rotated log of bus traffic for bus.audit.

One JSON object per line::

    {"time": "2026-03-18T21:30:00.123Z", "topic": "fleet/a/heartbeat",
     "size": 187, "retain": true, "text": "{...}"}

``text`` holds a UTF-8 payload as is; anything else is kept as ``b64``.
Rotation is by size: ``bus.jsonl`` grows to ``max_bytes``, then becomes
``bus.jsonl.1`` (``.1`` -> ``.2`` ...) and only ``keep`` old files stay, so
the record never holds more than about ``(keep + 1) * max_bytes``. The record
may hold whatever agents leaked, so every file is created 0600.

The paho callback only queues the message; the calling thread writes, so a
slow disk never stalls the network loop.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from hatchery.bus.client import BusClient, Message

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_KEEP = 5
ALL_TOPICS = "#"     # by MQTT's rules '#' never matches $SYS/...


def entry(topic: str, payload: bytes, *, retain: bool, when: float) -> dict:
    """The record line for one message."""
    line = {"time": _rfc3339(when), "topic": topic, "size": len(payload), "retain": retain}
    try:
        line["text"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        line["b64"] = base64.b64encode(payload).decode()
    return line


def entry_payload(line: dict) -> bytes:
    """The payload bytes of a record line (inverse of ``entry``)."""
    if "b64" in line:
        return base64.b64decode(line["b64"])
    return str(line.get("text", "")).encode("utf-8", "surrogatepass")


def _rfc3339(when: float) -> str:
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class RotatingLog:
    """Append JSON lines to ``path``, rotating by size and keeping ``keep`` old files."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 keep: int = DEFAULT_KEEP):
        if max_bytes <= 0 or keep < 0:
            raise ValueError("max_bytes must be positive and keep not negative")
        self.path, self.max_bytes, self.keep = Path(path), max_bytes, keep
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
                older.unlink(missing_ok=True)
            elif older.exists():
                older.replace(rotated_name(self.path, n + 1))
        if self.keep:
            self.path.replace(rotated_name(self.path, 1))
        else:
            self.path.unlink()
        self.rotations += 1
        self._file = self._open()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def rotated_name(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def record_files(path: Path) -> list:
    """The record's files, oldest first (``.N`` ... ``.1``, then ``path``)."""
    path = Path(path)
    rotated = []
    n = 1
    while rotated_name(path, n).exists():
        rotated.append(rotated_name(path, n))
        n += 1
    return rotated[::-1] + ([path] if path.exists() else [])


def read_record(path: Path) -> Iterator[dict]:
    """Every line of the record, oldest first; a line that is not JSON yields
    ``{"corrupt": <line number>, "file": name}`` (a crash can truncate the last line)."""
    for file in record_files(path):
        with open(file, encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f, 1):
                yield _parse_line(text, number, file.name)


def _parse_line(text: str, number: int, name: str) -> dict:
    try:
        line = json.loads(text)
    except ValueError:
        return {"corrupt": number, "file": name}
    return line if isinstance(line, dict) else {"corrupt": number, "file": name}


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
                        when=message.received))
        stats.messages += 1
        stats.bytes += len(message.payload)
        try:
            message = inbox.get_nowait()
        except queue.Empty:
            log.flush()
            return
