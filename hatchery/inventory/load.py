"""Load and validate ``fleet_inventory.yaml`` into typed objects.

Which file: the ``path`` argument, else ``$FLEET_INVENTORY``, else
``./fleet_inventory.yaml``.

Every problem names the file, the line and the key path, and the loader
collects ALL of them before raising one ``InventoryError``: a bad inventory is
rejected as a whole, before anything changes. The file is parsed fast first
(``hatchery.inventory.parse``); only when there is a problem to report is it
read again with line numbers, so the messages are the same either way.

Precedence of an agent's settings, lowest first (a later layer replaces a key
as a whole; mappings such as ``env`` or ``reload`` are not merged key by key,
as with Ansible's default):

1. built-in defaults (the field defaults of ``hatchery.inventory.model.AgentSpec``);
2. role defaults: ``roles/<role>/defaults.yaml``, looked up first in the
   inventory's directory, then in the hatchery repo's ``roles/``;
3. group vars, groups in file order (a later group wins);
4. the agent's own keys.

The role itself comes from the agent's keys, else its groups' vars, else
``agent``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from hatchery.core.assets import ROLES
from hatchery.core.collector import collector_paused
from hatchery.errors import InventoryError
from hatchery.inventory import parse
from hatchery.inventory.cache import InventoryCache, cache_key
from hatchery.inventory.document import Doc, checked_fields, section, unknown_keys
from hatchery.inventory.fields import CAPACITY_FIELDS, FLEET_FIELDS, GROUP_KEYS, TOP_KEYS, kind, suggest
from hatchery.inventory.hosts import (
    check_exposure,
    place_agent,
    place_broker,
    read_hosts,
)
from hatchery.inventory.keys import (
    Schemas,
    agent_settings,
    check_broker_keys,
    check_group_keys,
    read_sections,
    run_agent_checks,
)
from hatchery.inventory.model import (
    CONTROL_USERS,
    DEFAULT_MANAGER,
    AgentSpec,
    CapacitySpec,
    Inventory,
)
from hatchery.inventory.runtimes import Placing

INVENTORY_ENV = "FLEET_INVENTORY"
DEFAULT_INVENTORY = "fleet_inventory.yaml"
REPO_ROLES = ROLES
DEFAULT_ROLE = "agent"
HOW_TO_POINT = (f"pass --inventory PATH, set ${INVENTORY_ENV}=PATH, or create "
                f"./{DEFAULT_INVENTORY} (the hatchery repo has a commented example)")


# --- reading ----------------------------------------------------------------

def resolve_path(path=None, env: Optional[Mapping[str, str]] = None) -> Path:
    """The inventory file to read: ``path``, else $FLEET_INVENTORY, else ./fleet_inventory.yaml."""
    env = os.environ if env is None else env
    return Path(path or env.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


def _read_text(path: Path, shown: str) -> str:
    """The file's text, or raise InventoryError naming the file and the fix."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise parse.failure(shown, None, "(file)", f"no inventory file at {path}", HOW_TO_POINT) from None
    except IsADirectoryError:
        raise parse.failure(shown, None, "(file)", f"{path} is a directory, not a file",
                            HOW_TO_POINT) from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise parse.failure(shown, None, "(file)", f"cannot read {path}: {exc}",
                            "make it a readable UTF-8 file") from None


def _parse(text: str, shown: str, fast: bool):
    return parse.fast(text) if fast else parse.with_lines(text, shown)


# --- the loader -------------------------------------------------------------

class _Recheck(Exception):
    """The fast pass found a problem: read again with line numbers to word it."""


def load_inventory(path=None, env: Optional[Mapping[str, str]] = None) -> Inventory:
    """Read and validate the inventory; raise InventoryError listing every problem.

    An inventory read before, unchanged (and its role files, and this
    hatchery), comes from the private cache of ``inventory.cache``.
    """
    env = os.environ if env is None else env
    chosen = resolve_path(path, env)
    shown = str(chosen)
    text = _read_text(chosen, shown)
    cache = InventoryCache.for_env(env)
    key = cache_key(chosen, text.encode("utf-8"), role_dirs(chosen)) if cache else None
    with collector_paused():     # core.collector: the heap grows by ~15 objects per agent
        cached = cache.get(chosen, key) if key else None
        if cached is not None:
            return cached
        inventory = _load_checked(text, shown, chosen)
    if key:
        cache.put(chosen, key, inventory)
    return inventory


def role_dirs(path: Path) -> list:
    """Where an inventory's roles are looked up: beside it, then the hatchery repo's."""
    return [path.absolute().parent / "roles", REPO_ROLES]


def _load_checked(text: str, shown: str, chosen: Path) -> Inventory:
    if parse.fast_available():
        try:
            return _load(text, shown, chosen, fast=True)
        except (parse.Unsure, _Recheck):
            pass
    return _load(text, shown, chosen, fast=False)


def _load(text: str, shown: str, chosen: Path, *, fast: bool) -> Inventory:
    data = _parse(text, shown, fast)
    doc = Doc(shown, [], fast)
    if not isinstance(data, dict):
        if fast:
            raise _Recheck()
        what = "empty" if data is None else f"{kind(data)}, not a mapping"
        raise parse.failure(shown, None, "(top)", f"the inventory is {what}",
                            "start from the commented fleet_inventory.yaml in the hatchery repo")
    inventory = _build(doc, data, chosen.absolute())
    if doc.problems:
        if fast:
            raise _Recheck()
        # The inventory's own problems first, each file's in line order.
        doc.problems.sort(key=lambda p: (p.path != shown, p.path, p.line or 0))
        raise InventoryError(shown, doc.problems)
    return inventory


def _build(doc: Doc, data: dict, path: Path) -> Inventory:
    schemas = Schemas.now()
    unknown_keys(doc, data, TOP_KEYS + schemas.sections, "")
    fleet_node = section(doc, data, "fleet", "fleet")
    fleet = checked_fields(doc, fleet_node, FLEET_FIELDS, "fleet")
    manager = fleet.get("manager", DEFAULT_MANAGER)
    broker_node = section(doc, data, "broker", "broker")
    broker = checked_fields(doc, broker_node, schemas.broker, "broker")
    hosts = read_hosts(doc, section(doc, data, "hosts", "hosts"))
    placing = Placing(hosts, read_sections(doc, data, hosts))
    agents_node = section(doc, data, "agents", "agents")
    groups = _groups(doc, section(doc, data, "groups", "groups"), agents_node, schemas)
    roles = _RoleBook(role_dirs(path), doc.problems, doc.fast, schemas.role)
    agents = {}
    for name, node in _agent_nodes(doc, agents_node, manager):
        agents[name] = _agent(doc, agents_node, name, node, groups, roles, schemas.agent)
    _reserved_manager(doc, fleet_node, manager)
    broker_spec = place_broker(doc, data.get("broker"), broker, placing)
    agents = {name: place_agent(doc, agents_node, a, hosts) for name, a in agents.items()}
    run_agent_checks(doc, agents_node, agents, placing)
    check_broker_keys(doc, broker_node, broker, broker_spec, agents)
    for group in groups:
        check_group_keys(doc, group.vars_node, group.vars, group.name,
                         [agents[n] for n in group.members if n in agents])
    check_exposure(doc, data.get("broker"), broker_spec, agents)
    capacity = checked_fields(doc, section(doc, data, "capacity", "capacity"), CAPACITY_FIELDS, "capacity")
    return Inventory(
        path=path, manager=manager, broker=broker_spec,
        agents=agents, groups={g.name: g.members for g in groups},
        state_dir=path.parent / fleet.get("state_dir", ".hatchery"), hosts=hosts,
        sections=placing.sections, capacity=CapacitySpec(**capacity))


def _agent_nodes(doc: Doc, agents_node: dict, manager: str):
    """(name, mapping) for each agent with a valid name, in file order."""
    for name, node in agents_node.items():
        if not doc.valid_name(agents_node, name, f"agents.{name}"):
            continue
        problem, fix = _taken(name, manager)
        if problem:
            doc.add(agents_node, name, f"agents.{name}", problem, fix)
            continue
        if node is None:
            node = {}
        if not isinstance(node, dict):
            doc.add(agents_node, name, f"agents.{name}", f"expected a mapping, got {kind(node)}",
                    "write the agent's settings indented under its name, or {}")
            continue
        yield str(name), node


# --- reserved names: the broker users of the control side ---------------------

def _taken(name: str, manager: str) -> tuple:
    """(why an agent may not be called ``name``, the fix); ('', '') if it may."""
    if name != manager and name not in CONTROL_USERS:
        return "", ""
    fix = f"rename the agent, e.g. {name[:57] + '-agent'!r}"
    if name == manager:
        return (f"{name!r} is the fleet manager's name (fleet.manager): an agent by that "
                "name would log in to the broker as the manager", fix)
    return (f"{name!r} is reserved for the control side's {name} user: an agent by that "
            f"name would share its broker login (reserved: {', '.join(CONTROL_USERS)}, "
            "and the manager's name)", fix)


def _reserved_manager(doc: Doc, fleet_node: dict, manager: str) -> None:
    if manager in CONTROL_USERS:
        doc.add(fleet_node, "manager", "fleet.manager",
                f"{manager!r} is reserved for the control side's {manager} user "
                f"(reserved: {', '.join(CONTROL_USERS)})",
                f"use another name, e.g. {DEFAULT_MANAGER!r}")


# --- groups -----------------------------------------------------------------

@dataclass
class _Group:
    name: str
    members: tuple
    vars: dict
    vars_node: dict

    def __post_init__(self):
        self.member_set = frozenset(self.members)   # one lookup per agent, not a scan


def _groups(doc: Doc, node: dict, agents_node: dict, schemas: Schemas) -> list:
    groups = []
    for name, body in node.items():
        where = f"groups.{name}"
        if not doc.valid_name(node, name, where):
            continue
        body = section(doc, node, name, where)
        unknown_keys(doc, body, GROUP_KEYS, where)
        members = _members(doc, body, agents_node, where)
        vars_node = section(doc, body, "vars", f"{where}.vars")
        group_vars = checked_fields(doc, vars_node, schemas.agent, f"{where}.vars")
        groups.append(_Group(str(name), members, group_vars, vars_node))
    return groups


def _members(doc: Doc, body: dict, agents_node: dict, where: str) -> tuple:
    listed = body.get("agents")
    if listed is None:
        return ()
    if not isinstance(listed, list):
        doc.add(body, "agents", f"{where}.agents", f"expected a list of agent names, got {kind(listed)}",
                "write e.g. agents: [client-a, client-b]")
        return ()
    members: dict = {}                 # ordered, and a repeat costs one lookup
    for index, name in enumerate(listed):
        if not isinstance(name, str) or name not in agents_node:
            doc.add(listed, index, f"{where}.agents[{index}]",
                    f"{name!r} is not an agent in this inventory; {suggest(name, agents_node)}".rstrip("; "),
                    "add it under 'agents:' or remove it from the group")
        else:
            members.setdefault(str(name))
    return tuple(members)


# --- agents and roles -------------------------------------------------------

def _agent(doc: Doc, agents_node, name: str, node: dict, groups: list,
           roles: "_RoleBook", schema: dict) -> AgentSpec:
    own = checked_fields(doc, node, schema, f"agents.{name}")
    mine = [g for g in groups if name in g.member_set]
    merged_vars: dict = {}
    for group in mine:
        merged_vars.update(group.vars)
    merged_vars.update(own)
    role = merged_vars.get("role", DEFAULT_ROLE)
    role_node, role_key = (node, "role") if "role" in own else (agents_node, name)
    defaults = roles.defaults(role, doc, role_node, role_key, name)
    settings = agent_settings(doc, agents_node, name, node, defaults, merged_vars, own)
    return AgentSpec(name=name, role=role, groups=tuple(g.name for g in mine),
                     source=parse.line(agents_node, name), **settings)


class _RoleBook:
    """Role defaults, read once per load and searched along ``dirs``."""

    def __init__(self, dirs: list, problems: list, fast: bool = False, schema: Optional[dict] = None):
        self.dirs, self.problems, self.fast, self.cache = dirs, problems, fast, {}
        self.schema = schema or {}      # what a role may set: every agent key but role

    def defaults(self, role: str, doc: Doc, node, key, agent: str) -> dict:
        if role not in self.cache:
            self.cache[role] = self._load(role)
        if self.cache[role] is None:
            if role == DEFAULT_ROLE:
                return {}           # the default role may have no defaults file
            doc.add(node, key, f"agents.{agent}.role",
                    f"role {role!r} not found (looked for {self._where(role)}); "
                    f"{suggest(role, self._known())}".rstrip("; "),
                    f"create roles/{role}/defaults.yaml or use one of: {', '.join(self._known()) or 'none'}")
            return {}
        return self.cache[role]

    def _load(self, role: str) -> Optional[dict]:
        for folder in self.dirs:
            candidate = folder / role / "defaults.yaml"
            if candidate.is_file():
                return self._read_role(candidate)
        return None

    def _read_role(self, file: Path) -> dict:
        doc = Doc(str(file), self.problems, self.fast)
        try:
            data = _parse(_read_text(file, doc.shown), doc.shown, self.fast)
        except InventoryError as exc:
            self.problems.extend(exc.problems)
            return {}
        if data is None:
            return {}
        if not isinstance(data, dict):
            doc.add(None, None, "(top)", f"expected a mapping, got {kind(data)}",
                    "write key: value pairs")
            return {}
        return checked_fields(doc, data, self.schema, "defaults")

    def _where(self, role: str) -> str:
        return " and ".join(str(d / role / "defaults.yaml") for d in self.dirs)

    def _known(self) -> list:
        return sorted({p.parent.name for d in self.dirs if d.is_dir()
                       for p in d.glob("*/defaults.yaml")})
