"""HMAC-SHA256 signatures on commands, with a replay window.

Standard library only: this runs inside every agent container (Python 3.9+).

The manager signs each command with the receiving agent's own key; the agent
checks, in this order, that the signature is right (``bad-signature``), that
``ts`` lies within ``window`` seconds of its clock either way (``stale``) and
that it has not seen the command's ``id`` before (``replayed``). Only a
command that passes all three is remembered, so forged traffic cannot flush
the replay cache. Ids older than the window need no memory: they are stale.

The signature covers a canonical encoding of every other field (sorted keys,
compact, ASCII-only JSON), so adding a field to the contract later signs it
automatically, and changing any field breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import time
from collections import OrderedDict
from typing import Optional

from .contract import COMMAND_ID_RE, ContractError, parse_rfc3339

SIG_KEY = "sig"
BAD_SIGNATURE, STALE, REPLAYED = "bad-signature", "stale", "replayed"
DEFAULT_WINDOW = 30.0


class SignatureError(ContractError):
    """A command refused by ``verify_command``; ``reason`` is one of the codes above."""


def canonical(command: dict) -> bytes:
    """The bytes that are signed: every field except ``sig``, canonically encoded."""
    fields = {k: v for k, v in command.items() if k != SIG_KEY}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def signature(command: dict, key: bytes) -> str:
    """Hex HMAC-SHA256 of the command's canonical encoding."""
    if not isinstance(key, bytes) or not key:
        raise ValueError("a signing key must be non-empty bytes")
    return hmac.new(key, canonical(command), hashlib.sha256).hexdigest()


def sign_command(command: dict, key: bytes) -> dict:
    """A copy of ``command`` with ``sig`` added; it must carry ``ts`` and ``id``."""
    for needed in ("ts", "id"):
        if needed not in command:
            raise ValueError(f"a signed command needs {needed!r} (replay protection)")
    return {**command, SIG_KEY: signature(command, key)}


class ReplayCache:
    """Ids of accepted commands, each kept until its timestamp leaves the window.

    Bounded: past ``size`` entries the oldest is forgotten, which could let
    that one id be replayed inside its window; at the default 4096 that takes
    more than 130 accepted commands per second for one agent.

    With ``path`` the cache survives a restart: each accepted id is appended
    to the file (one short line, 0600, no fsync: a kill -9 keeps what the
    kernel has) and read back at start, expired ids dropped. Without it, a
    command captured on the bus and replayed after the handler restarted,
    within its window, ran again. The file is compacted at start and whenever
    it holds twice ``size`` lines, so it stays bounded too.
    """

    def __init__(self, size: int = 4096, path: Optional[str] = None,
                 now: Optional[float] = None):
        self.size = size
        self.path = path
        self._expiry: OrderedDict = OrderedDict()
        self._lines = 0
        if path:
            self._load(time.time() if now is None else now)

    def __contains__(self, command_id: str) -> bool:
        return command_id in self._expiry

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, command_id: str, expires: float, now: float) -> None:
        self._forget_expired(now)
        self._expiry[command_id] = expires
        self._expiry.move_to_end(command_id)
        while len(self._expiry) > self.size:
            self._expiry.popitem(last=False)
        if self.path:
            self._append(command_id, expires)

    def _forget_expired(self, now: float) -> None:
        # Oldest first, stop at the first live one: O(expired), not O(size) per
        # command (a full scan cost ~0.1 ms per command at a few thousand ids).
        # Ids arrive roughly in ts order; one that expires out of order is only
        # kept a little longer, never dropped early.
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires >= now:
                return
            del self._expiry[oldest]

    # --- persistence -----------------------------------------------------------------

    def _load(self, now: float) -> None:
        try:
            with open(self.path, encoding="ascii", errors="replace") as handle:
                lines = handle.read(self.size * 2 * 100).splitlines()
        except OSError:
            lines = []
        for line in lines[-2 * self.size:]:
            command_id, _, expires = line.partition(" ")
            try:
                when = float(expires)
            except ValueError:
                continue        # a line cut short by a crash, or junk: skip it
            if COMMAND_ID_RE.fullmatch(command_id) and math.isfinite(when) and when >= now:
                self._expiry[command_id] = when
        while len(self._expiry) > self.size:
            self._expiry.popitem(last=False)
        self._compact()

    def _append(self, command_id: str, expires: float) -> None:
        if self._lines >= 2 * self.size:
            self._compact()
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as handle:
                handle.write(f"{command_id} {expires:.3f}\n")
            self._lines += 1
        except OSError:
            pass        # a full disk must not stop commands; the window still bounds replays

    def _compact(self) -> None:
        tmp = f"{self.path}.tmp"
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.writelines(f"{i} {e:.3f}\n" for i, e in self._expiry.items())
            os.replace(tmp, self.path)
            self._lines = len(self._expiry)
        except OSError:
            pass


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def verify_command(command: dict, key: bytes, *, window: float = DEFAULT_WINDOW,
                   now: Optional[float] = None, seen: ReplayCache) -> None:
    """Return if the command is authentic, fresh and new; else raise SignatureError."""
    now = time.time() if now is None else now
    _check_signature(command, key)
    sent = _timestamp(command)
    if abs(now - sent) > window:
        raise SignatureError(STALE, f"ts is {now - sent:+.0f}s from now; window {window:g}s")
    command_id = command.get("id")
    if not isinstance(command_id, str):
        raise SignatureError(REPLAYED, "no command id: a replay cannot be ruled out")
    if command_id in seen:
        raise SignatureError(REPLAYED, "command id already seen")
    seen.add(command_id, expires=sent + window, now=now)


def _check_signature(command: dict, key: bytes) -> None:
    given = command.get(SIG_KEY)
    if not isinstance(given, str):
        raise SignatureError(BAD_SIGNATURE, "no signature")
    if not hmac.compare_digest(given.encode("ascii", "replace"),
                               signature(command, key).encode()):
        raise SignatureError(BAD_SIGNATURE)


def _timestamp(command: dict) -> float:
    try:
        return parse_rfc3339(command.get("ts")).timestamp()
    except ContractError:
        raise SignatureError(STALE, "no valid ts") from None
