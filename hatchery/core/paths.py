"""The state directory's layout: the one module that knows where every file of a run lives.

Everything a run leaves behind sits under the state directory (``.hatchery/``
beside the inventory by default), never in the repo. On a Docker host reached
over SSH the same layout sits under ``~/.hatchery/<fleet>/``. Layout::

    .lock                               held by every changing task (core.state.state_lock)
    broker/mosquitto.conf               local runtime: the broker's config, beside
    broker/{passwd,acl}                   its auth files, pid file, logs and data
    broker/mosquitto.{pid,log,stdout}
    broker/data/
    broker/config/{mosquitto.conf,passwd,acl}   docker runtime: bind-mounted into the broker
    agents/<name>/agent.json            local runtime: the handler's config, pid file and log
    agents/<name>/handler.{pid,log,lock}   (the running handler holds the lock: one per agent)
    agents/<name>/provenance.json       what it runs: agent_kit hash, config hash (local and docker)
    agents/<name>/previous.json         what it ran before, for a rollback (fleet.rollout)
    kits/<hash>/agent_kit/              local runtime: the agent_kit copy handlers import
    agents/<name>/config/agent.json     docker runtime: mounted read-only at /etc/hatchery
    agents/<name>/secrets/              docker runtime: mounted read-only at /run/secrets/hatchery
    build/<name>/                       docker runtime: the agent image's build context
    cache/base-images/<image id>.json   docker runtime: what a base image has (runtime.docker.baseimage)
    secrets/<user>.password             broker secrets (0600 in a 0700 directory)
    secrets/<agent>.sigkey              signing keys (and _broadcast.sigkey)
    secrets/passwd                      the hashed password file the broker gets a copy of
    secrets/<agent>.retired             marker: agent.retire revoked it; hatch clears it
    tls/{ca.crt,ca.key,server.crt,server.key}   generated TLS material
    collect.log, audit.log, heal.log    the scheduled jobs' output
    intent.json, intent.lock            operator intent: agents stopped on purpose, rollout leases

``StatePaths(root)`` answers with paths under ``root``; ``StatePaths.relative()``
answers with the same paths relative to the root, for files written on a
Docker host (``runtime.docker.remote``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

DEFAULT_STATE_DIR = ".hatchery"       # beside the inventory, unless it says state_dir
# The credential files an agent receives, by the name they carry in its secrets directory
# (provision.credentials writes them; the runtimes put them where the handler reads them).
PASSWORD, SIGNING_KEY, BROADCAST = "password", "signing.key", "broadcast.key"


def remote_root(home: PurePosixPath, fleet: str) -> PurePosixPath:
    """The state root on a Docker host reached over SSH (when broker.remote_dir is unset)."""
    return PurePosixPath(home) / DEFAULT_STATE_DIR / fleet


RETIRED_SUFFIX = ".retired"      # secrets/<agent>.retired: agent.retire revoked it (core.intent reads it)


@dataclass(frozen=True)

class StatePaths:
    """Paths of the state directory ``root`` (a Path, or a relative PurePosixPath)."""

    root: PurePath

    @classmethod
    def relative(cls) -> "StatePaths":
        """The layout relative to its root: ``str(StatePaths.relative().broker_dir) == 'broker'``."""
        return cls(PurePosixPath())

    @property
    def lock(self) -> PurePath:
        return self.root / ".lock"

    # --- broker, local runtime ---
    @property
    def broker_dir(self) -> PurePath:
        return self.root / "broker"

    @property
    def broker_conf(self) -> PurePath:
        return self.broker_dir / "mosquitto.conf"

    @property
    def broker_pid(self) -> PurePath:
        return self.broker_dir / "mosquitto.pid"

    @property
    def broker_log(self) -> PurePath:
        return self.broker_dir / "mosquitto.log"

    @property
    def broker_stdout(self) -> PurePath:
        return self.broker_dir / "mosquitto.stdout"

    @property
    def broker_data(self) -> PurePath:
        return self.broker_dir / "data"

    # --- broker, docker runtime: the directory mounted at the container's /mosquitto/config ---
    @property
    def broker_mount_dir(self) -> PurePath:
        return self.broker_dir / "config"

    @property
    def mounted_broker_conf(self) -> PurePath:
        return self.broker_mount_dir / "mosquitto.conf"

    # --- agents ---
    @property
    def agents_dir(self) -> PurePath:
        return self.root / "agents"

    def agent_dir(self, name: str) -> PurePath:
        return self.agents_dir / name

    def agent_config(self, name: str) -> PurePath:
        return self.agent_dir(name) / "agent.json"

    def agent_pid(self, name: str) -> PurePath:
        return self.agent_dir(name) / "handler.pid"

    def agent_log(self, name: str) -> PurePath:
        return self.agent_dir(name) / "handler.log"

    def agent_lock(self, name: str) -> PurePath:
        """Held (flock) by the running handler: the kernel's word on "one handler per agent"."""
        return self.agent_dir(name) / "handler.lock"

    def agent_provenance(self, name: str) -> PurePath:
        """What the running agent came from (agent_kit hash, config hash, start time)."""
        return self.agent_dir(name) / "provenance.json"

    def agent_previous(self, name: str) -> PurePath:
        """What it ran before its last upgrade: where fleet.rollout puts a failed agent back."""
        return self.agent_dir(name) / "previous.json"

    @property
    def kits_dir(self) -> PurePath:
        return self.root / "kits"

    def kit_dir(self, digest: str) -> PurePath:
        """Local runtime: one copy of agent_kit per code hash; handlers import it from here."""
        return self.kits_dir / digest

    def mounted_agent_config(self, name: str) -> PurePath:
        """Docker runtime: its directory is mounted read-only at /etc/hatchery."""
        return self.agent_dir(name) / "config" / "agent.json"

    def mounted_agent_ca(self, name: str) -> PurePath:
        """Docker runtime with TLS: the fleet CA certificate beside the agent's config."""
        return self.agent_dir(name) / "config" / "ca.crt"

    def agent_secrets_dir(self, name: str) -> PurePath:
        """Docker runtime: mounted read-only at /run/secrets/hatchery."""
        return self.agent_dir(name) / "secrets"

    @property
    def base_image_cache(self) -> PurePath:
        return self.root / "cache" / "base-images"

    def build_dir(self, name: str) -> PurePath:
        return self.root / "build" / name

    # --- credentials ---
    @property
    def secrets_dir(self) -> PurePath:
        return self.root / "secrets"

    @property
    def password_file(self) -> PurePath:
        return self.secrets_dir / "passwd"

    def secret_file(self, user: str) -> PurePath:
        return self.secrets_dir / f"{user}.password"

    def key_file(self, name: str) -> PurePath:
        return self.secrets_dir / f"{name}.sigkey"

    def retired_marker(self, name: str) -> PurePath:
        return self.secrets_dir / f"{name}{RETIRED_SUFFIX}"

    # --- TLS, scheduled jobs ---
    @property
    def tls_dir(self) -> PurePath:
        return self.root / "tls"

    @property
    def tls_files(self) -> dict:
        """The generated TLS listener files, by their mosquitto.conf setting."""
        return {"cafile": self.tls_dir / "ca.crt", "certfile": self.tls_dir / "server.crt",
                "keyfile": self.tls_dir / "server.key"}

    @property
    def tls_ca_key(self) -> PurePath:
        """The fleet CA's key: it never leaves the state directory."""
        return self.tls_dir / "ca.key"

    @property
    def collect_log(self) -> PurePath:
        return self.root / "collect.log"

    @property
    def heal_log(self) -> PurePath:
        return self.root / "heal.log"

    @property
    def audit_log(self) -> PurePath:
        return self.root / "audit.log"

    @property
    def intent_file(self) -> PurePath:
        """What the operator wants of each agent: stopped, and rollout leases (core.intent)."""
        return self.root / "intent.json"

    @property
    def intent_lock(self) -> PurePath:
        """Held for the few milliseconds a change to intent.json takes."""
        return self.root / "intent.lock"

    @property
    def dashboard_password(self) -> PurePath:
        """fleet.dashboard's login, when the operator keeps it here (0600, never argv)."""
        return self.root / "dashboard.password"


def state_paths(inv) -> StatePaths:
    """The paths of ``inv``'s state directory (an Inventory, or anything with ``state_dir``)."""
    return StatePaths(Path(inv.state_dir))
