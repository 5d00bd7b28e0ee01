"""Broker credentials: secrets, Mosquitto 2.0 password hashes, and their plan.

A secret is generated here, written once to the state directory (mode 0600)
and handed to its one user; the broker only ever sees its hash. The hash is
Mosquitto 2.0's own ``$7$`` format, byte for byte what ``mosquitto_passwd``
writes:

    name:$7$<iterations>$<base64 12-byte salt>$<base64 64-byte PBKDF2-SHA512>
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from agent_kit.contract import NAME_RE, ContractError, check_name
from hatchery.errors import UsageError

# mosquitto_passwd 2.0 writes 101 iterations. Our secrets are 256 random bits,
# so key stretching adds nothing against guessing; more iterations would only
# slow every CONNECT.
DEFAULT_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
SECRET_BYTES = 32
ADD, ROTATE, REVOKE = "add", "rotate", "revoke"


def new_secret(nbytes: int = SECRET_BYTES) -> str:
    """A URL-safe random secret (``nbytes`` of entropy)."""
    return secrets.token_urlsafe(nbytes)


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = DEFAULT_ITERATIONS) -> str:
    """The ``$7$`` PBKDF2-SHA512 hash Mosquitto 2.0 checks passwords against."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, HASH_BYTES)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash (constant-time compare)."""
    try:
        iterations, salt, digest = _split_hash(hashed)
    except ValueError:
        return False
    wanted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(digest))
    return hmac.compare_digest(wanted, digest)


def _split_hash(hashed: str) -> tuple:
    parts = hashed.split("$")
    if len(parts) != 5 or parts[:2] != ["", "7"]:
        raise ValueError("not a $7$ hash")
    return int(parts[2]), base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the password file ------------------------------------------------------

def check_username(name: str) -> str:
    """A username is a safe fleet name: no ':' (the file's separator), '+' or '#'."""
    try:
        return check_name(name)
    except ContractError as exc:
        raise UsageError(f"bad broker username: {exc.detail}",
                         "use lowercase letters, digits and hyphens") from None


def render_password_file(hashes: Mapping[str, str]) -> str:
    """``name:hash`` lines, sorted so the file only changes when a user does."""
    return "".join(f"{check_username(user)}:{hashes[user]}\n" for user in sorted(hashes))


def parse_password_file(text: str) -> dict:
    """``{username: hash}`` from a password file's text (blank lines skipped).

    A line whose name is not a safe fleet name is left out: the plan then
    revokes nobody by that name (there is no secret file to remove), the
    password file is rewritten without the line, and a good inventory repairs
    a file a bad one left behind, with no hand edits.
    """
    hashes = {}
    for line in text.splitlines():
        user, sep, hashed = line.strip().partition(":")
        if sep and NAME_RE.fullmatch(user):
            hashes[user] = hashed
    return hashes


def password_file_problems(text: str) -> list:
    """Every line Mosquitto would warn about or drop, as ``line N: why`` (empty when clean).

    Stricter than Mosquitto: each line must be ``name:$7$iterations$salt$hash``
    with a safe fleet name and a hash that decodes to the sizes we write.
    """
    problems = []
    if text and not text.endswith("\n"):
        problems.append("the file does not end with a newline")
    for number, line in enumerate(text.split("\n")[:-1] if text else [], start=1):
        why = _password_line_problem(line)
        if why:
            problems.append(f"line {number}: {why}")
    return problems


def _password_line_problem(line: str) -> str:
    user, sep, hashed = line.partition(":")
    if not sep:
        return "not 'name:hash'"
    if not NAME_RE.fullmatch(user):
        return f"{user!r} is not a safe fleet name"
    try:
        iterations, salt, digest = _split_hash(hashed)
    except (ValueError, binascii.Error):
        return f"the hash of {user!r} is not a $7$ PBKDF2-SHA512 hash"
    if not (0 < iterations < 10**7 and len(salt) == SALT_BYTES and len(digest) == HASH_BYTES):
        return f"the hash of {user!r} has the wrong iterations, salt or digest size"
    return ""


def read_password_file(path: Path) -> dict:
    """``{username: hash}`` from ``path``; empty when it does not exist."""
    try:
        return parse_password_file(Path(path).read_text())
    except FileNotFoundError:
        return {}


# --- secrets on disk --------------------------------------------------------

def secret_path(secrets_dir: Path, user: str) -> Path:
    return Path(secrets_dir) / f"{check_username(user)}.password"


def read_secret(secrets_dir: Path, user: str) -> str | None:
    """The stored secret of ``user``, or None if there is none."""
    try:
        return secret_path(secrets_dir, user).read_text().strip() or None
    except FileNotFoundError:
        return None


def write_secret(secrets_dir: Path, user: str, secret: str) -> Path:
    """Store a secret readable by its owner only (dir 0700, file 0600, atomic)."""
    path = secret_path(secrets_dir, user)
    write_private(path, secret + "\n")
    return path


def remove_secret(secrets_dir: Path, user: str) -> None:
    secret_path(secrets_dir, user).unlink(missing_ok=True)


# --- planning ---------------------------------------------------------------

@dataclass(frozen=True)
class CredentialChange:
    user: str
    action: str      # add | rotate | revoke
    reason: str


def plan_credentials(hashes: Mapping[str, str], stored: Mapping[str, str | None],
                     wanted: Iterable[str], rotate: Iterable[str] = ()) -> list:
    """What to add, rotate or revoke so exactly ``wanted`` users hold working secrets.

    ``hashes`` is the current password file, ``stored`` the secret each user
    holds in the state directory (None if missing). Pure: no I/O.
    """
    wanted, rotate = [check_username(u) for u in wanted], set(rotate)
    changes = [c for c in (_plan_user(u, hashes, stored, rotate) for u in sorted(set(wanted))) if c]
    changes += [CredentialChange(u, REVOKE, "no longer in the fleet")
                for u in sorted(set(hashes) - set(wanted))]
    return changes


def _plan_user(user: str, hashes: Mapping, stored: Mapping, rotate: set):
    if user not in hashes:
        return CredentialChange(user, ADD, "new user")
    if user in rotate:
        return CredentialChange(user, ROTATE, "rotation requested")
    secret = stored.get(user)
    if not secret:
        return CredentialChange(user, ROTATE, "secret missing from the state directory")
    if not verify_password(secret, hashes[user]):
        return CredentialChange(user, ROTATE, "stored secret does not match the broker's hash")
    return None


def apply_credentials(hashes: Mapping[str, str], changes: Iterable[CredentialChange],
                      make_secret: Callable[[], str] = new_secret) -> tuple:
    """(new ``{user: hash}``, ``{user: new secret}`` for each add/rotate). Pure."""
    result, issued = dict(hashes), {}
    for change in changes:
        if change.action == REVOKE:
            result.pop(change.user, None)
            continue
        issued[change.user] = make_secret()
        result[change.user] = hash_password(issued[change.user])
    return result, issued


def describe(changes: Iterable[CredentialChange]) -> str:
    """A diff-like summary that names users and actions, never secrets or hashes."""
    marks = {ADD: "+", ROTATE: "~", REVOKE: "-"}
    return "".join(f"{marks[c.action]} {c.user} ({c.action}: {c.reason})\n" for c in changes)


def write_private(path: Path, text: str) -> None:
    """Write atomically a file only its owner can read (parent dir 0700)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)     # O_CREAT keeps an old file's mode; start afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:   # created 0600: never readable by others, not even briefly
        f.write(text)
    tmp.replace(path)
