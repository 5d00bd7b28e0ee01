"""The bus record's files: one line per message, and the findings kept from rotated files.

Both ``observe.record`` (which writes them) and ``observe.audit`` (which reads
them) import this module, and it imports neither: the format sits below the
two, so the audit never imports the recorder. One JSON object per line::

    {"time": "2026-03-18T21:30:00.123Z", "topic": "fleet/a/heartbeat",
     "size": 187, "retain": true, "text": "{...}"}

``text`` holds a UTF-8 payload as is; anything else is kept as ``b64``. A
message that carried MQTT v5 properties has them in ``props`` (``properties_json``:
the properties by their paho names, binary values in base64), because an agent
can put data there as well as in the payload.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from hatchery.core.words import plural

FINDINGS_SUFFIX = ".findings"
# Properties whose value is binary (MQTT "Binary Data"): kept as base64 text.
BINARY_PROPERTIES = frozenset({"CorrelationData", "AuthenticationData"})


def entry(topic: str, payload: bytes, *, retain: bool, when: float,
          properties: Optional[dict] = None) -> dict:
    """The record line for one message (``properties``: the v5 properties it carried)."""
    line = {"time": rfc3339(when), "topic": topic, "size": len(payload), "retain": retain}
    try:
        line["text"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        line["b64"] = base64.b64encode(payload).decode()
    if properties:
        line["props"] = properties_json(properties)
    return line


def entry_payload(line: dict) -> bytes:
    """The payload bytes of a record line (inverse of ``entry``)."""
    if "b64" in line:
        return base64.b64decode(line["b64"])
    return str(line.get("text", "")).encode("utf-8", "surrogatepass")


def entry_properties(line: dict) -> Optional[dict]:
    """The v5 properties of a record line, as ``properties_json`` wrote them (None: none)."""
    props = line.get("props")
    return props if isinstance(props, dict) and props else None


def properties_json(properties: dict) -> dict:
    """Properties as JSON values: binary ones in base64, pairs as two-item lists."""
    out = {}
    for name, value in properties.items():
        if isinstance(value, (bytes, bytearray)):
            value = base64.b64encode(bytes(value)).decode()
        elif isinstance(value, (list, tuple)):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[str(name)] = value
    return out


def binary_property(value: object) -> bytes:
    """The bytes of a binary property as ``properties_json`` wrote it (b'' if unreadable)."""
    try:
        return base64.b64decode(str(value), validate=True)
    except (ValueError, binascii.Error):
        return b""


def rfc3339(when: float) -> str:
    moment = datetime.fromtimestamp(when, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
        yield from read_file(file)


def read_file(file: Path) -> Iterator[dict]:
    """The lines of one record file (see ``read_record``)."""
    with open(file, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, 1):
            yield parse_line(text, number, file.name)


def parse_line(text: str, number: int, name: str) -> dict:
    try:
        line = json.loads(text)
    except ValueError:
        return {"corrupt": number, "file": name}
    return line if isinstance(line, dict) else {"corrupt": number, "file": name}


# --- findings kept when a file rotated away ---------------------------------------

def findings_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + FINDINGS_SUFFIX)


def counts_path(findings_file: Path) -> Path:
    return findings_file.with_name(findings_file.name + "-counts.json")


def read_counts(path: Path) -> dict:
    """Per-rule totals of findings beyond the findings file's limit ({} when none)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) and isinstance(value.get("rules", {}), dict) else {}


def read_kept_findings(path: Path) -> Iterator[dict]:
    """The findings kept from rotated-away files of the record at ``path``
    (then the totals past the limit, as summary lines)."""
    kept = findings_path(path)
    if kept.exists():
        with open(kept, encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f, 1):
                yield parse_line(text, number, kept.name)
    totals = read_counts(counts_path(kept))
    for rule, count in sorted(totals.get("rules", {}).items()):
        yield {"summary": True, "rule": rule, "count": count, "time": totals.get("last", ""),
               "from": plural(totals.get("files", "?"), "rotated file")}
