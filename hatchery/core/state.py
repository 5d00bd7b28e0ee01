"""The state directory: everything a run leaves behind, beside the inventory.

Rendered configs, broker data, pid files, logs and generated secrets live here
(``.hatchery/`` by default), never in the repo. Directories are created 0700
because they may hold secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from dataclasses import dataclass
from pathlib import Path

from hatchery.errors import RuntimeFailure


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


@contextlib.contextmanager
def state_lock(root: Path, timeout: float = 60.0):
    """Hold the state directory's lock: one changing task at a time.

    Two runs at once (cron and a person) would both see "not running" and both
    start a handler; the second waits here instead, then finds it running.
    """
    ensure_dir(root)
    with open(root / ".lock", "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeFailure(f"another hatchery task holds {root / '.lock'} for over {timeout:g}s",
                                         "wait for it to finish, or find it with: fuser " + str(root / ".lock")) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
