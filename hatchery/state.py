"""The state directory: everything a run leaves behind, beside the inventory.

Rendered configs, broker data, pid files, logs and generated secrets live here
(``.hatchery/`` by default), never in the repo. Directories are created 0700
because they may hold secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def broker_conf(self) -> Path:
        return self.broker_dir / "mosquitto.conf"

    @property
    def broker_pid(self) -> Path:
        return self.broker_dir / "mosquitto.pid"

    @property
    def broker_log(self) -> Path:
        return self.broker_dir / "mosquitto.log"

    @property
    def broker_data(self) -> Path:
        return self.broker_dir / "data"

    def agent_dir(self, name: str) -> Path:
        return self.root / "agents" / name

    def agent_config(self, name: str) -> Path:
        return self.agent_dir(name) / "agent.json"

    def agent_pid(self, name: str) -> Path:
        return self.agent_dir(name) / "handler.pid"

    def agent_log(self, name: str) -> Path:
        return self.agent_dir(name) / "handler.log"

    def build_dir(self, name: str) -> Path:
        return self.root / "build" / name


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) private to the user; return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_if_changed(path: Path, text: str, mode: int = 0o600) -> bool:
    """Write ``text`` unless the file already holds it; True when written."""
    if path.exists() and path.read_text() == text:
        return False
    ensure_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return True


def read_text(path: Path) -> str:
    """The file's text, or '' when it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
