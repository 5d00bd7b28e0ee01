"""The fleet's credentials, planned from the inventory: secrets, hashes, ACL, signing keys.

``plan_auth(inv)`` works out, without touching anything, what every broker
user should hold: the manager, each agent, the read-only ``monitor`` and
``exporter`` and the ``recorder``. New and rotated secrets are generated in
memory while planning, so the wanted password file is known before anything
is written (``--check`` and ``--diff`` stay honest, and the runtimes can
compare it with what the broker reads). ``FleetAuth.change()`` is the one
plan item that writes them to the state directory.

State directory layout (``secrets/`` is 0700, every file 0600; ``core.paths`` names them)::

    secrets/<user>.password     the user's broker secret
    secrets/<agent>.sigkey      the agent's HMAC key for signed commands
    secrets/_broadcast.sigkey   the fleet-wide key for signed broadcasts
    secrets/passwd              the hashed password file (the broker gets a copy)
    secrets/<agent>.retired     marker: agent.retire revoked it; hatch clears it
"""

from __future__ import annotations

import hashlib
import secrets as random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from hatchery.core.paths import BROADCAST, PASSWORD, SIGNING_KEY, state_paths
from hatchery.core.plan import Action, Change
from hatchery.core.words import plural
from hatchery.errors import UsageError
from hatchery.inventory.model import Inventory
from hatchery.security import acl
from hatchery.security import passwords as pw

BROADCAST_KEY = "_broadcast"       # '_' never appears in a fleet name: cannot clash
KEY_BYTES = 32
# The files an agent receives (PASSWORD, SIGNING_KEY, BROADCAST, imported above and used
# here under these names) are named in core.paths, below the renderers that name them.


# Where each file lives is core.paths' business; these name them for an inventory.

def secrets_dir(inv: Inventory) -> Path:
    return state_paths(inv).secrets_dir


def password_file(inv: Inventory) -> Path:
    return state_paths(inv).password_file


def key_path(inv: Inventory, name: str) -> Path:
    return state_paths(inv).key_file(name)


def secret_path(inv: Inventory, user: str) -> Path:
    return state_paths(inv).secret_file(pw.check_username(user))


def retired_marker(inv: Inventory, name: str) -> Path:
    return state_paths(inv).retired_marker(pw.check_username(name))


def retired_agents(inv: Inventory) -> set:
    return {name for name in inv.agents if retired_marker(inv, name).exists()}


def read_key(inv: Inventory, name: str) -> Optional[str]:
    try:
        return key_path(inv, name).read_text().strip() or None
    except FileNotFoundError:
        return None


def new_key() -> str:
    return random.token_hex(KEY_BYTES)


@dataclass
class FleetAuth:
    """What every broker user should hold, and the one Change that writes it."""

    inv: Inventory
    agents: list                        # agents that hold credentials
    hashes: dict                        # wanted {user: $7$ hash}
    secrets: dict                       # wanted {user: secret}
    keys: dict                          # wanted {agent or BROADCAST_KEY: hex key}
    changes: list = field(default_factory=list)      # pw.CredentialChange
    new_keys: list = field(default_factory=list)     # key names (re)generated
    retiring: list = field(default_factory=list)     # agents agent.retire revokes
    stray_lines: list = field(default_factory=list)  # password file lines we would not write

    @property
    def needed(self) -> bool:
        return bool(self.changes or self.new_keys or self.stray_lines)

    def password_text(self) -> str:
        return pw.render_password_file(self.hashes)

    def acl_text(self) -> str:
        return acl.render_acl(acl.fleet_grants(self.inv.manager, self.agents))

    def agent_files(self, name: str) -> dict:
        """The files agent ``name`` is handed at run time: {file name: text}."""
        if name not in self.secrets:
            raise UsageError(f"agent {name!r} holds no broker credentials (retired?)",
                             f"hatch it again: invoke agent.hatch --name {name}")
        return {PASSWORD: self.secrets[name] + "\n", SIGNING_KEY: self.keys[name] + "\n",
                BROADCAST: self.keys[BROADCAST_KEY] + "\n"}

    def fingerprint(self, name: str) -> str:
        """A short digest of an agent's files: changes when they rotate, reveals nothing."""
        files = self.agent_files(name)
        return hashlib.sha256("".join(files[k] for k in sorted(files)).encode()).hexdigest()[:16]

    def change(self) -> Change:
        item = "broker credentials"
        if not self.needed:
            return Change(item, Action.NONE, "every user holds a working secret and key")
        reasons = [f"{c.action} {c.user}" for c in self.changes]
        reasons += [f"new signing key {k}" for k in self.new_keys if k not in
                    {c.user for c in self.changes}]
        if self.stray_lines:
            reasons.append(f"password file rewritten without {plural(len(self.stray_lines), 'invalid line')}")
        diff = pw.describe(self.changes) + "".join(f"+ signing key {k}\n" for k in self.new_keys)
        diff += "".join(f"- password file {p}\n" for p in self.stray_lines)
        return Change(item, Action.UPDATE, ", ".join(reasons), diff, self._write)

    def _write(self) -> str:
        directory = secrets_dir(self.inv)
        issued = {c.user for c in self.changes if c.action != pw.REVOKE}
        for user in issued:      # secrets first: a hash never exists without its secret
            pw.write_secret(directory, user, self.secrets[user])
        for name in self.new_keys:
            pw.write_private(key_path(self.inv, name), self.keys[name] + "\n")
        pw.write_private(password_file(self.inv), self.password_text())
        for change in self.changes:
            if change.action == pw.REVOKE:
                pw.remove_secret(directory, change.user)
                key_path(self.inv, change.user).unlink(missing_ok=True)
        for name in self.retiring:   # so that broker.deploy does not re-issue them
            pw.write_private(retired_marker(self.inv, name), "revoked by agent.retire\n")
        for name in self.agents:
            retired_marker(self.inv, name).unlink(missing_ok=True)
        revoked = len(self.changes) - len(issued)
        return f"{plural(len(issued), 'secret')} issued, {revoked} revoked, {plural(len(self.new_keys), 'key')} made"


def plan_auth(inv: Inventory, *, rotate: Iterable[str] = (), revoke: Iterable[str] = (),
              restore: Iterable[str] = ()) -> FleetAuth:
    """Plan every user's credentials. Pure apart from reading the state directory.

    ``revoke`` drops agents (agent.retire); ``restore`` brings retired agents
    back (agent.hatch); ``rotate`` issues new secrets and keys.
    """
    rotate, revoke = set(rotate), set(revoke)
    excluded = (retired_agents(inv) - set(restore)) | revoke
    agents = [name for name in inv.agents if name not in excluded]
    users = acl.fleet_users(inv.manager, agents)
    current = pw.read_password_file(password_file(inv))
    stray = _stray_password_lines(inv)
    stored = {u: pw.read_secret(secrets_dir(inv), u) for u in set(users) | set(current)}
    changes = pw.plan_credentials(current, stored, users, rotate)
    hashes, issued = pw.apply_credentials(current, changes)
    wanted_secrets = {u: issued.get(u) or stored[u] for u in users}
    keys, new_keys = _plan_keys(inv, agents, rotate | set(issued))
    return FleetAuth(inv, agents, hashes, wanted_secrets, keys, changes, new_keys,
                     retiring=sorted(revoke & set(inv.agents)), stray_lines=stray)


def _stray_password_lines(inv: Inventory) -> list:
    """Problems of the stored password file (a bad run may have left a broken name in it)."""
    try:
        text = password_file(inv).read_text()
    except FileNotFoundError:
        return []
    return pw.password_file_problems(text)


def _plan_keys(inv: Inventory, agents: list, renew: set) -> tuple:
    keys, new = {}, []
    for name in [*agents, BROADCAST_KEY]:
        existing = None if name in renew else read_key(inv, name)
        keys[name] = existing or new_key()
        if not existing:
            new.append(name)
    return keys, new


def stored_secret(inv: Inventory, user: str) -> Optional[str]:
    return pw.read_secret(secrets_dir(inv), user)


def user_secret(inv: Inventory, user: str) -> str:
    """A control-side user's stored secret; UsageError with the fix when missing."""
    secret = pw.read_secret(secrets_dir(inv), user)
    if secret is None:
        raise UsageError(f"no broker credentials for {user!r} in {secrets_dir(inv)}",
                         "run: invoke broker.deploy (it issues every user's credentials)")
    return secret


def signing_keys(inv: Inventory):
    """``key_for(agent or None) -> bytes | None``: the manager's view of the signing keys.

    None (broadcast) gives the fleet-wide broadcast key. An agent without a
    key gets None, and its commands go unsigned (auth off, or not hatched).
    """
    cache: dict = {}

    def key_for(name: Optional[str]) -> Optional[bytes]:
        label = name or BROADCAST_KEY
        if label not in cache:
            text = read_key(inv, label)
            cache[label] = bytes.fromhex(text) if text else None
        return cache[label]
    return key_for
