"""Where messages go: agent names, their topics, and the MQTT v5 properties each may carry.

A name is one safe label (a topic segment, a DNS label and a container name);
``topic``/``parse_topic`` build and read ``fleet/{name}/{kind}``.
``agent_kit.contract`` re-exports all of these: import them from there.
"""

from __future__ import annotations

import re

from .codec import ContractError

KINDS = ("heartbeat", "status", "alert", "command")
FLEET_PREFIX = "fleet"

# One safe label: a name is a topic segment, a DNS label and a container name.
# Anchored with \A...\Z, never ^...$: "$" also matches before a final newline,
# and "client-x\n" once rendered a stray line into the broker's ACL. Callers
# use fullmatch; the \Z keeps a caller that uses .match() safe too.
NAME_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


# --- names and topics -------------------------------------------------------

def check_name(name: object) -> str:
    """Return ``name`` if it is one safe label, else raise ContractError."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ContractError("bad-name", name_problem(name))
    return name


def name_problem(name: object) -> str:
    """Explain why ``name`` is not a safe label (empty string if it is)."""
    if not isinstance(name, str):
        return f"a name must be a string, not {type(name).__name__}"
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return ""
    if not name:
        return "a name must not be empty"
    if len(name) > 63:
        return f"{name!r} is {len(name)} characters; at most 63 are allowed"
    bad = sorted({c for c in name if not (c.isascii() and (c.islower() or c.isdigit() or c == "-"))})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return (f"{name!r} contains {shown}; use only lowercase letters, digits "
                "and hyphens (a name becomes an MQTT topic segment, a DNS label "
                "and a container name)")
    return f"{name!r} must start and end with a letter or digit"


def topic(name: str, kind: str) -> str:
    """``fleet/{name}/{kind}`` for one of KINDS."""
    if kind not in KINDS:
        raise ContractError("unknown-kind", kind)
    return f"{FLEET_PREFIX}/{check_name(name)}/{kind}"


def broadcast_topic(manager: str) -> str:
    """``{manager}/broadcast``: fleet-wide commands from the manager."""
    return f"{check_name(manager)}/broadcast"


def parse_topic(topic_name: str) -> tuple[str, str] | None:
    """Split ``fleet/{name}/{kind}`` into (name, kind); None if not a fleet topic."""
    parts = topic_name.split("/")
    if (len(parts) == 3 and parts[0] == FLEET_PREFIX and parts[2] in KINDS
            and NAME_RE.fullmatch(parts[1])):
        return parts[1], parts[2]
    return None


# --- MQTT v5 properties -------------------------------------------------------
# The payload is the whole message. MQTT v5 lets a publisher put properties
# beside it (user properties: free key/value text; content type, response
# topic, correlation data...). No schema sees them, the broker stores them with
# a retained message and hands them to every v5 reader. So the contract names
# the properties each topic may carry, by paho's names, and nothing else
# passes: the manager's commands carry a Message Expiry (a command stuck in a
# queue must not run long after the manager stopped waiting); agents send none
# (heartbeat, status, alert, their verify topic). A handler drops a command
# with any other property (``bad-properties``, counted and alerted); the
# manager's readers count such an agent message as invalid; bus.audit reports
# every disallowed property and every user property, and scans their values.

COMMAND_PROPERTIES = frozenset({"MessageExpiryInterval"})
ALLOWED_PROPERTIES = {"command": COMMAND_PROPERTIES, "broadcast": COMMAND_PROPERTIES,
                      "heartbeat": frozenset(), "status": frozenset(), "alert": frozenset()}


def properties_kind(topic_name: str) -> str | None:
    """The kind whose property rule applies to ``topic_name`` (None: no properties allowed)."""
    parsed = parse_topic(topic_name)
    if parsed:
        return parsed[1]
    head, sep, tail = topic_name.partition("/")
    return "broadcast" if sep and tail == "broadcast" and NAME_RE.fullmatch(head) else None


def disallowed_properties(topic_name: str, names) -> tuple:
    """The property names among ``names`` that ``topic_name`` may not carry, sorted."""
    allowed = ALLOWED_PROPERTIES.get(properties_kind(topic_name), frozenset())
    return tuple(sorted(str(n) for n in names if n not in allowed))
