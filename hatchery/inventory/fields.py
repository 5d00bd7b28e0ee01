"""The inventory's value checks: one function per kind of value, and the schemas.

A check takes a parsed YAML value and returns it as a plain Python value, or
raises ``Bad`` with what is wrong and how to fix it. The loader
(``hatchery.inventory.load``) walks the file and puts the file, line and key
path on top. Every value here may end up in a topic, a file name, a config
line or a container name, so names are checked with ``fullmatch`` against a
whole pattern (``$`` would let a final newline through).

The schemas here are the keys every runtime takes; a runtime's own keys are
declared (with checks from here) in ``inventory/runtimes/<name>.py``. This
module imports nothing else of the inventory, so a declaration can use it.
"""

from __future__ import annotations

import difflib
import re
import signal as signals
from typing import Callable, Optional

from agent_kit.contract import MAX_PAYLOAD_BYTES, NAME_RE, name_problem
from hatchery.core.formats import control_problem

# --- what went wrong ------------------------------------------------------------

class Bad(Exception):
    """A value failed its check; ``subkey`` points inside a mapping value."""

    def __init__(self, message: str, fix: str = "", subkey: Optional[str] = None):
        super().__init__(message)
        self.message, self.fix, self.subkey = message, fix, subkey


def kind(value) -> str:
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


def suggest(word, choices) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}? " if match else ""


# --- value checks: value -> plain Python value, or raise Bad ------------------

def _text(value) -> str:
    if not isinstance(value, str):
        raise Bad(f"expected a string, got {kind(value)}", _quote_fix(value))
    if not value.strip():
        raise Bad("must not be empty", "write a value or remove the key")
    return _one_line(str(value))


def _one_line(text: str) -> str:
    """No line break nor other control character: every text value may reach a config
    line, a Dockerfile, a unit file or a shell (a newline in state_dir once became
    ``allow_anonymous true`` in mosquitto.conf)."""
    problem = control_problem(text)
    if problem:
        raise Bad(f"{text[:60]!r} {problem}",
                  "write it on one line, without control characters (a YAML block scalar "
                  "with | or > ends in a newline)")
    return text


def _text_that(fits: Callable[[str], object], what: str, fix: str) -> Callable:
    """A check: one line of text that ``fits``, else Bad("'<text>' is not <what>", fix)."""
    def check(value) -> str:
        text = _text(value)
        if not fits(text):
            raise Bad(f"{text!r} is not {what}", fix)
        return text
    return check


def _quote_fix(value) -> str:
    if isinstance(value, bool):
        return f"quote it: '{str(value).lower()}'"
    return f"quote it: '{value}'" if isinstance(value, (int, float)) else "write a string"


def _integer(low: int, high: int) -> Callable:
    def check(value) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            fix = "remove the quotes" if isinstance(value, str) and value.strip().isdigit() \
                else f"write a whole number from {low} to {high}"
            raise Bad(f"expected an integer, got {kind(value)}", fix)
        if not low <= value <= high:
            raise Bad(f"{value} is out of range", f"use a number from {low} to {high}")
        return int(value)
    return check


def _seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bad(f"expected a number of seconds, got {kind(value)}", "write e.g. 600")
    if not value > 0:
        raise Bad(f"{value} is not a positive number of seconds", "use a number above 0, e.g. 600")
    return float(value)


def _choice(choices: tuple) -> Callable:
    def check(value) -> str:
        if value not in choices:
            raise Bad(f"{value!r} is not allowed; {suggest(value, choices)}".rstrip("; "),
                       f"use one of: {', '.join(choices)}")
        return str(value)
    return check


def _boolean(value) -> bool:
    if not isinstance(value, bool):
        raise Bad(f"expected true or false, got {kind(value)}", "write true or false, unquoted")
    return bool(value)


def _optional(check: Callable) -> Callable:
    return lambda value: None if value is None else check(value)


def _safe_name(value) -> str:
    problem = name_problem(value)
    if problem:
        raise Bad(problem, rename_fix(value))
    return str(value)


def rename_fix(value) -> str:
    if not isinstance(value, str):
        return "use a string such as 'client-a'"
    cleaned = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:63].strip("-")
    return f"rename it, e.g. {cleaned!r}" if cleaned and NAME_RE.fullmatch(cleaned) \
        else "rename it, e.g. 'client-a'"


def _command(value):
    """A shell string, or an argv list of strings (kept as a tuple)."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise Bad("a command list must hold non-empty strings only",
                       "quote each item, e.g. [python3, --version]")
        return tuple(_one_line(str(v)) for v in value)
    if not isinstance(value, str):
        raise Bad(f"expected a command string or a list of strings, got {kind(value)}",
                   _quote_fix(value))
    return _text(value)


def _is_dns_name(text: str) -> bool:
    return len(text) <= 253 and all(NAME_RE.fullmatch(label) for label in text.split("."))


def _is_host(text: str) -> bool:
    return not any(c.isspace() or c == "/" for c in text)


_ENGINE_SCHEMES = ("ssh://", "unix://", "tcp://")

_dns_name = _text_that(_is_dns_name, "a DNS name of lowercase labels (letters, digits, hyphens)",
                       "use e.g. 'mqtt-broker'")
_host = _text_that(_is_host, "a host name or address", "write e.g. 127.0.0.1")
_docker_host = _text_that(lambda text: text.startswith(_ENGINE_SCHEMES), "a Docker engine address",
                          "write ssh://user@host, unix:///var/run/docker.sock or tcp://host:2376")


def _mapping(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Bad(f"expected a mapping, got {kind(value)}", "write key: value pairs, or {}")
    return plain(value)


_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_RE = re.compile(r"PASSW|SECRET|TOKEN|API_?KEY|PRIVATE", re.IGNORECASE)


def _env(value) -> dict:
    env = _mapping(value)
    for key, item in env.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.fullmatch(key):
            raise Bad(f"{key!r} is not an environment variable name",
                       "use letters, digits and '_'", subkey=key)
        if _SECRET_RE.search(key):
            raise Bad(f"{key!r} looks like a secret; the inventory is not the place for secrets",
                       "keep secrets out of the inventory and the repo", subkey=key)
        if not isinstance(item, str):
            raise Bad(f"expected a string value, got {kind(item)}",
                       f"quote it: {key}: '{item}'", subkey=key)
        try:
            _one_line(item)
        except Bad as bad:
            raise Bad(bad.message, bad.fix, subkey=key) from None
    return env


# Signals that cannot be caught would stop or kill the agent instead of reloading it.
_UNCATCHABLE = {"KILL", "STOP"}
_SIGNAL_NAMES = sorted(s.name[3:] for s in signals.Signals if not s.name.startswith("SIG_"))


def _signal(value) -> str:
    if not isinstance(value, str):
        raise Bad(f"expected a signal name, got {kind(value)}", "write a name, e.g. HUP")
    name = value.upper().removeprefix("SIG")
    if name not in _SIGNAL_NAMES:
        raise Bad(f"{value!r} is not a signal name; {suggest(name, _SIGNAL_NAMES)}".rstrip("; "),
                   "use e.g. HUP or USR1")
    if name in _UNCATCHABLE:
        raise Bad(f"SIG{name} cannot be caught, so it would not reload the agent", "use HUP or USR1")
    return name


def _reload(value) -> dict:
    """{command} or {signal, pid_file}: the loader makes a model.ReloadSpec of it."""
    if not isinstance(value, dict):
        raise Bad(f"expected a mapping, got {kind(value)}",
                   "write {signal: HUP, pid_file: /run/agent.pid} or {command: '...'}")
    unknown = [k for k in value if k not in ("signal", "pid_file", "command")]
    if unknown:
        raise Bad(f"unknown key {unknown[0]!r}; "
                   f"{suggest(unknown[0], ('signal', 'pid_file', 'command'))}".rstrip("; "),
                   "use signal + pid_file, or command", subkey=unknown[0])
    if "command" in value:
        return _reload_by_command(value)
    return _reload_by_signal(value)


def _reload_by_command(value) -> dict:
    if set(value) != {"command"}:
        raise Bad("give either command, or signal with pid_file, not both",
                   "remove signal/pid_file or command")
    try:
        return {"command": _command(value["command"])}
    except Bad as bad:
        raise Bad(bad.message, bad.fix, subkey="command") from None


def _reload_by_signal(value) -> dict:
    missing = [k for k in ("signal", "pid_file") if k not in value]
    if missing:
        raise Bad(f"missing {missing[0]}: a signal reload needs both signal and pid_file",
                   "write {signal: HUP, pid_file: /run/agent.pid} or {command: '...'}")
    for key, check in (("signal", _signal), ("pid_file", _absolute_path)):
        try:
            check(value[key])
        except Bad as bad:
            raise Bad(bad.message, bad.fix, subkey=key) from None
    return {"signal": _signal(value["signal"]), "pid_file": str(value["pid_file"])}


_absolute_path = _text_that(lambda text: text.startswith("/"), "an absolute path", "write e.g. /run/agent.pid")


def plain(value):
    """Parsed containers and scalars (ruamel's commented ones too) as plain Python values."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    for scalar in (bool, int, float, str):
        if isinstance(value, scalar):
            return scalar(value)
    return value


# --- schemas ----------------------------------------------------------------

# Public names for the runtimes' declarations (inventory/runtimes/<name>.py).
text, optional, command, choice, docker_host = _text, _optional, _command, _choice, _docker_host
text_that = _text_that

FLEET_FIELDS = {"manager": _safe_name, "state_dir": _text}
# The keys every runtime takes; "runtime" and each runtime's own keys are added by
# inventory/runtimes (the loader's schemas).
BROKER_FIELDS = {
    "host": _host, "port": _integer(1, 65535), "bind": _host, "dns_name": _dns_name,
    # Room for the contract's payload plus topic and properties; MQTT's own ceiling.
    "max_packet_size": _integer(MAX_PAYLOAD_BYTES + 1024, 268_435_455),
    "dns_provider": _optional(_choice(("hosts", "dnsmasq"))), "dns_options": _mapping,
    "auth": _boolean, "tls": _boolean,
    "tls_port": _integer(1, 65535), "tls_ca": _optional(_text), "tls_cert": _optional(_text),
    "tls_key": _optional(_text), "on_host": _optional(_safe_name), "allow_plain": _boolean,
}
AGENT_FIELDS = {
    "role": _safe_name, "version_command": _command, "reload": _optional(_reload),
    "heartbeat_interval": _seconds, "host": _optional(_safe_name), "env": _env,
}
GROUP_KEYS = ("agents", "vars")
TOP_KEYS = ("fleet", "hosts", "broker", "groups", "agents", "capacity")


def headroom(value) -> float:
    """``20%`` (or a fraction, 0.2): the share of each host fleet.capacity keeps free."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Bad(f"expected a percentage, got {kind(value)}", "write e.g. 20%")
    text = str(value).strip()
    try:
        number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise Bad(f"{text!r} is not a percentage", "write e.g. 20%") from None
    if not (0 <= number < 1):      # NaN fails too
        raise Bad(f"{text} is out of range", "use 0% to 99%: the share of each host kept free")
    return number


CAPACITY_FIELDS = {"headroom": headroom}


def _address(value) -> str:
    """An IP address or a DNS name: it becomes a certificate SAN, a hosts entry, a config line."""
    import ipaddress
    text = _text(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return _dns_name(text)


def _labels(value) -> dict:
    labels = _mapping(value)
    for key, item in labels.items():
        if (not isinstance(item, (str, int, float, bool)) or not NAME_RE.fullmatch(str(key))
                or control_problem(str(item))):
            raise Bad(f"label {key!r}: expected a lowercase name and a plain one-line value",
                      "write e.g. labels: {site: nas, tier: edge}", subkey=key)
    return {str(k): str(v) for k, v in labels.items()}


HOST_FIELDS = {"docker_host": _docker_host, "address": _address, "labels": _labels,
               "remote_dir": _optional(_text)}
