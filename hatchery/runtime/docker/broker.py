"""The broker as a container: plan, deploy, reload, stop and status.

The broker's config file is bind-mounted (its directory, so an atomic rewrite
is seen inside): a config-only change rewrites it and sends SIGHUP, or restarts
the container when SIGHUP cannot apply it. The password and ACL files sit in the
same directory; a change to them alone is a SIGHUP too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from docker.types import Mount

from hatchery.configs.broker import (
    TLS_FILE_NAMES,
    broker_endpoint,
    plain_bind,
    tls_source_files,
)
from hatchery.core.paths import StatePaths
from hatchery.core.plan import Action, Change, bind, text_diff
from hatchery.core.ports import wait_until
from hatchery.core.render import content_hash
from hatchery.core.state import read_text
from hatchery.inventory.model import Inventory
from hatchery.runtime.docker.containers import (
    SECOND,
    ContainerSpec,
    create_container,
    fleet_labels,
    image_moved,
    remove_container,
    restart_container,
    running_summary,
    signal_container,
    spec_diff,
    start_container,
)
from hatchery.runtime.docker.decide import BrokerFacts, BrokerWanted, decide_broker
from hatchery.runtime.docker.engine import (
    CONFIG_HASH,
    docker_errors,
    engine,
    ensure_image,
    ensure_network,
    ensure_volume,
    find_container,
    image_id,
)
from hatchery.runtime.docker.layout import (
    CONTAINER_CONF_DIR,
    CONTAINER_DATA_DIR,
    CONTAINER_PORT,
    CONTAINER_TLS_PORT,
)
from hatchery.runtime.docker.remote import fleet_files

BROKER_HEALTHCHECK = {
    # A plain TCP connect: anonymous clients are refused, and a credential in the
    # healthcheck would show in `docker inspect`. bash's /dev/tcp, else busybox nc.
    "test": ["CMD-SHELL", f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{CONTAINER_PORT}' 2>/dev/null"
             f" || nc -z 127.0.0.1 {CONTAINER_PORT}"],
    "interval": 10 * SECOND, "timeout": 5 * SECOND, "retries": 3, "start_period": 3 * SECOND}
READY_SECONDS = 15.0    # a cold broker on a remote engine listened ~3 s after its start, under load
_LAYOUT = StatePaths.relative()
BROKER_CONF = str(_LAYOUT.mounted_broker_conf)


def broker_client(inv: Inventory):
    return engine(inv.broker.docker_host)


def _files(inv: Inventory):
    return fleet_files(inv, inv.broker.docker_host)


def broker_volume(inv: Inventory) -> str:
    return f"{inv.broker.container}-data"


def broker_ports(inv: Inventory) -> dict:
    """Plain MQTT published on loopback unless allowed further; TLS on the bind address."""
    b = inv.broker
    ports = {f"{CONTAINER_PORT}/tcp": (plain_bind(inv), b.port)}
    if b.tls:
        ports[f"{CONTAINER_TLS_PORT}/tcp"] = (b.bind, b.tls_port)
    return ports


def tls_texts(inv: Inventory) -> dict:
    """{tls/<name>: text} of the TLS files to mount, read from the control side ({} if not made yet)."""
    texts = {}
    for key, source in tls_source_files(inv).items():
        text = read_text(Path(source))
        if text:
            texts[f"tls/{TLS_FILE_NAMES[key]}"] = text
    return texts


def broker_spec(inv: Inventory, conf_dir: str, conf_text: str) -> ContainerSpec:
    b = inv.broker
    return ContainerSpec(
        name=b.container, image=b.image, network=b.network, aliases=(b.dns_name,),
        labels=fleet_labels(inv, "broker"),
        ports=broker_ports(inv),
        mounts=(Mount(CONTAINER_CONF_DIR, conf_dir, type="bind", read_only=True),
                Mount(CONTAINER_DATA_DIR, broker_volume(inv), type="volume")),
        healthcheck=BROKER_HEALTHCHECK,
        created_labels={CONFIG_HASH: content_hash(conf_text)})


def _broker_file(name: str) -> str:
    return str(_LAYOUT.broker_mount_dir / name)


def _stale_auth(files, auth_files: dict) -> list:
    return [name for name, text in auth_files.items() if files.read(_broker_file(name)) != text]


def _auth_diff(files, stale: list) -> str:
    # Names only: the password file holds hashes.
    return "".join(f"~ {files.path(_broker_file(name))} (rewritten)\n" for name in stale)


def broker_plan(inv: Inventory, *, conf_text: str, auth_files: Optional[dict] = None) -> list:
    """``auth_files``: {name: text} (passwd, acl) written beside mosquitto.conf; a
    change to them alone is a SIGHUP reload.

    Facts (the container, its summary, the mounted files), the pure decision
    (``decide.decide_broker``), then each decision bound to its diff and apply step.
    """
    client, files = broker_client(inv), _files(inv)
    conf_dir = files.path(str(_LAYOUT.broker_mount_dir))
    spec = broker_spec(inv, conf_dir, conf_text)
    auth_files = auth_files or {}
    container = find_container(client, spec.name)
    current = running_summary(container, spec) if container is not None else {}
    facts = BrokerFacts(status=container.status if container is not None else None,
                        short_id=container.short_id if container is not None else "", summary=current,
                        image_moved=bool(container is not None and image_moved(client, container, spec.image)),
                        conf=files.read(BROKER_CONF), stale_auth=tuple(_stale_auth(files, auth_files)),
                        stale_tls=tuple(_stale_auth(files, tls_texts(inv))))
    conf_diff = text_diff(facts.conf, conf_text, files.path(BROKER_CONF)) + _auth_diff(files, facts.stale_auth)
    deploy = _BrokerDeploy(inv, client, files, spec, conf_text, auth_files)
    steps = {Action.CREATE: deploy.create, Action.RECREATE: deploy.recreate, Action.START: deploy.start,
             Action.RELOAD: deploy.reload, Action.RESTART: deploy.restart}
    diffs = {Action.CREATE: spec_diff({}, spec) + conf_diff, Action.RECREATE: spec_diff(current, spec) + conf_diff,
             # a TLS restart rewrites only the TLS files
             Action.RESTART: _auth_diff(files, facts.stale_tls) if facts.stale_tls else conf_diff}
    return [bind(c, diffs.get(c.action, conf_diff), steps) for c in decide_broker(facts, BrokerWanted(spec.summary(), conf_text))]


@dataclass
class _BrokerDeploy:
    """The apply steps of broker_plan, bound to what was planned."""

    inv: Inventory
    client: object
    files: object
    spec: ContainerSpec
    conf_text: str
    auth_files: dict = field(default_factory=dict)

    def _write_conf(self) -> bool:
        # 0644 and a 0755 directory: Mosquitto re-reads them as user 'mosquitto' on SIGHUP.
        # The password file holds only PBKDF2 hashes of 256-bit random secrets.
        write_auth_files(self.files, self.auth_files)
        texts = tls_texts(self.inv)     # read now: planned before they were made
        if texts:
            write_tls_files(self.files, texts, mosquitto_owner(self.client, self.spec.image))
        return self.files.write(BROKER_CONF, self.conf_text, mode=0o644, dir_mode=0o755)

    def create(self) -> str:
        labels = fleet_labels(self.inv, "broker")
        steps = [ensure_network(self.client, self.spec.network, labels),
                 ensure_volume(self.client, broker_volume(self.inv), labels),
                 ensure_image(self.client, self.spec.image)]
        self._write_conf()
        steps.append(f"container {create_container(self.client, self.spec)} started")
        steps.append(self._ready())
        return "; ".join(s for s in steps if s)

    def recreate(self) -> str:
        remove_container(self.client, self.spec.name)
        return self.create()

    def start(self) -> str:
        self._write_conf()
        return f"{start_container(self.client, self.spec.name)}; {self._ready()}"

    def reload(self) -> str:
        self._write_conf()
        signal_container(self.client, self.spec.name, "SIGHUP")
        return "config rewritten; SIGHUP sent"

    def restart(self) -> str:
        self._write_conf()
        restart_container(self.client, self.spec.name)
        return f"config rewritten; container restarted; {self._ready()}"

    def _ready(self) -> str:
        """Wait (briefly) until the broker takes connections where the control side connects,
        so a task run right after a deploy (agent.hatch checks the broker first) finds it up.
        A broker that is slow to come up is said, not failed: its health check will tell."""
        host, port = broker_endpoint(self.inv)
        if wait_until(host, port, timeout=READY_SECONDS):
            return f"accepting connections on {host}:{port}"
        return f"not yet accepting connections on {host}:{port} after {READY_SECONDS:g}s"


def write_auth_files(files, auth_files: dict) -> None:
    for name, text in auth_files.items():
        files.write(_broker_file(name), text, mode=0o644, dir_mode=0o755)


def write_tls_files(files, texts: dict, owner: tuple) -> None:
    """Certificates 0644; the key 0600 owned by the image's mosquitto user, who loads it
    after dropping root (``owner``: its uid and gid)."""
    for name, text in texts.items():
        private = name.endswith(".key")
        files.write(_broker_file(name), text, mode=0o600 if private else 0o644, dir_mode=0o755)
        if private:
            files.chown(_broker_file(name), *owner)


_owners: dict = {}


def mosquitto_owner(client, image: str) -> tuple:
    """(uid, gid) of user mosquitto in ``image``, read once per image from a throwaway container."""
    key = image_id(client, image) or image
    if key not in _owners:
        with docker_errors(f"read user mosquitto's ids in {image}"):
            out = client.containers.run(image, ["sh", "-c", "id -u mosquitto; id -g mosquitto"],
                                        entrypoint=[], remove=True, network_mode="none")
        uid, gid = (int(v) for v in out.decode().split())
        _owners[key] = (uid, gid)
    return _owners[key]


def auth_sync_plan(inv: Inventory, auth_files: dict) -> list:
    """Bring the broker's password and ACL files in line and SIGHUP it (agent.hatch, retire, rotate)."""
    files = _files(inv)
    stale = _stale_auth(files, auth_files)
    if not stale:
        return [Change("broker auth", Action.NONE, "password and ACL files current")]

    def apply() -> str:
        write_auth_files(files, auth_files)
        return reload_broker(inv) or "files written; the broker container is not running"
    return [Change("broker auth", Action.RELOAD, f"{' and '.join(stale)} changed; SIGHUP",
                   _auth_diff(files, stale), apply)]


def reload_broker(inv: Inventory) -> str:
    """SIGHUP the broker container; '' when it does not run."""
    client = broker_client(inv)
    container = find_container(client, inv.broker.container)
    if container is None or container.status != "running":
        return ""
    with docker_errors(f"signal {inv.broker.container}"):
        container.kill(signal="SIGHUP")
    return f"SIGHUP sent to {inv.broker.container}"


def broker_stop_plan(inv: Inventory) -> list:
    client = broker_client(inv)
    container = find_container(client, inv.broker.container)
    if container is None:
        return [Change("broker", Action.NONE, "no container")]
    return [Change("broker", Action.REMOVE, f"container {container.status}; the data volume is kept",
                   apply=lambda: _stop_remove(client, inv.broker.container))]


def _stop_remove(client, name: str) -> str:
    container = find_container(client, name)
    if container is not None:
        with docker_errors(f"stop {name}"):
            container.stop(timeout=10)
            container.remove()
    return f"container {name} stopped and removed"


def broker_status(inv: Inventory) -> dict:
    b = inv.broker
    container = find_container(broker_client(inv), b.container)
    status = {"runtime": "docker", "running": False, "container": b.container, "image": b.image,
              "address": f"{b.host}:{b.port}", "network": b.network, "volume": broker_volume(inv)}
    if container is not None:
        state = container.attrs["State"]
        status.update(running=state.get("Running", False), status=container.status,
                      id=container.short_id, health=(state.get("Health") or {}).get("Status"),
                      started_at=state.get("StartedAt"))
    return status
