"""What the slow verbs do on the agent: run the configured version command, reload.

Only the agent's own configuration decides what runs; nothing from a message
ever reaches a command line. Failures are ActionError with a short slug code
that goes into the reply (``version-timeout``, ``no-such-process``...).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from typing import Optional, Union

from . import contract
from .config import ReloadConfig

MAX_VERSION_CHARS = 128
_NOT_SLUG = re.compile(r"[^a-z0-9._-]+")
Command = Union[str, tuple]


class ActionError(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def argv_of(command: Command) -> list:
    """A string runs with /bin/sh -c (as the operator wrote it); a tuple is an argv."""
    return ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)


def run(command: Command, timeout: float, prefix: str) -> str:
    """Run ``command``; its stdout, or ActionError('{prefix}-timeout'|'{prefix}-failed')."""
    try:
        # own session: on timeout we kill the whole group, grandchildren included
        proc = subprocess.Popen(argv_of(command), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError:
        raise ActionError(f"{prefix}-not-runnable") from None
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise ActionError(f"{prefix}-timeout") from None
    if proc.returncode != 0:
        raise ActionError(f"{prefix}-failed")
    return out.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.communicate(timeout=1)
    except subprocess.TimeoutExpired:  # something kept the pipe: give up on it
        pass


def first_line(text: str) -> str:
    """The first non-empty line, printable characters only, at most 128 of them."""
    for line in text.splitlines():
        clean = "".join(c for c in line if c.isprintable()).strip()
        if clean:
            return clean[:MAX_VERSION_CHARS]
    return ""


def version(command: Command | None, timeout: float) -> str:
    if command is None:
        raise ActionError("no-version-command")
    line = first_line(run(command, timeout, "version"))
    if not line:
        raise ActionError("version-empty")
    return line


def version_slug(text: str) -> Optional[str]:
    """The version as a heartbeat may carry it (a contract slug), or None when it cannot be one.

    "Python 3.11.7" is "python-3.11.7", "OpenClaw v2.4 (build 77)" is
    "openclaw-v2.4-build-77": lower case, every run of other characters one
    hyphen. Text that leaves nothing, or more than a slug holds, is refused, not
    cut: a version is short, and a long first line is something else.
    """
    words = _NOT_SLUG.sub("-", first_line(text).lower()).strip("-._")
    return words if contract.is_slug(words) else None


def reload(spec: ReloadConfig | None, timeout: float) -> str:
    """Do the configured reload; return the method ('signal' or 'command')."""
    if spec is None:
        raise ActionError("no-reload-configured")
    if spec.signal:
        send_signal(spec.pid_file, spec.signal)
    else:
        run(spec.command, timeout, "reload")
    return spec.method


def send_signal(pid_file: str, signal_name: str) -> int:
    """Signal the pid written in ``pid_file``; return that pid."""
    pid = read_pid(pid_file)
    try:
        os.kill(pid, getattr(signal, "SIG" + signal_name))
    except ProcessLookupError:
        raise ActionError("no-such-process") from None
    except PermissionError:
        raise ActionError("permission-denied") from None
    return pid


def read_pid(pid_file: str) -> int:
    try:
        with open(pid_file) as handle:
            text = handle.read(32).strip()
    except OSError:
        raise ActionError("pid-file-unreadable") from None
    if not text.isdigit() or int(text) <= 1:  # never signal init or a process group
        raise ActionError("bad-pid")
    return int(text)
