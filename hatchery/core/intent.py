"""Operator intent: what the operator wants of each agent, where every tool reads it.

The bus says what agents do; intent says what the operator asked for. Without
it a stop the operator made looks like an outage (bus-health exits 1, heal
starts it again) and heal fights a rollout that has just stopped an agent on
purpose. Every tool reads one ``IntentBook``:

- ``running``: the default; nothing recorded.
- ``stopped``: agent.stop recorded it (agent.hatch and agent.restart clear it).
- ``retired``: agent.retire revoked it; the credentials' marker
  (``secrets/<name>.retired``) is the one record of that, read here.
- ``in-rollout``: fleet.rollout holds a lease on it (owner, expiry). An expired
  lease is ignored, so a rollout killed with -9 holds nothing for long.

``intent.json`` in the state directory is replaced atomically (a reader never
sees half a file) under ``intent.lock`` (two writers never lose each other's
change). A file that cannot be read as intent is treated as empty and
rewritten by the next change: intent is advisory for readers, never a reason
to fail a health check.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from hatchery.core.paths import RETIRED_SUFFIX, state_paths
from hatchery.core.state import ensure_dir, write_if_changed
from hatchery.core.words import Word
from hatchery.errors import UsageError

INTENT_VERSION = 1
MAX_LEASE_SECONDS = 24 * 3600


class Intent(Word):
    RUNNING = "running"
    STOPPED = "stopped"
    RETIRED = "retired"
    IN_ROLLOUT = "in-rollout"


@dataclass(frozen=True)
class Lease:
    """A rollout's hold on an agent: heal leaves it alone until ``expires`` (epoch seconds)."""

    owner: str
    expires: float
    taken: float

    def valid(self, now: float) -> bool:
        return now < self.expires

    def as_dict(self) -> dict:
        return {"owner": self.owner, "expires": self.expires, "taken": self.taken}


@dataclass(frozen=True)
class Stopped:
    at: float
    by: str


@dataclass(frozen=True)
class IntentBook:
    """One read of the operator's intent for the whole fleet."""

    stopped: dict = field(default_factory=dict)      # name -> Stopped
    retired: frozenset = frozenset()
    leases: dict = field(default_factory=dict)       # name -> Lease (valid or not)

    def of(self, name: str, now: Optional[float] = None) -> Intent:
        """What the operator wants of ``name`` now; retired beats a lease beats stopped."""
        if name in self.retired:
            return Intent.RETIRED
        if self.lease(name, now) is not None:
            return Intent.IN_ROLLOUT
        if name in self.stopped:
            return Intent.STOPPED
        return Intent.RUNNING

    def lease(self, name: str, now: Optional[float] = None) -> Optional[Lease]:
        """The lease on ``name`` if one holds at ``now``; an expired one is ignored."""
        lease = self.leases.get(name)
        return lease if lease is not None and lease.valid(time.time() if now is None else now) else None

    def since(self, name: str) -> Optional[float]:
        """When the recorded intent was set (stopped or leased), if known."""
        if name in self.stopped:
            return self.stopped[name].at
        lease = self.leases.get(name)
        return lease.taken if lease else None

    def wants_running(self, name: str, now: Optional[float] = None) -> bool:
        """True when heal may act on ``name``: not stopped, retired or in a rollout."""
        return self.of(name, now) is Intent.RUNNING


# --- reading ------------------------------------------------------------------------

def read_intent(inv) -> IntentBook:
    """The intent recorded in ``inv``'s state directory (an empty book when there is none)."""
    paths = state_paths(inv)
    data = _load(Path(paths.intent_file))
    return IntentBook(stopped=_stopped(data), retired=frozenset(_retired(Path(paths.secrets_dir))),
                      leases=_leases(data))


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("v") == INTENT_VERSION else {}


def _stopped(data: dict) -> dict:
    found = {}
    for name, entry in (data.get("stopped") or {}).items():
        if isinstance(entry, dict) and _number(entry.get("at")) is not None:
            found[name] = Stopped(float(entry["at"]), str(entry.get("by", ""))[:80])
    return found


def _leases(data: dict) -> dict:
    found = {}
    for name, entry in (data.get("leases") or {}).items():
        if isinstance(entry, dict) and _number(entry.get("expires")) is not None:
            found[name] = Lease(str(entry.get("owner", ""))[:120], float(entry["expires"]),
                                _number(entry.get("taken")) or 0.0)
    return found


def _number(value) -> Optional[float]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    return float(value) if ok and abs(value) < 1e12 else None


def _retired(secrets_dir: Path) -> set:
    try:
        return {p.name[: -len(RETIRED_SUFFIX)] for p in secrets_dir.iterdir()
                if p.name.endswith(RETIRED_SUFFIX)}
    except OSError:
        return set()


# --- changing -----------------------------------------------------------------------

@contextlib.contextmanager
def _changing(inv):
    """Hold intent.lock; yield the current data to change in place; write it back atomically."""
    paths = state_paths(inv)
    ensure_dir(Path(paths.root))
    with open(paths.intent_lock, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            data = _load(Path(paths.intent_file)) or {"v": INTENT_VERSION}
            yield data
            write_if_changed(Path(paths.intent_file), json.dumps(data, indent=1, sort_keys=True) + "\n")
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_stopped(inv, names: Iterable[str], by: str) -> None:
    """agent.stop: these agents are down on purpose (heal leaves them, bus-health says so)."""
    now = time.time()
    with _changing(inv) as data:
        stopped = data.setdefault("stopped", {})
        for name in names:
            stopped[name] = {"at": now, "by": by}


def record_running(inv, names: Iterable[str]) -> None:
    """agent.hatch, agent.restart: these agents are meant to run again."""
    names = list(names)
    book = read_intent(inv)
    if not any(n in book.stopped for n in names):
        return      # nothing to clear: no write, no lock
    with _changing(inv) as data:
        for name in names:
            (data.get("stopped") or {}).pop(name, None)


def owner_label(task: str) -> str:
    """Who holds a lease, for people reading it: ``fleet.rollout pid 123 on host``."""
    return f"{task} pid {os.getpid()} on {socket.gethostname()}"[:120]


def take_lease(inv, names: Iterable[str], owner: str, seconds: float) -> Lease:
    """Lease ``names`` to ``owner`` for ``seconds``; UsageError naming the holder when another
    valid lease holds one of them (two rollouts must not replace the same agent)."""
    if not 0 < seconds <= MAX_LEASE_SECONDS:
        raise UsageError(f"a lease of {seconds!r}s is out of range", f"use 1 to {MAX_LEASE_SECONDS} seconds")
    now = time.time()
    lease = Lease(owner, now + seconds, now)
    names = list(names)
    with _changing(inv) as data:
        leases = data.setdefault("leases", {})
        current = _leases(data)
        for name in names:
            held = current.get(name)
            if held and held.valid(now) and held.owner != owner:
                raise UsageError(f"agent {name} is leased to {held.owner} until "
                                 f"{time.strftime('%H:%M:%S', time.localtime(held.expires))}",
                                 "wait for that rollout to finish (an expired lease is ignored)")
        for name in names:
            leases[name] = lease.as_dict()
    return lease


def release_lease(inv, names: Iterable[str], owner: str) -> None:
    """Drop ``owner``'s leases on ``names`` (others' leases are left as they are)."""
    with _changing(inv) as data:
        leases = data.get("leases") or {}
        for name in names:
            if (leases.get(name) or {}).get("owner") == owner:
                del leases[name]


@contextlib.contextmanager
def leased(inv, names: Iterable[str], owner: str, seconds: float):
    """Hold a lease on ``names`` for the block; released on the way out, Ctrl-C included."""
    names = list(names)
    lease = take_lease(inv, names, owner, seconds)
    try:
        yield lease
    finally:
        release_lease(inv, names, owner)
