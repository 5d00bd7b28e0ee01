"""Background processes for the local runtime: spawn, identify, stop.

A pid file alone can lie (the pid may have been reused, or a crash or a
Ctrl-C came between starting a process and writing its pid), so a process
counts as ours only when its command line still contains a marker we chose,
and ``find`` scans the process table for every process whose argv says what
it is: pid files are a hint, the process table is the truth.
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


def argv_of(pid: int) -> list:
    """The process's argv as a list ([] when it is gone); Linux only (/proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def find(matches, *, name_prefix: str = "") -> list:
    """Pids (ascending) of the live processes whose argv satisfies ``matches(argv)``.

    ``name_prefix`` (e.g. "python") skips every process whose short name
    (/proc/PID/comm) does not start with it before its argv is read: reading
    another process's argv waits on that process's memory lock, which a busy
    one (a docker build) holds for tens of milliseconds. Where there is no
    /proc (macOS) ``ps`` is asked, and its command column split on spaces
    (good enough for our own paths, which hold none).
    """
    found = {}
    for pid, argv in _process_table(name_prefix):
        if pid != os.getpid() and argv and matches(argv) and not _is_zombie(pid):
            found[pid] = argv
    # A process that forks (a handler running its version command) has, until
    # the child's exec, a child with its own argv: that copy is not a second one.
    return sorted(pid for pid, argv in found.items() if found.get(parent_of(pid)) != argv)


def parent_of(pid: int) -> int | None:
    """The parent's pid from /proc/PID/stat; None when unknown (gone, or no /proc)."""
    fields = _stat_after_name(pid)
    return int(fields[1]) if fields and len(fields) > 1 and fields[1].isdigit() else None


def _stat_after_name(pid: int) -> list | None:
    """/proc/PID/stat's fields after the name, as bytes: the name (comm) is whatever bytes
    the process set (prctl), so it is never decoded, and it may hold ')' itself."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw.rsplit(b")", 1)[-1].split()


def _process_table(name_prefix: str = ""):
    if os.path.isdir("/proc"):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and _named(entry, name_prefix):
                yield int(entry), argv_of(int(entry))
        return
    out = subprocess.run(["ps", "-ax", "-o", "pid=,command="], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        pid, _, command = line.strip().partition(" ")
        if pid.isdigit():
            yield int(pid), command.split()


def _named(pid: str, prefix: str) -> bool:
    if not prefix:
        return True
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().decode(errors="replace").startswith(prefix)
    except OSError:
        return False


def write_pid(pid_file: Path, pid: int) -> None:
    """Write the pid file atomically: a reader sees the old pid or the new, never half."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(f".{pid_file.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ours."""
    pid = read_pid(pid_file)
    if pid is None or _is_zombie(pid):
        return None
    return pid if marker in command_line(pid) else None


def _is_zombie(pid: int) -> bool:
    fields = _stat_after_name(pid)
    return bool(fields) and fields[0] == b"Z"


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
    write_pid(pid_file, proc.pid)
    return proc.pid


def stop(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    stop_all([pid], timeout=timeout)


def stop_all(pids: list, *, timeout: float = 5.0) -> None:
    """SIGTERM every pid at once, wait up to ``timeout`` for all, SIGKILL the rest.

    At once, not one after the other: stopping 100 handlers takes one
    handler's shutdown time, not a hundred.
    """
    left = [pid for pid in pids if _signal(pid, signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [pid for pid in left if _alive(pid)]
    for pid in left:
        _signal(pid, signal.SIGKILL)
    for pid in left:      # a SIGKILLed process is gone in milliseconds: wait, so its lock is free
        _wait_gone(pid, 2.0)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


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
