"""Load and validate ``fleet_inventory.yaml`` into typed objects.

Which file: the ``path`` argument, else ``$FLEET_INVENTORY``, else
``./fleet_inventory.yaml``.

Every problem names the file, the line and the key path, and the loader
collects ALL of them before raising one ``InventoryError``: a bad inventory is
rejected as a whole, before anything changes.

Precedence of an agent's settings, lowest first (a later layer replaces a key
as a whole; mappings such as ``env`` or ``reload`` are not merged key by key,
as with Ansible's default):

1. built-in defaults (the field defaults of ``hatchery.model.AgentSpec``);
2. role defaults: ``roles/<role>/defaults.yaml``, looked up first in the
   inventory's directory, then in the hatchery repo's ``roles/``;
3. group vars, groups in file order (a later group wins);
4. the agent's own keys.

The role itself comes from the agent's keys, else its groups' vars, else
``agent``.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import signal as signals
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from agent_kit.contract import MAX_PAYLOAD_BYTES, NAME_RE, name_problem
from hatchery.core.assets import ROLES
from hatchery.core.plan import text_diff
from hatchery.errors import InventoryError, Problem, UsageError
from hatchery.inventory.model import (
    RUNTIMES,
    AgentSpec,
    BrokerSpec,
    Inventory,
    ReloadSpec,
)

INVENTORY_ENV = "FLEET_INVENTORY"
DEFAULT_INVENTORY = "fleet_inventory.yaml"
REPO_ROLES = ROLES
DEFAULT_ROLE = "agent"
HOW_TO_POINT = (f"pass --inventory PATH, set ${INVENTORY_ENV}=PATH, or create "
                f"./{DEFAULT_INVENTORY} (the hatchery repo has a commented example)")


# --- where we are, and what went wrong --------------------------------------

class _Bad(Exception):
    """A value failed its check; ``subkey`` points inside a mapping value."""

    def __init__(self, message: str, fix: str = "", subkey: Optional[str] = None):
        super().__init__(message)
        self.message, self.fix, self.subkey = message, fix, subkey


@dataclass
class _Doc:
    """One YAML file being read, and the problems found in it so far."""

    shown: str                      # the path as the user wrote it
    problems: list

    def add(self, node, key, keypath: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(self.shown, _line(node, key), keypath, message, fix))


def _line(node, key) -> Optional[int]:
    """1-based line of ``key`` in a ruamel mapping or sequence (None if unknown)."""
    try:
        if isinstance(node, CommentedMap):
            return node.lc.key(key)[0] + 1
        if isinstance(node, CommentedSeq):
            return node.lc.item(key)[0] + 1
    except (KeyError, IndexError, TypeError):
        pass
    line = getattr(getattr(node, "lc", None), "line", None)
    return None if line is None else line + 1


def _kind(value) -> str:
    """How a YAML value reads to a person: 'a string', 'an integer', ..."""
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    for types, name in ((int, "an integer"), (float, "a number"), (str, "a string"),
                        (list, "a list"), (dict, "a mapping")):
        if isinstance(value, types):
            shown = f" {value!r}" if isinstance(value, (int, float, str)) else ""
            return f"{name}{shown}"
    return type(value).__name__


def _suggest(word, choices) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}? " if match else ""


# --- value checks: value -> plain Python value, or raise _Bad ----------------

def _text(value) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a string, got {_kind(value)}", _quote_fix(value))
    if not value.strip():
        raise _Bad("must not be empty", "write a value or remove the key")
    return str(value)


def _quote_fix(value) -> str:
    if isinstance(value, bool):
        return f"quote it: '{str(value).lower()}'"
    return f"quote it: '{value}'" if isinstance(value, (int, float)) else "write a string"


def _integer(low: int, high: int) -> Callable:
    def check(value) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            fix = "remove the quotes" if isinstance(value, str) and value.strip().isdigit() \
                else f"write a whole number from {low} to {high}"
            raise _Bad(f"expected an integer, got {_kind(value)}", fix)
        if not low <= value <= high:
            raise _Bad(f"{value} is out of range", f"use a number from {low} to {high}")
        return int(value)
    return check


def _seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"expected a number of seconds, got {_kind(value)}", "write e.g. 600")
    if not value > 0:
        raise _Bad(f"{value} is not a positive number of seconds", "use a number above 0, e.g. 600")
    return float(value)


def _choice(choices: tuple) -> Callable:
    def check(value) -> str:
        if value not in choices:
            raise _Bad(f"{value!r} is not allowed; {_suggest(value, choices)}".rstrip("; "),
                       f"use one of: {', '.join(choices)}")
        return str(value)
    return check


def _boolean(value) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_kind(value)}", "write true or false, unquoted")
    return bool(value)


def _optional(check: Callable) -> Callable:
    return lambda value: None if value is None else check(value)


def _safe_name(value) -> str:
    problem = name_problem(value)
    if problem:
        raise _Bad(problem, _rename_fix(value))
    return str(value)


def _rename_fix(value) -> str:
    if not isinstance(value, str):
        return "use a string such as 'client-a'"
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63].strip("-")
    return f"rename it, e.g. {cleaned!r}" if cleaned and NAME_RE.match(cleaned) \
        else "rename it, e.g. 'client-a'"


def _command(value):
    """A shell string, or an argv list of strings (kept as a tuple)."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise _Bad("a command list must hold non-empty strings only",
                       "quote each item, e.g. [python3, --version]")
        return tuple(str(v) for v in value)
    if not isinstance(value, str):
        raise _Bad(f"expected a command string or a list of strings, got {_kind(value)}",
                   _quote_fix(value))
    return _text(value)


def _dns_name(value) -> str:
    text = _text(value)
    labels = text.split(".")
    if len(text) > 253 or not all(NAME_RE.match(label) for label in labels):
        raise _Bad(f"{text!r} is not a DNS name of lowercase labels (letters, digits, hyphens)",
                   "use e.g. 'mqtt-broker'")
    return text


_DOCKER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


def _docker_name(value) -> str:
    text = _text(value)
    if not _DOCKER_NAME_RE.match(text):
        raise _Bad(f"{text!r} is not a valid Docker name",
                   "use letters, digits, '_', '.' and '-', starting with a letter or digit")
    return text


def _host(value) -> str:
    text = _text(value)
    if any(c.isspace() or c == "/" for c in text):
        raise _Bad(f"{text!r} is not a host name or address", "write e.g. 127.0.0.1")
    return text


_ENGINE_SCHEMES = ("ssh://", "unix://", "tcp://")


def _docker_host(value) -> str:
    text = _text(value)
    if not text.startswith(_ENGINE_SCHEMES):
        raise _Bad(f"{text!r} is not a Docker engine address",
                   "write ssh://user@host, unix:///var/run/docker.sock or tcp://host:2376")
    return text


def _mapping(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"expected a mapping, got {_kind(value)}", "write key: value pairs, or {}")
    return _plain(value)


_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_RE = re.compile(r"PASSW|SECRET|TOKEN|API_?KEY|PRIVATE", re.IGNORECASE)


def _env(value) -> dict:
    env = _mapping(value)
    for key, item in env.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise _Bad(f"{key!r} is not an environment variable name",
                       "use letters, digits and '_'", subkey=key)
        if _SECRET_RE.search(key):
            raise _Bad(f"{key!r} looks like a secret; the inventory is not the place for secrets",
                       "keep secrets out of the inventory and the repo", subkey=key)
        if not isinstance(item, str):
            raise _Bad(f"expected a string value, got {_kind(item)}",
                       f"quote it: {key}: '{item}'", subkey=key)
    return env


# Signals that cannot be caught would stop or kill the agent instead of reloading it.
_UNCATCHABLE = {"KILL", "STOP"}
_SIGNAL_NAMES = sorted(s.name[3:] for s in signals.Signals if not s.name.startswith("SIG_"))


def _signal(value) -> str:
    if not isinstance(value, str):
        raise _Bad(f"expected a signal name, got {_kind(value)}", "write a name, e.g. HUP")
    name = value.upper().removeprefix("SIG")
    if name not in _SIGNAL_NAMES:
        raise _Bad(f"{value!r} is not a signal name; {_suggest(name, _SIGNAL_NAMES)}".rstrip("; "),
                   "use e.g. HUP or USR1")
    if name in _UNCATCHABLE:
        raise _Bad(f"SIG{name} cannot be caught, so it would not reload the agent", "use HUP or USR1")
    return name


def _reload(value) -> ReloadSpec:
    if not isinstance(value, dict):
        raise _Bad(f"expected a mapping, got {_kind(value)}",
                   "write {signal: HUP, pid_file: /run/agent.pid} or {command: '...'}")
    unknown = [k for k in value if k not in ("signal", "pid_file", "command")]
    if unknown:
        raise _Bad(f"unknown key {unknown[0]!r}; "
                   f"{_suggest(unknown[0], ('signal', 'pid_file', 'command'))}".rstrip("; "),
                   "use signal + pid_file, or command", subkey=unknown[0])
    if "command" in value:
        return _reload_by_command(value)
    return _reload_by_signal(value)


def _reload_by_command(value) -> ReloadSpec:
    if set(value) != {"command"}:
        raise _Bad("give either command, or signal with pid_file, not both",
                   "remove signal/pid_file or command")
    try:
        return ReloadSpec(command=_command(value["command"]))
    except _Bad as bad:
        raise _Bad(bad.message, bad.fix, subkey="command") from None


def _reload_by_signal(value) -> ReloadSpec:
    missing = [k for k in ("signal", "pid_file") if k not in value]
    if missing:
        raise _Bad(f"missing {missing[0]}: a signal reload needs both signal and pid_file",
                   "write {signal: HUP, pid_file: /run/agent.pid} or {command: '...'}")
    for key, check in (("signal", _signal), ("pid_file", _absolute_path)):
        try:
            check(value[key])
        except _Bad as bad:
            raise _Bad(bad.message, bad.fix, subkey=key) from None
    return ReloadSpec(signal=_signal(value["signal"]), pid_file=str(value["pid_file"]))


def _absolute_path(value) -> str:
    text = _text(value)
    if not text.startswith("/"):
        raise _Bad(f"{text!r} is not an absolute path", "write e.g. /run/agent.pid")
    return text


def _plain(value):
    """ruamel's commented containers and scalars as plain Python values."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    for plain in (bool, int, float, str):
        if isinstance(value, plain):
            return plain(value)
    return value


# --- schemas ----------------------------------------------------------------

FLEET_FIELDS = {"manager": _safe_name, "state_dir": _text}
BROKER_FIELDS = {
    "runtime": _choice(RUNTIMES), "host": _host, "port": _integer(1, 65535),
    "bind": _host, "dns_name": _dns_name, "image": _text,
    "docker_host": _optional(_docker_host), "network": _docker_name,
    "container": _docker_name, "container_prefix": _docker_name,
    # Room for the contract's payload plus topic and properties; MQTT's own ceiling.
    "max_packet_size": _integer(MAX_PAYLOAD_BYTES + 1024, 268_435_455),
    "dns_provider": _optional(_choice(("hosts", "dnsmasq"))), "dns_options": _mapping,
    "remote_dir": _optional(_text), "auth": _boolean, "tls": _boolean,
    "tls_port": _integer(1, 65535), "tls_ca": _optional(_text), "tls_cert": _optional(_text),
    "tls_key": _optional(_text),
}
AGENT_FIELDS = {
    "role": _safe_name, "runtime": _choice(RUNTIMES), "version_command": _command,
    "reload": _optional(_reload), "heartbeat_interval": _seconds, "image": _text,
    "main_command": _optional(_command), "docker_host": _optional(_docker_host),
    "env": _env,
}
ROLE_FIELDS = {k: v for k, v in AGENT_FIELDS.items() if k != "role"}
GROUP_KEYS = ("agents", "vars")
TOP_KEYS = ("fleet", "broker", "groups", "agents")


def _section(doc: _Doc, parent, key: str, keypath: str) -> CommentedMap:
    """``parent[key]`` as a mapping (empty if absent or null); a problem otherwise."""
    value = parent.get(key) if isinstance(parent, dict) else None
    if value is None:
        return CommentedMap()
    if not isinstance(value, CommentedMap):
        doc.add(parent, key, keypath, f"expected a mapping, got {_kind(value)}",
                "write key: value pairs under it, indented")
        return CommentedMap()
    return value


def _fields(doc: _Doc, node: CommentedMap, schema: dict, keypath: str) -> dict:
    """Check each key of ``node`` against ``schema``; the valid ones, converted."""
    found = {}
    for key, value in node.items():
        where = f"{keypath}.{key}"
        if key not in schema:
            doc.add(node, key, where, f"unknown key; {_suggest(key, schema)}".rstrip("; "),
                    f"use one of: {', '.join(schema)}")
            continue
        try:
            found[key] = schema[key](value)
        except _Bad as bad:
            _report(doc, node, key, where, bad)
    return found


def _report(doc: _Doc, node, key, where: str, bad: _Bad) -> None:
    value = node[key]
    if bad.subkey is not None and isinstance(value, CommentedMap) and bad.subkey in value:
        doc.add(value, bad.subkey, f"{where}.{bad.subkey}", bad.message, bad.fix)
    else:
        doc.add(node, key, where, bad.message, bad.fix)


def _unknown_keys(doc: _Doc, node, known: tuple, keypath: str) -> None:
    for key in node:
        if key not in known:
            path = f"{keypath}.{key}" if keypath else str(key)
            doc.add(node, key, path, f"unknown key; {_suggest(key, known)}".rstrip("; "),
                    f"use one of: {', '.join(known)}")


# --- reading YAML -----------------------------------------------------------

def _yaml() -> YAML:
    yaml = YAML()                    # round-trip: keeps line numbers and comments
    yaml.preserve_quotes = True
    yaml.width = 4096                # never re-wrap a long line when writing back
    return yaml


def _read(path: Path, shown: str):
    """The file's parsed YAML, or raise InventoryError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(shown, None, "(file)", f"no inventory file at {path}", HOW_TO_POINT) from None
    except IsADirectoryError:
        raise _fail(shown, None, "(file)", f"{path} is a directory, not a file", HOW_TO_POINT) from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise _fail(shown, None, "(file)", f"cannot read {path}: {exc}", "make it a readable UTF-8 file") from None
    return _parse(text, shown)


def _parse(text: str, shown: str):
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = _yaml_problem(exc, line)
        raise _fail(shown, line, "(yaml)", problem, _syntax_fix(problem, line)) from None
    except YAMLError as exc:
        raise _fail(shown, None, "(yaml)", str(exc), "fix the YAML syntax") from None


def _yaml_problem(exc: MarkedYAMLError, line: Optional[int]) -> str:
    """The parser's complaint, plus where the construct it was reading began."""
    problem = exc.problem or exc.context or "invalid YAML"
    if "duplicate key" in problem:     # drop the values ruamel quotes: they may be long
        problem = problem.split(" with value ")[0]
    begun = exc.context_mark.line + 1 if exc.context_mark else None
    if exc.problem and exc.context and begun and begun != line:
        problem += f" ({exc.context} that began on line {begun})"
    return problem


def _syntax_fix(problem: str, line: Optional[int]) -> str:
    if "duplicate key" in problem:
        return "each key may appear once; merge or rename the duplicate"
    if "\\t" in problem:
        return "indent with spaces, not tabs"
    return f"check the indentation, colons and quotes on or just before line {line}"


def _fail(shown: str, line, keypath: str, message: str, fix: str) -> InventoryError:
    return InventoryError(shown, [Problem(shown, line, keypath, message, fix)])


def resolve_path(path=None, env: Optional[Mapping[str, str]] = None) -> Path:
    """The inventory file to read: ``path``, else $FLEET_INVENTORY, else ./fleet_inventory.yaml."""
    env = os.environ if env is None else env
    return Path(path or env.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


# --- the loader -------------------------------------------------------------

def load_inventory(path=None, env: Optional[Mapping[str, str]] = None) -> Inventory:
    """Read and validate the inventory; raise InventoryError listing every problem."""
    chosen = resolve_path(path, env)
    shown = str(chosen)
    data = _read(chosen, shown)
    doc = _Doc(shown, [])
    if not isinstance(data, CommentedMap):
        what = "empty" if data is None else f"{_kind(data)}, not a mapping"
        raise _fail(shown, None, "(top)", f"the inventory is {what}",
                    "start from the commented fleet_inventory.yaml in the hatchery repo")
    inventory = _build(doc, data, chosen.absolute())
    if doc.problems:
        # The inventory's own problems first, each file's in line order.
        doc.problems.sort(key=lambda p: (p.path != shown, p.path, p.line or 0))
        raise InventoryError(shown, doc.problems)
    return inventory


def _build(doc: _Doc, data: CommentedMap, path: Path) -> Inventory:
    _unknown_keys(doc, data, TOP_KEYS, "")
    fleet = _fields(doc, _section(doc, data, "fleet", "fleet"), FLEET_FIELDS, "fleet")
    broker = _fields(doc, _section(doc, data, "broker", "broker"), BROKER_FIELDS, "broker")
    agents_node = _section(doc, data, "agents", "agents")
    groups = _groups(doc, _section(doc, data, "groups", "groups"), agents_node)
    roles = _RoleBook([path.parent / "roles", REPO_ROLES], doc.problems)
    agents = {}
    for name, node in _agent_nodes(doc, agents_node):
        agents[name] = _agent(doc, agents_node, name, node, groups, roles)
    return Inventory(
        path=path, manager=fleet.get("manager", "zephyr"), broker=BrokerSpec(**broker),
        agents=agents, groups={g.name: g.members for g in groups},
        state_dir=path.parent / fleet.get("state_dir", ".hatchery"))


def _agent_nodes(doc: _Doc, agents_node: CommentedMap):
    """(name, mapping) for each agent with a valid name, in file order."""
    for name, node in agents_node.items():
        problem = name_problem(name)
        if problem:
            doc.add(agents_node, name, f"agents.{name}", problem, _rename_fix(name))
            continue
        if node is None:
            node = CommentedMap()
        if not isinstance(node, CommentedMap):
            doc.add(agents_node, name, f"agents.{name}", f"expected a mapping, got {_kind(node)}",
                    "write the agent's settings indented under its name, or {}")
            continue
        yield str(name), node


# --- groups -----------------------------------------------------------------

@dataclass
class _Group:
    name: str
    members: tuple
    vars: dict


def _groups(doc: _Doc, node: CommentedMap, agents_node: CommentedMap) -> list:
    groups = []
    for name, body in node.items():
        where = f"groups.{name}"
        problem = name_problem(name)
        if problem:
            doc.add(node, name, where, problem, _rename_fix(name))
            continue
        body = _section(doc, node, name, where)
        _unknown_keys(doc, body, GROUP_KEYS, where)
        members = _members(doc, body, agents_node, where)
        group_vars = _fields(doc, _section(doc, body, "vars", f"{where}.vars"),
                             AGENT_FIELDS, f"{where}.vars")
        groups.append(_Group(str(name), members, group_vars))
    return groups


def _members(doc: _Doc, body: CommentedMap, agents_node: CommentedMap, where: str) -> tuple:
    listed = body.get("agents")
    if listed is None:
        return ()
    if not isinstance(listed, CommentedSeq):
        doc.add(body, "agents", f"{where}.agents", f"expected a list of agent names, got {_kind(listed)}",
                "write e.g. agents: [client-a, client-b]")
        return ()
    members = []
    for index, name in enumerate(listed):
        if name not in agents_node:
            doc.add(listed, index, f"{where}.agents[{index}]",
                    f"{name!r} is not an agent in this inventory; {_suggest(name, agents_node)}".rstrip("; "),
                    "add it under 'agents:' or remove it from the group")
        elif name not in members:
            members.append(str(name))
    return tuple(members)


# --- agents and roles -------------------------------------------------------

def _agent(doc: _Doc, agents_node, name: str, node: CommentedMap, groups: list,
           roles: "_RoleBook") -> AgentSpec:
    own = _fields(doc, node, AGENT_FIELDS, f"agents.{name}")
    mine = [g for g in groups if name in g.members]
    merged_vars: dict = {}
    for group in mine:
        merged_vars.update(group.vars)
    merged_vars.update(own)
    role = merged_vars.get("role", DEFAULT_ROLE)
    role_node, role_key = (node, "role") if "role" in own else (agents_node, name)
    settings = {**roles.defaults(role, doc, role_node, role_key, name), **merged_vars}
    settings.pop("role", None)
    return AgentSpec(name=name, role=role, groups=tuple(g.name for g in mine),
                     source=_line(agents_node, name), **settings)


class _RoleBook:
    """Role defaults, read once per load and searched along ``dirs``."""

    def __init__(self, dirs: list, problems: list):
        self.dirs, self.problems, self.cache = dirs, problems, {}

    def defaults(self, role: str, doc: _Doc, node, key, agent: str) -> dict:
        if role not in self.cache:
            self.cache[role] = self._load(role)
        if self.cache[role] is None:
            if role == DEFAULT_ROLE:
                return {}           # the default role may have no defaults file
            doc.add(node, key, f"agents.{agent}.role",
                    f"role {role!r} not found (looked for {self._where(role)}); "
                    f"{_suggest(role, self._known())}".rstrip("; "),
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
        doc = _Doc(str(file), self.problems)
        try:
            data = _read(file, doc.shown)
        except InventoryError as exc:
            self.problems.extend(exc.problems)
            return {}
        if data is None:
            return {}
        if not isinstance(data, CommentedMap):
            doc.add(None, None, "(top)", f"expected a mapping, got {_kind(data)}",
                    "write key: value pairs")
            return {}
        return _fields(doc, data, ROLE_FIELDS, "defaults")

    def _where(self, role: str) -> str:
        return " and ".join(str(d / role / "defaults.yaml") for d in self.dirs)

    def _known(self) -> list:
        return sorted({p.parent.name for d in self.dirs if d.is_dir()
                       for p in d.glob("*/defaults.yaml")})


# --- enrolment: add an agent to the file ------------------------------------

def add_agent(path, name: str, fields: dict) -> str:
    """Add ``agents.<name>`` to the inventory file, keeping its comments and order.

    Returns the unified diff of the change. The new entry goes after the last
    agent; the rest of the file is left byte for byte as it was.
    """
    path = Path(path)
    problem = name_problem(name)
    if problem:
        raise UsageError(f"cannot add agent: {problem}", _rename_fix(name))
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    data = _parse(before, str(path)) if before.strip() else None
    after = _with_agent(before, data, name, fields)
    _check_added(after, name, fields, str(path))
    _write(path, after)
    return text_diff(before, after, path.name)


def _with_agent(text: str, data, name: str, fields: dict) -> str:
    if data is not None and not isinstance(data, CommentedMap):
        raise UsageError(f"cannot add agent {name!r}: the inventory is not a mapping",
                         "fix the inventory first: any task lists its problems")
    agents = data.get("agents") if data is not None else None
    if data is not None and name in (agents or {}):
        raise UsageError(f"agent {name!r} is already in the inventory", "pick another name")
    if data is None or "agents" not in data:
        return _append_section(text, name, fields)
    if isinstance(agents, CommentedMap) and agents and agents.fa.flow_style() is False:
        return _insert_block(text, data, name, fields)
    return _round_trip(data, name, fields)


def _fragment(name: str, fields: dict, indent: int, step: int = 2) -> str:
    """``name: fields`` as block YAML, each line indented by ``indent`` spaces."""
    if not fields:
        return " " * indent + f"{name}: {{}}\n"
    yaml = _yaml()
    yaml.indent(mapping=step, sequence=step + 2, offset=step)
    out = io.StringIO()
    yaml.dump({name: dict(fields)}, out)
    text = out.getvalue()
    return "".join(" " * indent + line if line.strip() else line
                   for line in text.splitlines(keepends=True))


def _append_section(text: str, name: str, fields: dict) -> str:
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "agents:\n" + _fragment(name, fields, 2)


def _insert_block(text: str, data: CommentedMap, name: str, fields: dict) -> str:
    """Insert after the last agent's lines, before any comment that leads the next key."""
    lines = text.splitlines(keepends=True)
    agents = data["agents"]
    indent = agents.lc.key(next(iter(agents)))[1]
    end = _section_end(data, "agents", len(lines))
    while end > 0 and _is_filler(lines[end - 1]) and _leads_next(lines, end):
        end -= 1
    if end and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines.insert(end, _fragment(name, fields, indent, _step(agents, indent)))
    return "".join(lines)


def _step(agents: CommentedMap, indent: int) -> int:
    """How far the file indents an agent's keys under its name (2 if no example)."""
    for value in agents.values():
        if isinstance(value, CommentedMap) and value and value.fa.flow_style() is False:
            return max(1, value.lc.key(next(iter(value)))[1] - indent)
    return 2


def _section_end(data: CommentedMap, key: str, total: int) -> int:
    """0-based line where the top-level key after ``key`` starts (or the file's end)."""
    keys = list(data)
    later = keys[keys.index(key) + 1:]
    return data.lc.key(later[0])[0] if later else total


def _is_filler(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _leads_next(lines: list, end: int) -> bool:
    # A blank or comment line belongs to what follows it, unless only filler follows.
    return any(not _is_filler(line) for line in lines[end:])


def _round_trip(data: CommentedMap, name: str, fields: dict) -> str:
    """Fallback for an empty or flow-style ``agents:``: let ruamel rewrite the file."""
    if not isinstance(data.get("agents"), CommentedMap):
        data["agents"] = CommentedMap()
    data["agents"][name] = CommentedMap(fields)
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def _check_added(text: str, name: str, fields: dict, shown: str) -> None:
    agents = (_parse(text, shown) or {}).get("agents") or {}
    if _plain(agents.get(name) or {}) != _plain(fields):
        raise UsageError(f"could not add agent {name!r} to {shown} safely",
                         f"add it by hand under 'agents:' with {fields}")


def _write(path: Path, text: str) -> None:
    """Replace the file in one step so a crash never leaves half an inventory."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    if path.exists():
        os.chmod(temp, path.stat().st_mode & 0o7777)
    os.replace(temp, path)
