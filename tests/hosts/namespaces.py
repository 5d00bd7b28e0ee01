"""Network namespaces for tests, each claimed by the process that made it, and a sweep of
those whose maker died (tests/hosts/netns.py, tests/security/netlab.py).

A hard kill (SIGKILL, OOM, a lost CI runner) skips every ``finally``: the run's
namespaces, the tmpfs mounted for its engines and the dockerd/sshd inside them stay.
So every namespace named ``hty...`` is claimed before it is made: a marker file
``OWNERS/<name>`` that the maker keeps open and ``flock``-ed for as long as it
holds the namespace. The kernel drops that lock when the maker dies however it
dies, so ``sweep()`` can tell a dead run's namespace (lock free) from a live run's
(lock held) without trusting pids, which another process may have taken since.
A namespace without a marker (made by older code, or by hand) is never touched:
``sweep()`` only lists it.

    name = claim_netns("htyab12lan", root=run_dir)   # marker, ip netns add, lo up
    ...
    remove_netns(name)                               # ip netns del
    release([name])                                  # after the run's own clean-up

Needs root and iproute2. A plain module (imported by tests and bench/).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "hty"
OWNERS = Path("/run/hatchery-tests/netns")
_HELD: dict = {}        # namespace name -> the open, locked marker file


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def free_subnet(base: str, first: int = 10) -> int:
    """A free ``{base}.S.0/24`` (e.g. base ``10.250``): S in first..249, at random."""
    used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route").stdout
    candidates = [s for s in range(first, 250) if f"{base}.{s}." not in used]
    if not candidates:
        raise RuntimeError(f"no free {base}.x.0/24 subnet")
    return secrets.choice(candidates)


def run_tag() -> str:
    """``hty`` and four hex digits: the start of every name one run makes (interface names
    are limited to 15 characters)."""
    return f"{PREFIX}{secrets.token_hex(2)}"


# --- claiming --------------------------------------------------------------------------------

def claim_netns(name: str, root: Path | None = None) -> str:
    """Claim ``name`` (marker written and locked first: a kill between the two steps leaves a
    claimed namespace, never an unclaimed one), then make it with its loopback up."""
    if not name.startswith(PREFIX) or "/" in name:
        raise ValueError(f"namespace {name!r} must start with {PREFIX!r}")
    OWNERS.mkdir(parents=True, exist_ok=True)
    marker = open(OWNERS / name, "a+")
    try:
        fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        marker.close()
        raise RuntimeError(f"namespace {name} is claimed by a live run") from None
    marker.truncate(0)
    marker.write(json.dumps({"pid": os.getpid(), "root": str(root) if root else None,
                             "run": name[:len(PREFIX) + 4]}))
    marker.flush()
    _HELD[name] = marker
    sh("ip", "netns", "add", name)
    sh("ip", "-n", name, "link", "set", "lo", "up")
    return name


def remove_netns(name: str) -> None:
    """Delete the namespace; its claim stays until ``release()`` (the run's mounts and
    directories are still to be cleaned up, and a sweep must not race that)."""
    sh("ip", "netns", "del", name, check=False)


def release(names) -> None:
    """Give up the claims on ``names`` (their namespaces are gone)."""
    for name in names:
        marker = _HELD.pop(name, None)
        if marker is not None:
            (OWNERS / name).unlink(missing_ok=True)
            marker.close()


# --- sweeping --------------------------------------------------------------------------------

@dataclass
class Swept:
    removed: list = field(default_factory=list)     # namespaces of dead runs, now gone
    kept: list = field(default_factory=list)        # held by a live run
    unowned: list = field(default_factory=list)     # no marker: not ours to judge
    killed: list = field(default_factory=list)      # pids that ran inside the removed ones


def sweep() -> Swept:
    """Remove every ``hty*`` namespace whose claim no live process holds, with what ran in it
    and what its run mounted; keep the rest. Safe beside other runs: a held claim is kept."""
    result = Swept()
    for name in _namespaces():
        if not (OWNERS / name).exists():
            result.unowned.append(name)
            continue
        marker = _take_dead_claim(name)
        if marker is None:
            result.kept.append(name)
            continue
        with marker:
            record = _record(marker)
            result.killed += _clear(name, record)
            (OWNERS / name).unlink(missing_ok=True)
        result.removed.append(name)
    _forget_stale_markers()
    return result


def _namespaces() -> list:
    return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
            if line.startswith(PREFIX)]


def _take_dead_claim(name: str):
    """The marker, locked by us, when its owner is gone; None while someone holds it."""
    try:
        marker = open(OWNERS / name, "r")
    except FileNotFoundError:
        return None                                  # released meanwhile: its owner cleans up
    try:
        fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        same = os.fstat(marker.fileno()).st_ino == os.stat(OWNERS / name).st_ino
    except (BlockingIOError, FileNotFoundError):
        same = False
    if not same:                                     # held, or replaced by a new claim
        marker.close()
        return None
    return marker


def _record(marker) -> dict:
    try:
        record = json.loads(marker.read() or "{}")
    except ValueError:
        record = {}
    return record if isinstance(record, dict) else {}


def _clear(name: str, record: dict) -> list:
    """A dead run's namespace: what runs in it (and their children: containers under a
    shim) killed, its run's mounts and directory removed, its links and the namespace deleted."""
    root = _run_dir(record.get("root"))
    pids = set(sh("ip", "netns", "pids", name, check=False).stdout.split())
    if root is not None:
        pids |= set(sh("pgrep", "-f", str(root), check=False).stdout.split())
    doomed = _with_descendants({int(p) for p in pids})
    for pid in doomed:
        _kill(pid)
    _wait_gone(doomed)
    if root is not None:
        unmount_under(root)
        sh("rmdir", str(root), check=False)
        if root.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)
    run = record.get("run")
    if isinstance(run, str) and run.startswith(PREFIX) and len(run) > len(PREFIX):
        for link in _links(run):
            sh("ip", "link", "del", link, check=False)
    sh("ip", "netns", "del", name, check=False)
    return sorted(doomed)


def _run_dir(text) -> Path | None:
    """The run's directory as its marker names it, only if it is one a run makes: ``hty...``
    directly in the temporary directory (a marker is a file: never rm -rf what it says)."""
    if not isinstance(text, str):
        return None
    path = Path(text)
    temps = {Path("/tmp"), Path(tempfile.gettempdir())}
    if path.is_absolute() and path.parent in temps and path.name.startswith(PREFIX) and ".." not in path.parts:
        return path
    return None


def _with_descendants(pids: set) -> set:
    children: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found and pid > 1:
            found.add(pid)
            todo += children.get(pid, [])
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_gone(pids: set, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _links(run: str) -> list:
    """Interfaces in the root namespace whose names start with ``run``."""
    names = [line.split(":")[1].strip().split("@")[0] for line in sh("ip", "-o", "link").stdout.splitlines()]
    return [n for n in names if n.startswith(run)]


def _forget_stale_markers() -> None:
    """A marker whose namespace is gone and whose owner is dead (killed between its claim and
    ``ip netns add``, or between deleting and releasing): only the file is left."""
    if not OWNERS.is_dir():
        return
    present = set(_namespaces())
    for path in OWNERS.iterdir():
        if path.name in present:
            continue
        marker = _take_dead_claim(path.name)
        if marker is not None:
            with marker:
                path.unlink(missing_ok=True)


# --- shared by the harnesses -------------------------------------------------------------------

def unmount_under(root: Path) -> None:
    """Every mount at or under ``root``, deepest first (dockerd leaves overlay and netns mounts
    under its data and exec roots when killed)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1] == str(root) or line.split()[1].startswith(f"{root}/")]
    for mount in sorted(mounts, key=len, reverse=True):
        sh("umount", "-l", mount, check=False)


def stop(proc: subprocess.Popen | None, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
