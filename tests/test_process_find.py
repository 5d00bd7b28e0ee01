"""process.find on real processes: a fork that has not exec'd yet is its parent's copy.

A handler runs its version command through subprocess: between fork and exec the
child's /proc cmdline is the handler's own, and counting it made a hatch see two
handlers for one agent (and a repair stop one of them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hatchery.core import process, procfs

# The parent forks a child that never execs (it sleeps with the parent's argv), then waits.
FORKS = "import os, sys, time\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)\ntime.sleep(30)\n"


def _children(pid: int) -> list:
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and process.parent_of(int(entry.name)) == pid]


def _wait_for_children(pid: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while not _children(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return _children(pid)


def test_a_child_before_exec_is_not_counted_beside_its_parent():
    marker = f"forker-{uuid.uuid4().hex}"
    parent = subprocess.Popen([sys.executable, "-c", FORKS, marker])
    try:
        children = _wait_for_children(parent.pid)
        assert len(children) == 1 and process.argv_of(children[0]) == process.argv_of(parent.pid)
        assert process.find(lambda argv: marker in argv) == [parent.pid]
    finally:
        for pid in _children(parent.pid):
            process.stop(pid, timeout=2)
        parent.kill()
        parent.wait()


def test_two_unrelated_processes_with_one_argv_are_both_found():
    marker = f"twin-{uuid.uuid4().hex}"
    twins = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker]) for _ in range(2)]
    try:
        deadline = time.monotonic() + 10
        while len(process.find(lambda argv: marker in argv)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.find(lambda argv: marker in argv) == sorted(t.pid for t in twins)
    finally:
        for twin in twins:
            twin.kill()
            twin.wait()


# A local user names a process with bytes that are not UTF-8 (prctl PR_SET_NAME) and gives it
# an argv like ours: the scan must neither crash nor lose it.
HOSTILE_NAME = ("import ctypes, time\n"
                "ctypes.CDLL(None).prctl(15, ctypes.c_char_p(b'python\\xff)x'), 0, 0, 0)\n"
                "time.sleep(30)\n")


def test_a_process_name_that_is_not_utf8_neither_crashes_the_scan_nor_hides():
    marker = f"oddname-{uuid.uuid4().hex}"
    odd = subprocess.Popen([sys.executable, "-c", HOSTILE_NAME, marker])
    try:
        deadline = time.monotonic() + 10
        while b"\xff" not in _comm(odd.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b"\xff" in _comm(odd.pid)
        assert process.find(lambda argv: marker in argv, name_prefix="python") == [odd.pid]
        assert process.parent_of(odd.pid) == os.getpid()
        assert procfs.cpu_ticks(procfs.read(f"/proc/{odd.pid}/stat")) is not None      # capacity reads it
        assert procfs.rss_kb(procfs.read(f"/proc/{odd.pid}/status")) > 0
    finally:
        odd.kill()
        odd.wait()


def _comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes()
    except OSError:
        return b""
