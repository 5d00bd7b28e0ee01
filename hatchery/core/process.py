"""Background processes for the local runtime: spawn, identify, stop.

A pid file alone can lie (the pid may have been reused), so a process counts
as ours only when its command line still contains a marker we chose.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from hatchery.errors import RuntimeFailure


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def command_line(pid: int) -> str:
    """The process's command line, '' when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""
    except OSError:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-p", str(pid), "-o", "command="],
                             capture_output=True, text=True)
        return out.stdout.strip()


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ours."""
    pid = read_pid(pid_file)
    if pid is None or _is_zombie(pid):
        return None
    return pid if marker in command_line(pid) else None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def spawn(argv: list, *, log: Path, pid_file: Path, env: dict | None = None) -> int:
    """Start ``argv`` detached (own session), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, close_fds=True)
    except OSError as exc:
        raise RuntimeFailure(f"cannot start {argv[0]}: {exc.strerror}",
                             f"check that {argv[0]} is installed and executable") from None
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    if not _signal(pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    _signal(pid, signal.SIGKILL)


def send_signal(pid: int, sig: int) -> bool:
    return _signal(pid, sig)


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
