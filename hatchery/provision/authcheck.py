"""The broker's password and ACL files, checked before they are installed.

Mosquitto 2.0.11 reads an invalid ``acl_file`` line very differently at start
and on SIGHUP: at start it refuses to run; on SIGHUP it logs "Invalid line in
acl_file", keeps running and enforces no ACL at all. An invalid password file
line is dropped with a warning either way. So a candidate pair of files is
checked twice before anything is written or signalled:

1. by our own grammar (``acl.acl_problems``, ``passwords.password_file_problems``),
   which is stricter than Mosquitto's: only lines we render pass;
2. by Mosquitto itself: a throw-away broker on a free loopback port loads the
   candidate files and must reach "running" with no error or warning about them.

An invalid file raises UsageError (exit 2) naming the file, the line and the
problem, and the plan that would have installed it is never applied.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hatchery.configs.broker import local_user
from hatchery.configs.layout import ACL_FILE, PASSWORD_FILE
from hatchery.core.ports import free_port, listening
from hatchery.errors import UsageError
from hatchery.security import acl
from hatchery.security import passwords as pw

# Log lines in which Mosquitto says it dropped or refused part of a file.
_COMPLAINTS = ("Invalid", "Error", "Warning", "Unable", "exited with code", "did not start")
_NOT_ABOUT_FILES = "should not be run as root"
_START_TIMEOUT = 5.0
_checked: set = set()       # digests of file pairs already proved good in this process


def check_auth_files(files: dict) -> None:
    """Raise UsageError unless ``{passwd: text, acl: text}`` are files Mosquitto accepts whole."""
    problems = grammar_problems(files)
    if not problems:
        digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
        if digest in _checked:
            return
        problems = mosquitto_problems(files)
        if not problems:
            _checked.add(digest)
            return
    raise UsageError("the broker's auth files are invalid; nothing was installed and the "
                     "broker was not signalled:\n  " + "\n  ".join(problems),
                     "fix the names in the inventory (lowercase letters, digits, hyphens) "
                     "and run the task again")


def grammar_problems(files: dict) -> list:
    found = [f"{PASSWORD_FILE}: {p}" for p in pw.password_file_problems(files.get(PASSWORD_FILE, ""))]
    return found + [f"{ACL_FILE}: {p}" for p in acl.acl_problems(files.get(ACL_FILE, ""))]


def mosquitto_problems(files: dict) -> list:
    """What a throw-away Mosquitto says about the files ([] when it runs clean, or is not installed)."""
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)
    if binary is None:      # e.g. a docker-only host: the grammar check above still ran
        return []
    with tempfile.TemporaryDirectory(prefix="hatchery-authcheck-") as tmp:
        directory = Path(tmp)
        for name, text in files.items():
            pw.write_private(directory / name, text)
        for _attempt in range(3):       # the free port can be taken between pick and bind
            log = _run_until_running(binary, directory, files)
            if "Address already in use" not in log:
                break
    return _complaints(log, directory)


def _write_conf(directory: Path, files: dict, port: int) -> Path:
    conf = directory / "check.conf"
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous false",
             f"user {local_user()}", f"log_dest file {directory / 'log'}", "log_type error",
             "log_type warning", "log_type notice", "persistence false"]
    if PASSWORD_FILE in files:
        lines.append(f"password_file {directory / PASSWORD_FILE}")
    if ACL_FILE in files:
        lines.append(f"acl_file {directory / ACL_FILE}")
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _run_until_running(binary: str, directory: Path, files: dict) -> str:
    """Start Mosquitto, wait until it listens (it read every file) or exits, stop it; its log."""
    port = free_port()
    conf = _write_conf(directory, files, port)
    log = directory / "log"
    log.unlink(missing_ok=True)
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    outcome = ""
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while proc.poll() is None and not listening("127.0.0.1", port):
            if time.monotonic() > deadline:
                outcome = f"mosquitto did not start within {_START_TIMEOUT:.0f} s with these files"
                break
            time.sleep(0.005)
        if proc.returncode is not None:
            outcome = f"mosquitto exited with code {proc.returncode}"
    finally:
        proc.kill()
        proc.wait(5)
    text = log.read_text(errors="replace") if log.exists() else ""
    return text + (outcome + "\n" if outcome else "")


def _complaints(log: str, directory: Path) -> list:
    found = [_strip(line, directory) for line in log.splitlines()
             if any(word in line for word in _COMPLAINTS) and _NOT_ABOUT_FILES not in line]
    return [f"mosquitto: {line}" for line in found]


def _strip(line: str, directory: Path) -> str:
    # The throw-away directory means nothing to the reader; the file name does.
    text = line.replace(f"{directory}/", "")
    head, sep, rest = text.partition(": ")
    return rest if sep and head.isdigit() else text
