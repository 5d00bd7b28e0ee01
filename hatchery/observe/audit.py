"""bus.audit: check recorded bus traffic against the contract and the ADR.

Every message is checked for what the fleet ADR allows: a known topic, a JSON
object under the size limit with its kind's exact schema, a verb from the
vocabulary — and for what it prohibits: free text, personal data and secrets
(``hatchery.security.pii``). A finding names the time, the topic, the rule and
where in the payload; it never repeats the data it found, only a mask.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

from agent_kit import contract
from hatchery.core.results import Result
from hatchery.errors import EXIT_FAILED
from hatchery.observe.record import entry_payload, read_kept_findings, read_record
from hatchery.security import pii

# Rule names (beside the pii rules: email, phone, card-number, iban, national-id,
# secret-token, high-entropy).
UNKNOWN_TOPIC, OVERSIZED, NOT_JSON, SCHEMA = "unknown-topic", "oversized", "not-json", "schema"
UNKNOWN_VERB, FREE_TEXT, AGENT_MISMATCH = "unknown-verb", "free-text", "agent-mismatch"
CORRUPT_RECORD = "corrupt-record"

# Fields that are random by design (signatures, digests, ids, commit hashes):
# exempt from the high-entropy rule only, still scanned for named secrets.
OPAQUE_KEYS = frozenset({"sig", "digest", "id", "version"})
PROSE_WORDS = 5          # this many words, most of them alphabetic, read as a sentence
LONG_STRING = 200        # no field of the contract needs a string this long
SCAN_LIMIT = 65536       # bytes of an oversized or non-JSON payload scanned for data
_SAFE_KEY = re.compile(r"\A[A-Za-z_][A-Za-z0-9_-]{0,31}\Z")

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
                          f"{count} finding(s) in {str(line.get('from', '?'))[:60]} before it rotated away")
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
                             str(line.get("time", "")), bool(line.get("retain")))
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
    if not message.payload and kind in ("heartbeat", "status"):
        return    # an empty payload clears a retained heartbeat or state: allowed
    if len(message.payload) > contract.MAX_PAYLOAD_BYTES:
        yield OVERSIZED, f"{len(message.payload)} bytes > {contract.MAX_PAYLOAD_BYTES}"
    payload = _decode(message.payload)
    if payload is None:
        yield NOT_JSON, f"{len(message.payload)} bytes that are not a JSON object"
        yield from _text_problems(message.payload[:SCAN_LIMIT].decode("utf-8", "replace"), "$")
        return
    if kind is not None:
        yield from _schema_problems(payload, kind, message.topic, manager)
    yield from _content_problems(payload)


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
        yield UNKNOWN_VERB, f"reply to verb {_safe_text(payload['verb'])}"
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
    return f" ({', '.join(_safe_key(k) for k in extra)})" if extra else ""


def _status_schema(payload: dict) -> Optional[dict]:
    return {"state": contract.STATE_SCHEMA, "reply": contract.REPLY_SCHEMA}.get(
        contract.classify_status(payload))


# --- content: free text, personal data, secrets ---------------------------------

def _content_problems(payload: dict) -> list:
    """(rule, detail) for personal data, secrets and free text anywhere in the payload,
    the values one by one, then neighbouring values joined (split fields)."""
    problems: list = []
    strings: list = []          # string values, in order, for the joined scan
    runs: list = []             # runs of neighbouring short integers
    run: list = []
    low, high = JOIN_PART_DIGITS
    for path, key, value in _walk(payload):
        if type(value) is str:
            if key and not _is_timestamp(value):
                if key not in FIXED_KEYS:
                    strings.append(value)
                problems += _string_problems(value, path, key)
            elif not key:       # a dict key: text too, but it does not break a run
                problems += _string_problems(value, path, key)
                continue
            number = None
        else:
            number = _whole_number(value)
        if number is not None:
            if abs(number) >= 10**7:    # a card or phone as a number
                problems += [(h.rule, f"{h.kind} {h.masked} in {path}")
                             for h in pii.bare_number_hits(number)]
            if 0 <= number and low <= len(str(number)) <= high:
                run.append(str(number))
                continue
        if _card_sized(run):
            runs.append(run)
        run = []
    if _card_sized(run):
        runs.append(run)
    if len(strings) > 1:
        runs.append(strings)
    if runs:
        problems += _joined_problems(runs, {_masked(detail) for _, detail in problems})
    return problems


def _card_sized(run: list) -> bool:
    # integers joined can only make a card number (a phone needs '+' or separators)
    return len(run) > 1 and 13 <= sum(map(len, run)) <= 19


def _masked(detail: str) -> str:
    return detail.split(" in ")[0].rsplit(" ", 1)[-1]


def _whole_number(value) -> Optional[int]:
    """An int, or a float that holds a whole number (a card sent as 4111111111111111.0)."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


# Split fields: the parts of an address or a card number in neighbouring fields.
# Values of these keys are the topic's agent or a word of the vocabulary (other
# values are schema or agent-mismatch findings already): they join nothing.
FIXED_KEYS = frozenset({"agent", "kind", "verb", "state"})
JOIN_PART_DIGITS = (2, 6)      # a card split into integers: each part this many digits


def _joined_problems(runs: list, found: set) -> list:
    """Findings in neighbouring values joined that no single value holds: a hit
    must cross a boundary between two values. Masked, like every finding."""
    problems = []
    for parts in runs:
        joined, bounds, own, start = "".join(parts), [], [], 0
        for part in parts:
            own += [(h.rule, h.span[0] + start, h.span[1] + start) for h in pii.scan_plain(part)]
            start += len(part)
            bounds.append(start)
        for hit in pii.scan_plain(joined):
            crosses = any(hit.span[0] < b < hit.span[1] for b in bounds[:-1])
            # a hit that only extends one value's own hit is that value's finding
            extends = any(rule == hit.rule and hit.span[0] < end and begin < hit.span[1]
                          for rule, begin, end in own)
            if crosses and not extends and hit.masked not in found:
                found.add(hit.masked)
                problems.append((hit.rule, f"{hit.kind}, split across fields {hit.masked} in $"))
    return problems


def _is_timestamp(value: str) -> bool:
    # An RFC 3339 timestamp holds digits and separators only: nothing to scan,
    # and its 17 digits would otherwise wake every digit detector.
    return 20 <= len(value) <= 35 and value[4:5] == "-" and \
        contract._RFC3339_RE.fullmatch(value) is not None


def _string_problems(value: str, path: str, key: str) -> list:
    problems = []
    words = value.split()
    if len(words) >= PROSE_WORDS and sum(w.isalpha() for w in words) >= PROSE_WORDS - 1:
        problems.append((FREE_TEXT, f"{len(words)} words of text in {path}"))
    elif len(value) > LONG_STRING:
        problems.append((FREE_TEXT, f"{len(value)}-character string in {path}"))
    hits = pii.scan(value, entropy=key not in OPAQUE_KEYS)
    return problems + [(h.rule, f"{h.kind} {h.masked} in {path}") for h in hits] if hits else problems


def _text_problems(text: str, path: str, *, entropy: bool = True) -> Iterator[tuple]:
    for hit in pii.scan(text, entropy=entropy):
        yield hit.rule, f"{hit.kind} {hit.masked} in {path}"


def _walk(value, path: str = "$", key: str = "", depth: int = 0) -> Iterator[tuple]:
    """(path, key, leaf) for every leaf and every key of a decoded payload."""
    if depth > 32:
        return    # json already refused anything deeper than the interpreter allows
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, "", k                       # keys are text too
            yield from _walk(v, f"{path}.{_safe_key(k)}", k, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]", key, depth + 1)
    else:
        yield path, key, value


@functools.lru_cache(maxsize=4096)   # payloads repeat the same few keys
def _safe_key(key: str) -> str:
    """A key as it may appear in a report: itself if it is a plain name, else '?'."""
    return key if _SAFE_KEY.fullmatch(key) and not pii.scan(key) else "?"


def _safe_text(value: object) -> str:
    text = json.dumps(value)[:40] if not isinstance(value, str) else value[:40]
    return repr(text) if _SAFE_KEY.fullmatch(text) and not pii.scan(text) else "(not shown)"
