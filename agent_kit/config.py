"""An agent's configuration: a JSON file written by the control side, plus env overrides.

The file path comes from ``--config`` or ``HATCHERY_AGENT_CONFIG``; a container
can also be configured by environment alone (``HATCHERY_AGENT_NAME``,
``HATCHERY_BROKER_HOST``, ``HATCHERY_BROKER_PORT``, ``HATCHERY_MANAGER``).
Every problem is a ValueError naming the source and the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from . import contract

ENV_CONFIG = "HATCHERY_AGENT_CONFIG"
ENV_OVERRIDES = {  # env var -> path of the config key it overrides
    "HATCHERY_AGENT_NAME": ("name",),
    "HATCHERY_MANAGER": ("manager",),
    "HATCHERY_BROKER_HOST": ("broker", "host"),
    "HATCHERY_BROKER_PORT": ("broker", "port"),
    # The runtime's token for this start of the handler (contract.INSTANCE_RE); an
    # environment value, not a file key, so the config file (and its hash) stays the
    # same from one start to the next.
    "HATCHERY_AGENT_INSTANCE": ("instance",),
}
TOP_KEYS = {"name", "manager", "broker", "heartbeat_interval", "version_command",
            "reload", "max_payload", "session_expiry", "alert_interval",
            "command_timeout", "keepalive", "reconnect_max",
            # credentials: the files hold the secrets, never this JSON
            "username", "password_file", "signing_key_file", "broadcast_key_file",
            "credentials", "instance"}
BROKER_KEYS = {"host", "port", "ca_file"}
SECRET_FILE_LIMIT = 4096
CLIENT_ID_LABEL = b"mqtt-client-id"

Command = Union[str, tuple]  # a string runs with /bin/sh -c; a tuple is an argv


@dataclass(frozen=True)
class ReloadConfig:
    """config-reload: ``signal`` to the pid in ``pid_file``, or run ``command``."""

    signal: Optional[str] = None      # "HUP", normalised without the SIG prefix
    pid_file: Optional[str] = None
    command: Optional[Command] = None

    @property
    def method(self) -> str:
        return "signal" if self.signal else "command"


@dataclass(frozen=True)
class AgentConfig:
    name: str
    manager: str = "zephyr"
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    heartbeat_interval: float = 600
    version_command: Optional[Command] = None
    reload: Optional[ReloadConfig] = None
    max_payload: int = contract.MAX_PAYLOAD_BYTES
    session_expiry: int = 3600
    alert_interval: float = 10
    command_timeout: float = 10
    keepalive: int = 60
    reconnect_max: int = 30               # seconds: the longest wait between reconnect attempts
    username: Optional[str] = None
    password_file: Optional[str] = None
    signing_key_file: Optional[str] = None
    broadcast_key_file: Optional[str] = None
    credentials: Optional[str] = None     # a fingerprint: changes when the secrets rotate
    ca_file: Optional[str] = None         # verify the broker's TLS certificate against this CA
    instance: Optional[str] = None        # this start's token from the runtime (contract.INSTANCE_RE)

    @property
    def client_id(self) -> str:
        """The handler's MQTT client id: stable across restarts (the session persists),
        unguessable when the agent has a password (see ``handler_client_id``)."""
        return handler_client_id(self.name, self.password())

    def password(self) -> Optional[str]:
        return read_secret_file(self.password_file, "password_file") if self.password_file else None

    def signing_key(self) -> Optional[bytes]:
        return _key(self.signing_key_file, "signing_key_file")

    def broadcast_key(self) -> Optional[bytes]:
        return _key(self.broadcast_key_file, "broadcast_key_file")


def handler_client_id(name: str, password: Optional[str]) -> str:
    """``hatchery-agent-{name}``, plus a tag derived from the password when there is one.

    The broker kicks an existing connection when another one arrives with the same
    client id, so a predictable id would let any user knock the handler off the bus
    for good (both sides keep reconnecting). The tag is an HMAC of a fixed label
    under the agent's secret: other users cannot compute it, the agent's own
    ``bus-*`` tools (random ids) never collide with it, and it only changes when the
    credentials rotate (which restarts the handler anyway).
    """
    if not password:
        return f"hatchery-agent-{name}"
    tag = hmac.new(password.encode("utf-8"), CLIENT_ID_LABEL, hashlib.sha256).hexdigest()
    return f"hatchery-agent-{name}-{tag[:16]}"


def read_secret_file(path: str, key: str) -> str:
    """The one-line secret in ``path``; ValueError naming the key (never the secret)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(SECRET_FILE_LIMIT).strip()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{key}: {path} must hold one non-empty line")
    return text


def _key(path: Optional[str], key: str) -> Optional[bytes]:
    if not path:
        return None
    try:
        return bytes.fromhex(read_secret_file(path, key))
    except ValueError as exc:
        raise ValueError(f"{key}: {path} is not a hex key ({exc})") from None


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None,
                require_name: bool = True) -> AgentConfig:
    """Read the file (``path`` or $HATCHERY_AGENT_CONFIG, if any), then apply env overrides."""
    environ = environ if environ is not None else {}
    path = path or environ.get(ENV_CONFIG) or None
    data = read_json(path) if path else {}
    source = path or "environment"
    apply_env(data, environ)
    return from_dict(data, source, require_name)


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read agent config: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the agent config must be a JSON object")
    return data


def apply_env(data: dict, environ: Mapping[str, str]) -> None:
    """Environment wins over the file, so one image serves every agent."""
    for var, keys in ENV_OVERRIDES.items():
        if environ.get(var):
            target = data
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = _port(environ[var], var) if keys[-1] == "port" else environ[var]


def _port(text: str, var: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{var}={text!r}: the broker port must be an integer") from None


def from_dict(data: dict, source: str = "config", require_name: bool = True) -> AgentConfig:
    """Validate a config mapping into an AgentConfig."""
    _refuse_unknown(data, TOP_KEYS, source, "")
    broker = data.get("broker") or {}
    if not isinstance(broker, dict):
        raise ValueError(f"{source}: key 'broker' must be an object with host and port")
    _refuse_unknown(broker, BROKER_KEYS, source, "broker.")
    defaults = AgentConfig(name="")
    return AgentConfig(
        name=_name(data.get("name"), source, "name", require_name),
        manager=_name(data.get("manager", defaults.manager), source, "manager", True),
        broker_host=_host(broker.get("host", defaults.broker_host), source),
        broker_port=_int(broker.get("port", defaults.broker_port), source, "broker.port", 1, 65535),
        heartbeat_interval=_number(data, "heartbeat_interval", defaults, source, 1),
        version_command=_command(data.get("version_command"), source, "version_command"),
        reload=_reload(data.get("reload"), source),
        max_payload=_int(data.get("max_payload", defaults.max_payload), source, "max_payload",
                         64, contract.MAX_PAYLOAD_BYTES),
        session_expiry=_int(data.get("session_expiry", defaults.session_expiry), source,
                            "session_expiry", 0, 2**32 - 1),
        alert_interval=_number(data, "alert_interval", defaults, source, 0),
        command_timeout=_number(data, "command_timeout", defaults, source, 0.1),
        keepalive=_int(data.get("keepalive", defaults.keepalive), source, "keepalive", 1, 65535),
        reconnect_max=_int(data.get("reconnect_max", defaults.reconnect_max), source, "reconnect_max", 1, 300),
        username=_optional_name(data.get("username"), source, "username"),
        password_file=_path(data.get("password_file"), source, "password_file"),
        signing_key_file=_path(data.get("signing_key_file"), source, "signing_key_file"),
        broadcast_key_file=_path(data.get("broadcast_key_file"), source, "broadcast_key_file"),
        credentials=_path(data.get("credentials"), source, "credentials"),
        ca_file=_path(broker.get("ca_file"), source, "broker.ca_file"),
        instance=_instance(data.get("instance"), source),
    )


def _instance(value: object, source: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not contract.INSTANCE_RE.fullmatch(value):
        raise ValueError(f"{source}: key 'instance' must be 8 to 32 lowercase letters or "
                         "digits (the runtime's token for this start)")
    return value


def _optional_name(value: object, source: str, key: str) -> Optional[str]:
    return None if value is None else _name(value, source, key, True)


def _path(value: object, source: str, key: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{source}: key '{key}' must be a non-empty string")
    return value


def _refuse_unknown(data: dict, allowed: set, source: str, prefix: str) -> None:
    # A misspelt key silently ignored is worse than a refusal.
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{source}: unknown key '{prefix}{unknown[0]}'; "
                         f"allowed: {', '.join(sorted(allowed))}")


def _name(value: object, source: str, key: str, required: bool) -> str:
    if value is None and not required:
        return ""
    if value is None:
        raise ValueError(f"{source}: key '{key}' is required "
                         f"(or set HATCHERY_AGENT_NAME)" if key == "name" else
                         f"{source}: key '{key}' is required")
    problem = contract.name_problem(value)
    if problem:
        raise ValueError(f"{source}: key '{key}': {problem}")
    return value


def _host(value: object, source: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError(f"{source}: key 'broker.host' must be a host name or address")
    return value


def _int(value: object, source: str, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{source}: key '{key}' must be an integer from {low} to {high}, "
                         f"got {value!r}")
    return value


def _number(data: dict, key: str, defaults: AgentConfig, source: str, low: float) -> float:
    value = data.get(key, getattr(defaults, key))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ValueError(f"{source}: key '{key}' must be a number >= {low}, got {value!r}")
    return value


def _command(value: object, source: str, key: str) -> Command | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return tuple(value)
    raise ValueError(f"{source}: key '{key}' must be a shell string or a non-empty "
                     "list of strings (argv)")


def _reload(value: object, source: str) -> ReloadConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{source}: key 'reload' must be an object or null")
    _refuse_unknown(value, {"signal", "pid_file", "command"}, source, "reload.")
    if "command" in value and ("signal" in value or "pid_file" in value):
        raise ValueError(f"{source}: key 'reload' takes either command or signal+pid_file")
    if "command" in value:
        return ReloadConfig(command=_command(value["command"], source, "reload.command"))
    if not isinstance(value.get("pid_file"), str) or not value["pid_file"]:
        raise ValueError(f"{source}: key 'reload.pid_file' is required with reload.signal")
    return ReloadConfig(signal=_signal_name(value.get("signal", "HUP"), source),
                        pid_file=value["pid_file"])


def _signal_name(value: object, source: str) -> str:
    name = value.upper() if isinstance(value, str) else ""
    name = name[3:] if name.startswith("SIG") else name
    if not name or not hasattr(signal, "SIG" + name) or name in ("KILL", "STOP"):
        raise ValueError(f"{source}: key 'reload.signal': {value!r} is not a usable "
                         "signal name (e.g. HUP, USR1)")
    return name
