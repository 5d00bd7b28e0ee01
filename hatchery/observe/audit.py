"""bus.audit: check recorded bus traffic against the contract and the ADR.

Every message is checked for what the fleet ADR allows: a known topic, a JSON
object under the size limit with its kind's exact schema, a verb from the
vocabulary, only the MQTT v5 properties its topic may carry
(``contract.ALLOWED_PROPERTIES``; a user property is always a finding) — and
for what it prohibits: free text, personal data and secrets anywhere in the
payload or the properties (``hatchery.security.content`` and ``pii``). A
finding names the time, the topic, the rule and where in the payload; it
never repeats the data it found, only a mask. Records are read through
``observe.recordfile``; the recorder (``observe.record``) imports this module,
never the reverse.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from agent_kit import contract
from hatchery.core.results import Result
from hatchery.core.words import plural
from hatchery.errors import EXIT_FAILED
from hatchery.observe.recordfile import (
    BINARY_PROPERTIES,
    binary_property,
    entry_payload,
    entry_properties,
    read_kept_findings,
    read_record,
)
from hatchery.security import content, pii

# Rule names (beside the pii rules: email, phone, card-number, iban, national-id,
# secret-token, high-entropy).
UNKNOWN_TOPIC, OVERSIZED, NOT_JSON, SCHEMA = "unknown-topic", "oversized", "not-json", "schema"
UNKNOWN_VERB, FREE_TEXT, AGENT_MISMATCH = "unknown-verb", content.FREE_TEXT, "agent-mismatch"
CORRUPT_RECORD = "corrupt-record"
# MQTT v5 properties: any the contract does not allow on the topic, and any user
# property (free key/value text beside the payload) wherever it is.
PROPERTY, USER_PROPERTY = "mqtt-property", "user-property"
SCAN_LIMIT = 65536       # bytes of an oversized or non-JSON payload scanned for data

SIGNED_COMMAND_SCHEMA = {**contract.COMMAND_SCHEMA, "sig": (str, False)}


@dataclass(frozen=True)
class Finding:
    time: str
    topic: str        # redacted: a topic can carry data too
    rule: str
    detail: str       # masked; never the data itself

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def __str__(self) -> str:
        return f"{self.time} {self.topic}: {self.rule}: {self.detail}"


@dataclass
class AuditResult(Result):
    findings: list = field(default_factory=list)
    messages: int = 0

    columns: tuple = ("time", "topic", "rule", "detail")

    @property
    def items(self) -> list:
        return self.findings

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def problems(self) -> list:
        return [str(f) for f in self.findings]

    def counts(self) -> dict:
        """Findings per rule, most frequent first."""
        return dict(Counter(f.rule for f in self.findings).most_common())

    def exit_status(self) -> int:
        """0 when clean, EXIT_FAILED (1) when anything was found."""
        return 0 if self.ok else EXIT_FAILED

    def extras(self) -> dict:
        return {"messages": self.messages, "counts": self.counts()}


@dataclass(frozen=True)
class BusMessage:
    topic: str
    payload: bytes
    time: str = ""
    retain: bool = False
    properties: Optional[dict] = None     # MQTT v5 properties, as recordfile.properties_json


# --- entry points ---------------------------------------------------------------

def audit_record(path: Path, *, manager: Optional[str] = None) -> AuditResult:
    """Audit a record written by bus.record (with its rotated files), plus the
    findings kept from files that rotated away (``record.findings_path``)."""
    result = audit_lines(read_record(path), manager=manager)
    result.findings[:0] = list(kept_findings(path))
    return result


def kept_findings(path: Path) -> Iterator[Finding]:
    """Findings of traffic that rotated out of the record: each kept one, and the
    per-rule counts of each discarded file beyond those."""
    for line in read_kept_findings(path):
        if "corrupt" in line:
            yield Finding("", "", CORRUPT_RECORD, f"{line.get('file')} line {line['corrupt']}")
        elif line.get("summary"):
            count = line.get("count")
            count = count if isinstance(count, int) and not isinstance(count, bool) else "?"
            yield Finding(str(line.get("time", ""))[:40], "(rotated away)", str(line.get("rule", "?"))[:40],
                          f"{plural(count, 'finding')} in {str(line.get('from', '?'))[:60]} before it rotated away")
        else:
            yield Finding(str(line.get("time", ""))[:40], str(line.get("topic", ""))[:200],
                          str(line.get("rule", "?"))[:40],
                          f"{str(line.get('detail', ''))[:200]} (kept from {str(line.get('from', '?'))[:60]})")


def audit_lines(lines: Iterable[dict], *, manager: Optional[str] = None) -> AuditResult:
    result = AuditResult()
    for line in lines:
        if "corrupt" in line:
            result.findings.append(Finding("", "", CORRUPT_RECORD,
                                           f"{line.get('file')} line {line['corrupt']}"))
            continue
        message = BusMessage(str(line.get("topic", "")), entry_payload(line),
                             str(line.get("time", "")), bool(line.get("retain")),
                             entry_properties(line))
        result.findings += check_message(message, manager=manager)
        result.messages += 1
    return result


def audit_messages(messages: Iterable[BusMessage], *,
                   manager: Optional[str] = None) -> AuditResult:
    result = AuditResult()
    for message in messages:
        result.findings += check_message(message, manager=manager)
        result.messages += 1
    return result


def check_message(message: BusMessage, *, manager: Optional[str] = None) -> list:
    """Every finding for one message (empty when it keeps the contract)."""
    topic = pii.redact(message.topic)
    problems = list(_contract_problems(message, manager))
    return [Finding(message.time, topic, rule, detail) for rule, detail in problems]


# --- the contract -----------------------------------------------------------------

def _contract_problems(message: BusMessage, manager: Optional[str]) -> Iterator[tuple]:
    kind = topic_kind(message.topic, manager)
    if kind is None:
        yield UNKNOWN_TOPIC, "not a fleet or broadcast topic"
    if message.properties:
        yield from _property_problems(message.properties, kind)
    if not message.payload and kind in ("heartbeat", "status"):
        return    # an empty payload clears a retained heartbeat or state: allowed
    if len(message.payload) > contract.MAX_PAYLOAD_BYTES:
        yield OVERSIZED, f"{len(message.payload)} bytes > {contract.MAX_PAYLOAD_BYTES}"
    payload = _decode(message.payload)
    if payload is None:
        yield NOT_JSON, f"{len(message.payload)} bytes that are not a JSON object"
        yield from content.text_problems(message.payload[:SCAN_LIMIT].decode("utf-8", "replace"), "$")
        return
    if kind is not None:
        yield from _schema_problems(payload, kind, message.topic, manager)
    yield from content.problems(payload)


def _property_problems(props: dict, kind: Optional[str]) -> Iterator[tuple]:
    """Each property the topic may not carry, any user property, and what their
    values hold, scanned like payload text (under ``$props``)."""
    allowed = contract.ALLOWED_PROPERTIES.get(kind, frozenset())
    for name in sorted(props):
        if name == "UserProperty":
            pairs = props[name] if isinstance(props[name], list) else [props[name]]
            yield USER_PROPERTY, (f"{plural(len(pairs), 'user property pair')}: key/value text beside "
                                  "the payload that no schema checks")
        elif name not in allowed:
            yield PROPERTY, (f"{content.safe_key(name)} on a {kind or 'non-fleet'} topic; the "
                             f"contract allows {', '.join(sorted(allowed)) or 'no properties'} there")
    yield from content.problems(_readable(props), "$props")


def _readable(props: dict) -> dict:
    """Properties with binary values (kept as base64) decoded when they are UTF-8 text."""
    readable = dict(props)
    for name in BINARY_PROPERTIES & props.keys():
        try:
            readable[name] = binary_property(props[name]).decode("utf-8")
        except UnicodeDecodeError:
            pass      # binary: scanned as its base64 (pii decodes what decodes to text)
    return readable


def topic_kind(topic: str, manager: Optional[str]) -> Optional[str]:
    """heartbeat/status/alert/command for fleet topics, 'broadcast', or None."""
    parsed = contract.parse_topic(topic)
    if parsed:
        return parsed[1]
    head, sep, tail = topic.partition("/")
    if sep and tail == "broadcast" and (head == manager or
                                        (manager is None and contract.NAME_RE.fullmatch(head))):
        return "broadcast"
    return None


def _decode(data: bytes) -> Optional[dict]:
    try:
        return contract.decode(data, limit=max(len(data), 1))
    except (contract.ContractError, RecursionError):   # deep nesting overflows json
        return None


def _schema_problems(payload: dict, kind: str, topic: str, manager: Optional[str] = None) -> Iterator[tuple]:
    try:
        _VALIDATORS[kind](payload)
    except contract.ContractError as exc:
        yield (UNKNOWN_VERB if exc.reason == "unknown-verb" else SCHEMA,
               exc.reason + _extra_keys(payload, kind))
        return
    if kind == "status" and "verb" in payload and payload["verb"] not in contract.VERBS:
        yield UNKNOWN_VERB, f"reply to verb {content.safe_text(payload['verb'])}"
    if kind == "alert" and manager and topic.split("/")[1] == manager:
        return    # fleet.heal's alerts: on the manager's own topic, naming the healed agent
    if kind not in ("command", "broadcast") and payload.get("agent") != topic.split("/")[1]:
        yield AGENT_MISMATCH, "payload 'agent' differs from the topic's agent"


def _validate_command(payload: dict) -> dict:
    """contract.validate_command, allowing the optional signature."""
    contract.check_schema(payload, SIGNED_COMMAND_SCHEMA)
    unsigned = {k: v for k, v in payload.items() if k != "sig"}
    return contract.validate_command(unsigned)


_VALIDATORS = {"command": _validate_command, "broadcast": _validate_command,
               "heartbeat": contract.validate_heartbeat, "status": contract.validate_status,
               "alert": contract.validate_alert}


def _extra_keys(payload: dict, kind: str) -> str:
    schema = {"command": SIGNED_COMMAND_SCHEMA, "broadcast": SIGNED_COMMAND_SCHEMA,
              "heartbeat": contract.HEARTBEAT_SCHEMA, "alert": contract.ALERT_SCHEMA,
              "status": _status_schema(payload)}[kind]
    extra = sorted(set(payload) - set(schema)) if schema else []
    return f" ({', '.join(content.safe_key(k) for k in extra)})" if extra else ""


def _status_schema(payload: dict) -> Optional[dict]:
    return {"state": contract.STATE_SCHEMA, "reply": contract.REPLY_SCHEMA}.get(
        contract.classify_status(payload))
