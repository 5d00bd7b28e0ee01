"""Files on the Docker host: the local state directory, or a directory over SSH.

Containers bind-mount their config files from the host that runs the engine.
With a local engine that is the state directory; with ``docker_host:
ssh://user@host[:port]`` Fabric puts the files under
``~/.hatchery/<fleet>/`` on that host (or ``broker.remote_dir``) (the engine itself is reached through the
system ssh client, see ``runtime.docker.engine``). Both offer the same small
interface: ``path``, ``read``, ``write``, ``remove_tree``.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional
from urllib.parse import urlparse

from hatchery.core.paths import remote_root
from hatchery.core.state import ensure_dir, read_text, write_if_changed
from hatchery.errors import RuntimeFailure, UsageError
from hatchery.inventory.model import Inventory


class LocalFiles:
    """Files under a local directory (the state directory)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, rel: str) -> str:
        return str(self.root / rel)

    def read(self, rel: str) -> str:
        return read_text(self.root / rel)

    def write(self, rel: str, text: str, mode: int = 0o600, dir_mode: int = 0o700) -> bool:
        target = self.root / rel
        ensure_dir(target.parent).chmod(dir_mode)  # a mounted dir must be traversable by its reader
        return write_if_changed(target, text, mode)

    def remove_tree(self, rel: str) -> None:
        shutil.rmtree(self.root / rel, ignore_errors=True)

    def chown(self, rel: str, uid: int, gid: int) -> None:
        os.chown(self.root / rel, uid, gid)


class SshFiles:
    """Files under ``~/.hatchery/<fleet>`` on an SSH host, through a Fabric connection."""

    def __init__(self, connection, fleet: str, root: Optional[str] = None):
        self.connection = connection
        if root is None:
            with ssh_errors(connection, "find the remote home directory"):
                root = str(remote_root(PurePosixPath(connection.sftp().normalize(".")), fleet))
        self.root = PurePosixPath(root)

    def path(self, rel: str) -> str:
        return str(self.root / rel)

    def read(self, rel: str) -> str:
        with ssh_errors(self.connection, f"read {self.path(rel)}"):
            try:
                with self.connection.sftp().open(self.path(rel)) as handle:
                    return handle.read().decode()
            except FileNotFoundError:
                return ""

    def write(self, rel: str, text: str, mode: int = 0o600, dir_mode: int = 0o700) -> bool:
        if self.read(rel) == text:
            return False
        target = self.root / rel
        tmp = f"{target}.tmp"
        with ssh_errors(self.connection, f"write {target}"):
            self._run(f"mkdir -p {shlex.quote(str(target.parent))} && "
                      f"chmod {dir_mode:o} {shlex.quote(str(target.parent))}")
            sftp = self.connection.sftp()
            sftp.putfo(io.BytesIO(text.encode()), tmp)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, str(target))   # atomic, as locally
        return True

    def chown(self, rel: str, uid: int, gid: int) -> None:
        with ssh_errors(self.connection, f"chown {self.path(rel)}"):
            self.connection.sftp().chown(self.path(rel), uid, gid)

    def remove_tree(self, rel: str) -> None:
        with ssh_errors(self.connection, f"remove {self.path(rel)}"):
            self._run(f"rm -rf {shlex.quote(self.path(rel))}")

    def _run(self, command: str) -> None:
        self.connection.run(command, hide=True, in_stream=False)


def parse_ssh_url(url: str) -> tuple:
    """``ssh://user@host:port`` -> (user or None, host, port or None)."""
    parsed = urlparse(url)
    if parsed.scheme != "ssh" or not parsed.hostname:
        raise UsageError(f"docker_host {url!r} is not an ssh:// address",
                         "write it as ssh://user@host or ssh://user@host:port")
    return parsed.username, parsed.hostname, parsed.port


def connect(url: str):
    """A Fabric Connection for ``ssh://user@host[:port]``; keys come from ~/.ssh/config or the agent."""
    from fabric import Connection
    user, host, port = parse_ssh_url(url)
    return Connection(host, user=user, port=port, connect_timeout=10)


def files_for(docker_host: Optional[str], state_dir: Path, fleet: str, remote_dir: Optional[str] = None):
    """Where the engine at ``docker_host`` finds mounted files: local, or over SSH under ``remote_dir``."""
    if docker_host and docker_host.startswith("ssh://"):
        return _ssh_files(docker_host, fleet, remote_dir)
    return LocalFiles(state_dir)


def fleet_files(inv: Inventory, docker_host: Optional[str]):
    """The files of ``inv``'s fleet on the engine at ``docker_host`` (None: the local one),
    under that host's ``remote_dir`` (hosts:), else ``broker.remote_dir``."""
    host = inv.host_by_engine(docker_host)
    remote_dir = host.remote_dir if host and host.remote_dir else inv.broker.remote_dir
    return files_for(docker_host, inv.state_dir, inv.broker.container, remote_dir)


_ssh_cache: dict = {}


def _ssh_files(url: str, fleet: str, remote_dir: Optional[str]) -> SshFiles:
    key = (url, fleet, remote_dir)
    if key not in _ssh_cache:
        _ssh_cache[key] = SshFiles(connect(url), fleet, remote_dir)
    return _ssh_cache[key]


def forget_connections() -> None:
    for files in _ssh_cache.values():
        files.connection.close()
    _ssh_cache.clear()


@contextmanager
def ssh_errors(connection, action: str) -> Iterator[None]:
    """Map paramiko, socket and invoke errors to RuntimeFailure with a fix."""
    import paramiko
    from invoke.exceptions import UnexpectedExit
    where = f"{connection.user}@{connection.host}:{connection.port}"
    try:
        yield
    except paramiko.AuthenticationException:
        raise RuntimeFailure(f"{action}: ssh {where} refused our key",
                             "add your public key to the remote ~/.ssh/authorized_keys "
                             "or name it in ~/.ssh/config (IdentityFile)") from None
    except UnexpectedExit as exc:
        raise RuntimeFailure(f"{action} on {where} failed: {exc.result.stderr.strip()}",
                             "check the remote user's permissions") from None
    except (paramiko.SSHException, OSError) as exc:
        raise RuntimeFailure(f"{action}: cannot reach {where} over ssh: {exc}",
                             f"check that this works: ssh -p {connection.port} {where.rsplit(':', 1)[0]} true") from None
