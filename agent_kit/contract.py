"""The message contract, written once.

Topics, verbs, payload schemas and their validation. The control side imports
this module; nothing here imports the control side. The allowed/prohibited
lists of the fleet ADR are enforced by *shape*: every payload is a JSON object
with a fixed set of keys and types, so there is no field that could carry free
text between agents.

The verbs, schemas, validators and payload makers are here; the bytes and
timestamps (``codec``) and names and topics (``topics``) are beside it and
re-exported, so ``contract.X`` is the one way to reach any of them.
"""

from __future__ import annotations

import re

# The bytes, the timestamps and the error every check raises (agent_kit.codec),
# and names and topics (agent_kit.topics): re-exported, as this is the contract's
# one public face (``contract.X``).
from .codec import (CHECKED_JSON, MAX_NUMBER, MAX_PAYLOAD_BYTES, RFC3339_RE, ContractError,  # noqa: F401
                    decode, encode, now_rfc3339, parse_rfc3339, parse_rfc3339_uncached)
from .topics import (ALLOWED_PROPERTIES, COMMAND_PROPERTIES, FLEET_PREFIX, KINDS,  # noqa: F401
                     NAME_RE, broadcast_topic, check_name, disallowed_properties,
                     name_problem, parse_topic, properties_kind, topic)

SCHEMA_VERSION = 1

VERBS = ("health-check", "version-report", "config-reload", "status-report")

COMMAND_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
# A handler instance: a random token the runtime gives each handler it starts
# (agent_kit.config ``instance``), carried in its birth message, Will, heartbeats
# and replies, so the control side can tell the handler it started from anything
# else speaking with the agent's login.
INSTANCE_RE = re.compile(r"\A[a-z0-9]{8,32}\Z")

# A timestamp further ahead of the reader's clock than this is suspect: a
# heartbeat dated in the future must not look fresh forever.
FUTURE_SLACK_S = 10.0

STATE_ONLINE = "online"
STATE_OFFLINE = "offline"


# --- schemas ----------------------------------------------------------------
# A schema maps each allowed key to (type or tuple of types, required).
# Keys outside the schema are refused: that is what keeps free text off the bus.

_NUM = (int, float)
# ``sig``: HMAC-SHA256 over the other fields (agent_kit.signing); agents that
# hold a key refuse commands without a valid one.
COMMAND_SCHEMA = {"v": (int, True), "id": (str, True), "verb": (str, True),
                  "ts": (str, True), "sig": (str, False)}
HEARTBEAT_SCHEMA = {
    "v": (int, True), "ts": (str, True), "agent": (str, True), "ok": (bool, True),
    "uptime": (_NUM, True), "mem_kb": (int, False), "cpu": (_NUM, False),
    "errors": (dict, False), "interval": (_NUM, False), "version": (str, False),
    "instance": (str, False),
}
STATE_SCHEMA = {"v": (int, True), "ts": (str, True), "agent": (str, True),
                "kind": (str, True), "state": (str, True), "instance": (str, False)}
REPLY_SCHEMA = {"v": (int, True), "ts": (str, True), "agent": (str, True),
                "kind": (str, True), "id": (str, True), "verb": (str, True),
                "ok": (bool, True), "result": (dict, False), "error": (str, False),
                "instance": (str, False)}
ALERT_SCHEMA = {"v": (int, True), "ts": (str, True), "agent": (str, True),
                "kind": (str, True), "code": (str, True), "reason": (str, False),
                "count": (int, False), "suppressed": (int, False),
                "size": (int, False), "digest": (str, False),
                "topic": (str, False), "level": (str, False)}


def check_schema(payload: dict, schema: dict) -> dict:
    """Raise ContractError unless ``payload`` has exactly the schema's shape."""
    if not payload.keys() <= schema.keys():
        extra = sorted(set(payload) - set(schema))
        raise ContractError("extra-keys", ", ".join(extra)[:80])
    for key, (types, required) in schema.items():
        if key not in payload:
            if required:
                raise ContractError("missing-" + key)
            continue
        value = payload[key]
        # bool is an int in Python; never accept it where a number is meant
        if not isinstance(value, types) or (value.__class__ is bool and types is not bool):
            raise ContractError("bad-type", key)
    if payload["v"] != SCHEMA_VERSION:
        raise ContractError("bad-version", str(payload["v"])[:10])
    parse_rfc3339(payload["ts"])
    if "instance" in payload and not INSTANCE_RE.fullmatch(payload["instance"]):
        raise ContractError("bad-instance")
    return payload


# --- commands ---------------------------------------------------------------

def make_command(verb: str, command_id: str, ts: str | None = None) -> dict:
    """A command payload; raises ContractError for a verb off the vocabulary."""
    command = {"v": SCHEMA_VERSION, "id": command_id, "verb": verb,
               "ts": ts or now_rfc3339()}
    return validate_command(command)


def validate_command(payload: dict) -> dict:
    """Check a decoded command against schema and vocabulary."""
    check_schema(payload, COMMAND_SCHEMA)
    if payload["verb"] not in VERBS:
        raise ContractError("unknown-verb")
    if not COMMAND_ID_RE.fullmatch(payload["id"]):
        raise ContractError("bad-id")
    return payload


def parse_command(data: bytes, limit: int = MAX_PAYLOAD_BYTES) -> dict:
    """Bytes from a command or broadcast topic to a valid command, or ContractError."""
    return validate_command(decode(data, limit))


# --- agent-side payloads ------------------------------------------------------

def check_instance(value: object) -> str:
    """Return ``value`` if it is a handler instance token, else raise ContractError."""
    if not isinstance(value, str) or not INSTANCE_RE.fullmatch(value):
        raise ContractError("bad-instance")
    return value


def _with_instance(payload: dict, instance: str | None) -> dict:
    if instance is not None:
        payload["instance"] = check_instance(instance)
    return payload


def make_state(agent: str, state: str, instance: str | None = None) -> dict:
    """Retained online/offline state (birth message and Last Will)."""
    return _with_instance({"v": SCHEMA_VERSION, "ts": now_rfc3339(), "agent": agent,
                           "kind": "state", "state": state}, instance)


def make_reply(agent: str, command: dict, ok: bool, result: dict | None = None,
               error: str | None = None, instance: str | None = None) -> dict:
    """A reply on the status topic, carrying the id of the command it answers."""
    reply = {"v": SCHEMA_VERSION, "ts": now_rfc3339(), "agent": agent,
             "kind": "reply", "id": command["id"], "verb": command["verb"], "ok": ok}
    if result is not None:
        reply["result"] = result
    if error is not None:
        reply["error"] = error
    return _with_instance(reply, instance)


def make_alert(agent: str, code: str, **fields) -> dict:
    """An alert; fields are limited to ALERT_SCHEMA's keys."""
    alert = {"v": SCHEMA_VERSION, "ts": now_rfc3339(), "agent": agent,
             "kind": "alert", "code": code, **fields}
    return validate_alert(alert)


def classify_status(payload: dict) -> str:
    """'state', 'reply' or 'event' for a decoded status payload."""
    kind = payload.get("kind")
    return kind if kind in ("state", "reply") else "event"


# --- slugs: the only strings an agent may volunteer ---------------------------
# Events, alerts and heartbeats carry numbers, booleans and short slugs. A slug
# cannot hold a sentence, so it cannot hold a name, a transcript or a prompt.

SLUG_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
KEY_RE = re.compile(r"\A[a-z][a-z0-9_-]{0,31}\Z")
DIGEST_RE = re.compile(r"\A[0-9a-f]{8,64}\Z")
MAX_EVENT_FIELDS = 16
# Keys that are the envelope of an event, not its data.
EVENT_ENVELOPE = ("v", "ts", "agent", "kind", "event")


def is_slug(value: object) -> bool:
    return isinstance(value, str) and bool(SLUG_RE.fullmatch(value))


def check_slug(key: str, value: object) -> str:
    """Return ``value`` if it is a short slug, else raise ContractError('not-slug')."""
    if not is_slug(value):
        raise ContractError("not-slug", key)
    return value


def check_scalar(key: str, value: object) -> object:
    """A number, a bool or a slug: the only values an agent-published field may hold."""
    if not KEY_RE.fullmatch(key):
        raise ContractError("bad-key", key[:32])
    if isinstance(value, (bool, int, float)):
        return value
    return check_slug(key, value)


# --- heartbeat ----------------------------------------------------------------

def make_heartbeat(agent: str, ok: bool, uptime: float, *, mem_kb: int | None = None,
                   cpu: float | None = None, errors: dict | None = None,
                   interval: float | None = None, version: str | None = None,
                   instance: str | None = None) -> dict:
    """A retained heartbeat (about 200 bytes); raises ContractError if malformed."""
    beat = {"v": SCHEMA_VERSION, "ts": now_rfc3339(), "agent": check_name(agent),
            "ok": ok, "uptime": uptime}
    optional = {"mem_kb": mem_kb, "cpu": cpu, "errors": errors,
                "interval": interval, "version": version, "instance": instance}
    beat.update({k: v for k, v in optional.items() if v is not None})
    return validate_heartbeat(beat)


HEARTBEAT_NOT_NEGATIVE = ("uptime", "mem_kb", "cpu")


def validate_heartbeat(payload: dict) -> dict:
    """Schema plus: error counters are slug -> int, version is a slug."""
    check_schema(payload, HEARTBEAT_SCHEMA)
    check_name(payload["agent"])
    # Usage and time cannot be negative, nor an interval zero: readers add these up
    # (fleet.capacity, the exporter) and divide by them (the staleness limit).
    for key in HEARTBEAT_NOT_NEGATIVE:
        if key in payload and payload[key] < 0:
            raise ContractError("bad-number", f"{key} is negative")
    if "interval" in payload and payload["interval"] <= 0:
        raise ContractError("bad-number", "interval is not positive")
    for key, count in payload.get("errors", {}).items():
        if not KEY_RE.fullmatch(key) or isinstance(count, bool) or not isinstance(count, int):
            raise ContractError("bad-errors", key[:32])
    if "version" in payload:
        check_slug("version", payload["version"])
    return payload


# --- alerts and events ----------------------------------------------------------

_ALERT_SLUGS = ("code", "reason", "level")


def validate_alert(payload: dict) -> dict:
    """Schema plus: code, reason and level are slugs; topic is a topic name."""
    check_schema(payload, ALERT_SCHEMA)
    check_name(payload["agent"])
    for key in _ALERT_SLUGS:
        if key in payload:
            check_slug(key, payload[key])
    if "topic" in payload and not _is_topic_name(payload["topic"]):
        raise ContractError("bad-topic")
    if "digest" in payload and not DIGEST_RE.fullmatch(payload["digest"]):
        raise ContractError("bad-digest")
    return payload


def _is_topic_name(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable() \
        and not any(c in value for c in "+# ")


def make_event(agent: str, event: str, **fields) -> dict:
    """A state change on the status topic (``cron-failed``, ``version-updated``...).

    Fields are slug keys with number, bool or slug values: no free text.
    """
    payload = {"v": SCHEMA_VERSION, "ts": now_rfc3339(), "agent": agent,
               "kind": "event", "event": event, **fields}
    return validate_event(payload)


def validate_event(payload: dict) -> dict:
    """Check an event: envelope keys typed, every other key a slug scalar."""
    for key in EVENT_ENVELOPE:
        if key not in payload:
            raise ContractError("missing-" + key)
    if payload["v"] != SCHEMA_VERSION or isinstance(payload["v"], bool):
        raise ContractError("bad-version", str(payload["v"])[:10])
    parse_rfc3339(payload["ts"])
    check_name(payload["agent"])
    if payload["kind"] != "event":
        raise ContractError("bad-kind")
    check_slug("event", payload["event"])
    data = {k: v for k, v in payload.items() if k not in EVENT_ENVELOPE}
    if len(data) > MAX_EVENT_FIELDS:
        raise ContractError("too-many-fields", str(len(data)))
    for key, value in data.items():
        check_scalar(key, value)
    return payload


# --- the agent's own main process ---------------------------------------------------
# In a container, agent_kit's handler runs beside the agent's own program (the
# image's ENTRYPOINT/CMD). When that program ends, the supervisor reports it once
# on each topic, then the container exits and Docker restarts it:
#   fleet/{name}/status  {"kind":"event","event":"main-exited","exit":137}
#   fleet/{name}/alert   {"kind":"alert","code":"main-exited","reason":"signal-9","level":"critical"}
# Only the exit status travels: never the program's output or command line.
MAIN_EXITED = "main-exited"


def exit_reason(exit_status: int) -> str:
    """``signal-N`` for a shell status above 128 (killed by signal N), else ``exit-N``."""
    if 128 < exit_status <= 128 + 64:
        return f"signal-{exit_status - 128}"
    return f"exit-{exit_status}"


def make_main_exited(agent: str, exit_status: int) -> tuple:
    """(status event, alert) for the agent's main process ending with ``exit_status`` (0-255)."""
    if isinstance(exit_status, bool) or not isinstance(exit_status, int) or not 0 <= exit_status <= 255:
        raise ContractError("bad-exit-status", str(exit_status)[:10])
    event = make_event(agent, MAIN_EXITED, exit=exit_status)
    level = "warning" if exit_status == 0 else "critical"
    alert = make_alert(agent, MAIN_EXITED, reason=exit_reason(exit_status), level=level)
    return event, alert


def validate_status(payload: dict) -> dict:
    """Any payload an agent may put on its status topic: state, reply or event."""
    kind = classify_status(payload)
    if kind == "event":
        return validate_event(payload)
    schema = STATE_SCHEMA if kind == "state" else REPLY_SCHEMA
    check_schema(payload, schema)
    check_name(payload["agent"])
    if kind == "state" and payload["state"] not in (STATE_ONLINE, STATE_OFFLINE):
        raise ContractError("bad-state")
    return payload

