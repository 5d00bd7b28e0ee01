"""Swarm secrets and configs, named by their content: a change is a new object, never an edit.

Swarm secrets and configs cannot be changed once made. Each file a service reads
(a credential, the CA, a config) is an object called ``<owner>-<file>-<digest>``:
the same content keeps its name (nothing to do), new content is a new object and
a service update. After the update, versions of the same file older than the
previous one are removed (the previous stays, for a rollback to the spec that
used it); an object a service still uses is never removed.

Every object carries the fleet labels and ``io.hatchery.object``: its owner and
file, which versions of one file share.
"""

from __future__ import annotations

from dataclasses import dataclass

from hatchery.core.render import content_hash
from hatchery.errors import DockerError
from hatchery.runtime.docker.engine import docker_errors

OBJECT_LABEL = "io.hatchery.object"        # "<owner>/<file>": the versions of one file share it
MAX_NAME = 64                              # Swarm's limit on a secret's or config's name
KEEP = 2                                   # versions kept per file: the current and the previous


@dataclass(frozen=True)
class Wanted:
    """One file a service should read: from a secret (private) or a config (public)."""

    owner: str              # the service's name
    file: str               # e.g. passwd, agent.json
    text: str
    target: str             # the path in the container
    secret: bool = True
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o400

    @property
    def digest(self) -> str:
        return content_hash(self.owner, self.file, self.text)[:12]

    @property
    def name(self) -> str:
        base = f"{self.owner}-{self.file}".replace("/", "-")
        return f"{base[:MAX_NAME - 13]}-{self.digest}"

    @property
    def logical(self) -> str:
        return f"{self.owner}/{self.file}"

    def described(self) -> str:
        """What --diff shows: the name and target, never the content of a secret."""
        kind = "secret" if self.secret else "config"
        return f"{kind} {self.name} -> {self.target} ({self.uid}:{self.gid} {self.mode:o})"


def _collection(client, secret: bool):
    return client.secrets if secret else client.configs


def existing(client, labels: dict) -> dict:
    """{name: object} of every secret and config with these labels."""
    found = {}
    with docker_errors("list the swarm's secrets and configs"):
        for secret in (True, False):
            for obj in _collection(client, secret).list(filters={"label": [f"{k}={v}" for k, v in labels.items()]}):
                found[obj.name] = obj
    return found


def ensure(client, wanted: list, labels: dict, have: dict) -> list:
    """Create each wanted object ``have`` lacks; the references for a service spec."""
    from docker.types import ConfigReference, SecretReference
    refs = []
    for item in wanted:
        obj = have.get(item.name)
        if obj is None:
            with docker_errors(f"create {'secret' if item.secret else 'config'} {item.name}"):
                obj = _collection(client, item.secret).create(
                    name=item.name, data=item.text.encode(), labels={**labels, OBJECT_LABEL: item.logical})
            have[item.name] = obj
        kind = SecretReference if item.secret else ConfigReference
        refs.append(kind(obj.id, item.name, filename=item.target, uid=item.uid, gid=item.gid, mode=item.mode))
    return refs


def prune(client, owner: str, labels: dict, spare=frozenset()) -> int:
    """Remove ``owner``'s object versions beyond the newest KEEP per file that no service
    uses and whose name is not in ``spare`` (the last-known-good spec's, which a rollback
    goes back to); how many were removed."""
    versions: dict = {}
    for obj in existing(client, labels).values():
        logical = (obj.attrs["Spec"].get("Labels") or {}).get(OBJECT_LABEL, "")
        if logical.startswith(f"{owner}/"):
            versions.setdefault(logical, []).append(obj)
    removed = 0
    for objs in versions.values():
        objs.sort(key=lambda o: o.attrs.get("CreatedAt", ""), reverse=True)
        for obj in objs[KEEP:]:
            if obj.name in spare:
                continue
            try:
                with docker_errors(f"remove {obj.name}"):
                    obj.remove()
                removed += 1
            except DockerError as exc:
                if "in use" not in str(exc):
                    raise       # a service still uses it: kept
    return removed


def names_in(spec) -> frozenset:
    """The secret and config names a service spec (as Docker returns it) mounts."""
    container = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
    return frozenset([s.get("SecretName", "") for s in container.get("Secrets") or []]
                     + [c.get("ConfigName", "") for c in container.get("Configs") or []])


def remove_all(client, owner: str, labels: dict) -> int:
    """Remove every version of ``owner``'s objects (agent.retire, after its service)."""
    removed = 0
    for obj in existing(client, labels).values():
        if (obj.attrs["Spec"].get("Labels") or {}).get(OBJECT_LABEL, "").startswith(f"{owner}/"):
            with docker_errors(f"remove {obj.name}"):
                obj.remove()
            removed += 1
    return removed


def remove_every(client, labels: dict) -> int:
    """Try to remove every object with ``labels``; how many are left (in use by a task still ending)."""
    left = 0
    for obj in existing(client, labels).values():
        try:
            with docker_errors(f"remove {obj.name}"):
                obj.remove()
        except DockerError:
            left += 1
    return left
