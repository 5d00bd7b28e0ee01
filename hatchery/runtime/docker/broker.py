"""The broker as a container: plan, deploy, reload, stop and status.

The broker's config file is bind-mounted (its directory, so an atomic rewrite
is seen inside): a config-only change rewrites it and sends SIGHUP, or restarts
the container when SIGHUP cannot apply it. The password and ACL files sit in the
same directory; a change to them alone is a SIGHUP too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from docker.types import Mount

from hatchery.configs.broker import (
    CONTAINER_CONF_DIR,
    CONTAINER_DATA_DIR,
    CONTAINER_PORT,
    CONTAINER_TLS_PORT,
    TLS_FILE_NAMES,
    plain_bind,
    reload_is_enough,
    tls_source_files,
)
from hatchery.core.paths import StatePaths
from hatchery.core.plan import Change, text_diff
from hatchery.core.ports import wait_until
from hatchery.core.render import content_hash
from hatchery.core.state import read_text
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import Inventory
from hatchery.runtime.docker.containers import (
    SECOND,
    ContainerSpec,
    create_container,
    differences,
    fleet_labels,
    image_moved,
    remove_container,
    restart_container,
    running_summary,
    signal_container,
    spec_diff,
    start_container,
)
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
from hatchery.runtime.docker.remote import fleet_files

BROKER_HEALTHCHECK = {
    # A plain TCP connect: anonymous clients are refused, and a credential in the
    # healthcheck would show in `docker inspect`. bash's /dev/tcp, else busybox nc.
    "test": ["CMD-SHELL", f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{CONTAINER_PORT}' 2>/dev/null"
             f" || nc -z 127.0.0.1 {CONTAINER_PORT}"],
    "interval": 10 * SECOND, "timeout": 5 * SECOND, "retries": 3, "start_period": 3 * SECOND}
_LAYOUT = StatePaths.relative()
READY_TIMEOUT = 20.0       # seconds a started broker has to accept connections
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
    change to them alone is a SIGHUP reload."""
    client, files = broker_client(inv), _files(inv)
    conf_dir = files.path(str(_LAYOUT.broker_mount_dir))
    spec = broker_spec(inv, conf_dir, conf_text)
    current_conf = files.read(BROKER_CONF)
    auth_files = auth_files or {}
    stale = _stale_auth(files, auth_files)
    stale_tls = _stale_auth(files, tls_texts(inv))
    conf_diff = text_diff(current_conf, conf_text, files.path(BROKER_CONF)) + _auth_diff(files, stale)
    deploy = _BrokerDeploy(inv, client, files, spec, conf_text, auth_files)
    container = find_container(client, spec.name)
    if container is None:
        return [Change("broker", "create", "no container", spec_diff({}, spec) + conf_diff, deploy.create)]
    current = running_summary(container, spec)
    changed = differences(current, spec.summary()) + image_moved(client, container, spec.image)
    if changed:
        return [Change("broker", "recreate", f"{', '.join(changed)} changed",
                       spec_diff(current, spec) + conf_diff, deploy.recreate)]
    if container.status != "running":
        return [Change("broker", "start", f"container {container.status}", conf_diff, deploy.start)]
    if stale_tls:    # Mosquitto 2.0 reads certificates at start only
        return [Change("broker", "restart", "TLS files changed; needs a restart",
                       _auth_diff(files, stale_tls), deploy.restart)]
    if current_conf == conf_text and not stale:
        return [Change("broker", "none", f"running ({container.short_id}), config unchanged")]
    if reload_is_enough(current_conf, conf_text):
        what = "config" if current_conf != conf_text else " and ".join(stale)
        return [Change("broker", "reload", f"{what} changed; SIGHUP is enough", conf_diff, deploy.reload)]
    return [Change("broker", "restart", "config changed; needs a restart", conf_diff, deploy.restart)]


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
        return "; ".join(s for s in steps if s) + self._accepting()

    def _accepting(self) -> str:
        """Wait until the broker accepts connections where clients connect: a hatch right
        after a deploy must not find the port refusing (the NAT forwards before Mosquitto
        listens)."""
        b = self.inv.broker
        port = b.tls_port if b.tls else b.port
        started = time.monotonic()
        if not wait_until(b.host, port, timeout=READY_TIMEOUT):
            raise RuntimeFailure(f"the broker started but {b.host}:{port} refused connections for "
                                 f"{READY_TIMEOUT:g} s", f"read its log: docker logs {b.container}")
        return f"; accepting on {b.host}:{port} after {time.monotonic() - started:.1f}s"

    def recreate(self) -> str:
        remove_container(self.client, self.spec.name)
        return self.create()

    def start(self) -> str:
        self._write_conf()
        return start_container(self.client, self.spec.name) + self._accepting()

    def reload(self) -> str:
        self._write_conf()
        signal_container(self.client, self.spec.name, "SIGHUP")
        return "config rewritten; SIGHUP sent"

    def restart(self) -> str:
        self._write_conf()
        restart_container(self.client, self.spec.name)
        return "config rewritten; container restarted" + self._accepting()


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
        return [Change("broker auth", "none", "password and ACL files current")]

    def apply() -> str:
        write_auth_files(files, auth_files)
        return reload_broker(inv) or "files written; the broker container is not running"
    return [Change("broker auth", "reload", f"{' and '.join(stale)} changed; SIGHUP",
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
        return [Change("broker", "none", "no container")]
    return [Change("broker", "remove", f"container {container.status}; the data volume is kept",
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
