"""The broker's topic ACL, rendered from the fleet.

Every user gets an explicit block (``user NAME`` + ``topic ...``); there are
no ``pattern`` lines, so a user that is not listed can do nothing at all and
no rule is shared between users by accident. The rights follow the contract's
hub-and-spoke shape:

- an agent writes only ``fleet/{self}/heartbeat|status|alert`` and reads only
  ``fleet/{self}/command`` and ``{manager}/broadcast`` — never another agent;
- the manager writes ``fleet/+/command``, ``{manager}/broadcast`` and its own
  ``fleet/{manager}/alert`` (fleet.heal's actions) and reads ``fleet/#``;
- read-only roles (``monitor``, ``exporter``) read ``fleet/#``;
- the ``recorder`` (bus.record, for bus.audit) reads ``#`` so that traffic on
  unknown topics is recorded too (``#`` never matches ``$SYS``);
- control-side users (manager, read-only roles) also read and write the
  private probe topics ``hatchery/probe/#`` that BusClient uses for ping and
  snapshot markers. Agents never get them: a topic shared by agents would be
  a lateral channel, which is why there are no ``pattern`` lines either;
- ``invoke verify`` round trips: the manager reads and writes
  ``hatchery/verify/#``; each agent only the one topic
  ``hatchery/verify/{self}/selftest`` (the check run inside its container).
  One topic, not ``{self}/#``: a wildcard let a compromised agent store an
  unbounded number of retained messages in the broker (1,000 x 60 KB took
  58 MiB); now each agent can hold at most one retained message per topic it
  may write (heartbeat, status, alert, selftest), each under max_packet_size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from agent_kit import contract
from hatchery.errors import UsageError
from hatchery.security.passwords import check_username

# The control side's private topics for ping and snapshot markers (bus.client uses them).
PROBE_PREFIX = "hatchery/probe"

READ_ONLY_ROLES = ("monitor", "exporter")
RECORDER_ROLES = ("recorder",)
AGENT_WRITES = ("heartbeat", "status", "alert")
# hatchery.verify.VERIFY_PREFIX; runtime.docker.verify_in_agent uses {prefix}/{agent}/...
VERIFY_PREFIX = "hatchery/verify"
SELFTEST_LEAF = "selftest"      # agent_kit.selftest.SELFTEST_LEAF
BROKER_UPTIME_TOPIC = "$SYS/broker/uptime"


@dataclass(frozen=True)
class Grant:
    access: str      # read | write | readwrite
    topic: str


def agent_grants(name: str, manager: str) -> list:
    writes = [Grant("write", contract.topic(name, kind)) for kind in AGENT_WRITES]
    return writes + [Grant("read", contract.topic(name, "command")),
                     Grant("read", contract.broadcast_topic(manager)),
                     Grant("readwrite", selftest_topic(name))]


def selftest_topic(name: str) -> str:
    """The one verify topic agent ``name`` may use (agent_kit.selftest writes it)."""
    return f"{VERIFY_PREFIX}/{contract.check_name(name)}/{SELFTEST_LEAF}"


def manager_grants(manager: str) -> list:
    # fleet/{manager}/alert: fleet.heal's actions (the healed agent is named in the
    # payload). One topic no agent can write, so an agent cannot fake a heal.
    return [Grant("write", f"{contract.FLEET_PREFIX}/+/command"),
            Grant("write", contract.topic(manager, "alert")),
            Grant("write", contract.broadcast_topic(manager)),
            Grant("read", f"{contract.FLEET_PREFIX}/#"), probe_grant(), uptime_grant(),
            Grant("readwrite", f"{VERIFY_PREFIX}/#")]


def reader_grants() -> list:
    return [Grant("read", f"{contract.FLEET_PREFIX}/#"), probe_grant(), uptime_grant()]


def uptime_grant() -> Grant:
    # The broker's uptime tells the control side which retained states predate
    # the broker's last start (a crash rolls retained state back).
    return Grant("read", BROKER_UPTIME_TOPIC)


def probe_grant() -> Grant:
    return Grant("readwrite", f"{PROBE_PREFIX}/#")


def recorder_grants() -> list:
    return [Grant("read", "#")]


def fleet_grants(manager: str, agents: Iterable[str],
                 readers: Iterable[str] = READ_ONLY_ROLES,
                 recorders: Iterable[str] = RECORDER_ROLES) -> dict:
    """``{username: [Grant]}`` for the whole fleet, in a stable order."""
    agents, readers, recorders = list(agents), list(readers), list(recorders)
    _check_distinct([manager, *agents, *readers, *recorders])
    grants = {manager: manager_grants(manager)}
    grants.update((name, agent_grants(name, manager)) for name in agents)
    grants.update((name, reader_grants()) for name in readers)
    grants.update((name, recorder_grants()) for name in recorders)
    return grants


def _check_distinct(users: list) -> None:
    for user in users:
        check_username(user)
    seen = set()
    for user in users:
        if user in seen:
            raise UsageError(f"{user!r} is used for two broker roles",
                             "the manager, agents and read-only roles need distinct names")
        seen.add(user)


def render_acl(grants: dict) -> str:
    """The ``acl_file`` text for ``{username: [Grant]}``."""
    lines = ["# Rendered by hatchery from the inventory; edits are overwritten.",
             "# No topic lines before the first 'user': anonymous clients get nothing."]
    for user, user_grants in grants.items():
        lines += ["", f"user {user}"]
        lines += [f"topic {g.access} {g.topic}" for g in user_grants]
    return "\n".join(lines) + "\n"


def fleet_users(manager: str, agents: Iterable[str],
                readers: Iterable[str] = READ_ONLY_ROLES,
                recorders: Iterable[str] = RECORDER_ROLES) -> list:
    """Every broker username of the fleet (the ``wanted`` list for credentials)."""
    return list(fleet_grants(manager, agents, readers, recorders))


def render_fleet_acl(inventory) -> str:
    """The ACL for an ``Inventory`` (manager + every agent + the standard roles)."""
    return render_acl(fleet_grants(inventory.manager, inventory.agents))


# --- checking an ACL file before the broker reads it -----------------------------
# Mosquitto 2.0.11 refuses to start on an invalid acl_file line, but on SIGHUP
# it logs "Invalid line in acl_file", keeps running and enforces no ACL at all.
# So the text is checked before it is installed: a grammar stricter than
# Mosquitto's (only what render_acl writes), then Mosquitto itself
# (hatchery.provision.authcheck).

ACCESS = ("read", "write", "readwrite", "deny")
_TOPIC_MAX = 256


def acl_problems(text: str) -> list:
    """Every line of an ACL file we would not write, as ``line N: why`` (empty when clean)."""
    problems, user = [], None
    if text and not text.endswith("\n"):
        problems.append("the file does not end with a newline")
    for number, line in enumerate(text.split("\n")[:-1] if text else [], start=1):
        why, user = _acl_line_problem(line, user)
        if why:
            problems.append(f"line {number}: {why}")
    return problems


def _acl_line_problem(line: str, user):
    """(problem or '', the user the following topic lines belong to)."""
    if line == "" or (line.startswith("# ") and line.isprintable()):
        return "", user
    words = line.split(" ")
    if words[0] == "user" and len(words) == 2:
        if not contract.NAME_RE.fullmatch(words[1]):
            return f"user {words[1]!r} is not a safe fleet name", user
        return "", words[1]
    if words[0] == "topic" and len(words) == 3 and words[1] in ACCESS:
        if user is None:
            return "a topic line before the first 'user' line grants anonymous clients", user
        if not topic_filter_ok(words[2]):
            return f"{words[2]!r} is not a valid topic filter", user
        return "", user
    return f"not a line hatchery writes: {line[:60]!r}", user


def topic_filter_ok(value: str) -> bool:
    """A printable ASCII MQTT topic filter: '+' a whole level, '#' only the last one."""
    if not (0 < len(value) <= _TOPIC_MAX and value.isascii() and value.isprintable()
            and " " not in value):
        return False
    levels = value.split("/")
    for index, level in enumerate(levels):
        if "+" in level and level != "+":
            return False
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
    return True
