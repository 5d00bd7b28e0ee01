"""The state directory: everything a run leaves behind, beside the inventory.

Rendered configs, broker data, pid files, logs and generated secrets live here
(``.hatchery/`` by default), never in the repo; ``core.paths`` knows where each
one goes. This module writes them: directories are created 0700 because they
may hold secrets, and files are replaced atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
from pathlib import Path

from hatchery.core.paths import StatePaths  # noqa: F401  (its home is core.paths; kept importable here)
from hatchery.errors import RuntimeFailure


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) private to the user; return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def private_socket_dir(path: Path, *, owner_only: bool = True) -> Path:
    """Create the short control-socket directory ``/tmp/hatchery-ctl-<uid>/<hash>`` safely.

    /tmp is everybody's: the per-user parent must be a real directory (no
    symlink), ours and 0700, or another user could have made it first and
    would own our socket. Anything else is refused with what to remove.
    ``owner_only=False``: the directory itself may then be handed to another uid
    (the docker broker's user) by the caller; its parent still guards it.
    """
    parent = path.parent
    for directory, strict in ((parent, True), (path, owner_only)):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise RuntimeFailure(f"cannot create {directory}: {exc.strerror}",
                                 "give fleet.state_dir a shorter path") from None
        if strict:
            _check_private(directory)
    return path


def ready_socket_dir(socket_path: str, state_root: Path, *, owner_only: bool = True) -> Path:
    """The directory of the broker's control socket, made before the broker starts (it makes
    no directory itself): in the state directory (0700), or the short private one."""
    directory = Path(socket_path).parent
    if Path(state_root) in directory.parents:
        return ensure_dir(directory)
    return private_socket_dir(directory, owner_only=owner_only)


def forget_socket_dir(socket_path: str, state_root: Path) -> None:
    """After the broker stopped: remove the short socket directory when it is empty (the
    broker removes its socket as it exits); one in the state directory stays."""
    directory = Path(socket_path).parent
    if Path(state_root) not in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            pass


def _check_private(directory: Path) -> None:
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory (a symlink?)"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to us ({os.geteuid()})"
    elif info.st_mode & 0o077:
        problem = f"is open to others (mode {stat.S_IMODE(info.st_mode):o})"
    else:
        return
    raise RuntimeFailure(f"{directory}, where the broker's control socket would go, {problem}",
                         f"remove {directory} (check who made it), or give fleet.state_dir a "
                         "shorter path so the socket fits in the state directory")


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
    lock = StatePaths(Path(root)).lock
    with held(lock, timeout, f"another hatchery task holds {lock} for over {timeout:g}s"):
        yield


@contextlib.contextmanager
def held(lock: Path, timeout: float, busy: str):
    """Hold an exclusive flock on the file ``lock`` (created if missing); RuntimeFailure
    saying ``busy`` when another process holds it for over ``timeout`` seconds."""
    with open(lock, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeFailure(busy, f"wait for it to finish, or find it with: fuser {lock}") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def user_lock_dir() -> Path:
    """This user's directory for locks that every fleet on this machine shares (an image
    build per engine): ``<tmp>/hatchery-<uid>``. It must be a directory of ours, 0700:
    a shared /tmp is anyone's to pre-create a name in."""
    path = Path(tempfile.gettempdir()) / f"hatchery-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise RuntimeFailure(f"{path} is not a private directory of this user",
                             f"remove it (rm -rf {path}) and run the task again")
    return path
