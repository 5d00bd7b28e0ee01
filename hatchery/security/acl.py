"""The broker's topic ACL, rendered from the fleet.

Every user gets an explicit block (``user NAME`` + ``topic ...``); there are
no ``pattern`` lines, so a user that is not listed can do nothing at all and
no rule is shared between users by accident. The rights follow the contract's
hub-and-spoke shape:

- an agent writes only ``fleet/{self}/heartbeat|status|alert`` and reads only
  ``fleet/{self}/command`` and ``{manager}/broadcast`` — never another agent;
- the manager writes ``fleet/+/command`` and ``{manager}/broadcast`` and
  reads ``fleet/#``;
- read-only roles (``monitor``, ``exporter``) read ``fleet/#``;
- the ``recorder`` (bus.record, for bus.audit) reads ``#`` so that traffic on
  unknown topics is recorded too (``#`` never matches ``$SYS``);
- control-side users (manager, read-only roles) also read and write the
  private probe topics ``hatchery/probe/#`` that BusClient uses for ping and
  snapshot markers. Agents never get them: a topic shared by agents would be
  a lateral channel, which is why there are no ``pattern`` lines either;
- ``invoke verify`` round trips: the manager reads and writes
  ``hatchery/verify/#``; each agent only its own ``hatchery/verify/{self}/#``
  (the check run inside its container).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from agent_kit import contract
from hatchery.bus import PROBE_PREFIX
from hatchery.errors import UsageError
from hatchery.security.passwords import check_username

READ_ONLY_ROLES = ("monitor", "exporter")
RECORDER_ROLES = ("recorder",)
AGENT_WRITES = ("heartbeat", "status", "alert")
# hatchery.verify.VERIFY_PREFIX; runtime.docker.verify_in_agent uses {prefix}/{agent}/...
VERIFY_PREFIX = "hatchery/verify"


@dataclass(frozen=True)
class Grant:
    access: str      # read | write | readwrite
    topic: str


def agent_grants(name: str, manager: str) -> list:
    writes = [Grant("write", contract.topic(name, kind)) for kind in AGENT_WRITES]
    return writes + [Grant("read", contract.topic(name, "command")),
                     Grant("read", contract.broadcast_topic(manager)),
                     Grant("readwrite", f"{VERIFY_PREFIX}/{name}/#")]


def manager_grants(manager: str) -> list:
    return [Grant("write", f"{contract.FLEET_PREFIX}/+/command"),
            Grant("write", contract.broadcast_topic(manager)),
            Grant("read", f"{contract.FLEET_PREFIX}/#"), probe_grant(),
            Grant("readwrite", f"{VERIFY_PREFIX}/#")]


def reader_grants() -> list:
    return [Grant("read", f"{contract.FLEET_PREFIX}/#"), probe_grant()]


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
