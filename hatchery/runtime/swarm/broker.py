"""The broker as a Swarm service: one replica, restarted on any exit, TLS on.

mosquitto.conf is a Swarm config; the password file, the ACL and the TLS key are
secrets, the certificates configs, all named by their content (``objects.py``).
The service is on the fleet's attachable overlay network, where agents reach it
by ``broker.dns_name``; the TLS port is published in host mode on the node that
runs the task (ingress publishing and a virtual IP need IPVS; ``dnsrr`` does
not), so the control side tries the nodes the broker may run on.

Secrets cannot change in place: a new credential is a new secret and a service
update, i.e. a new broker task (agents reconnect within seconds). The data
volume is local to a node: when the broker moves, its retained messages stay
behind; the agents publish their state again when they reconnect.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from docker.types import Mount

from hatchery.configs.broker import render_conf
from hatchery.core.paths import state_paths
from hatchery.core.plan import Change, text_diff
from hatchery.core.ports import listening
from hatchery.core.state import ensure_dir, read_text, write_if_changed
from hatchery.core.words import plural
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import Inventory
from hatchery.inventory.swarm import placement_of
from hatchery.runtime.docker.broker import (
    BROKER_HEALTHCHECK,
    broker_volume,
    mosquitto_owner,
    tls_texts,
)
from hatchery.runtime.docker.containers import fleet_labels
from hatchery.runtime.docker.engine import docker_errors, engine, image_id
from hatchery.runtime.docker.layout import (
    CONTAINER_CONF_DIR,
    CONTAINER_DATA_DIR,
    CONTAINER_PORT,
    CONTAINER_TLS_PORT,
)
from hatchery.runtime.swarm import nodes, objects
from hatchery.runtime.swarm.facts import manager_client
from hatchery.runtime.swarm.layout import broker_layout
from hatchery.runtime.swarm.network import ensure_overlay
from hatchery.runtime.swarm.services import (
    SECOND,
    ServiceSpec,
    create,
    find,
    summary_text,
    update,
    wait_scheduled,
)
from hatchery.runtime.swarm.states import current_task, node_names

SUMMARY_LABEL = "io.hatchery.summary"
# Swarm holds a task in 'starting' until its first healthy check: check sooner than the
# docker runtime does, so a new broker task counts as running within seconds.
HEALTHCHECK = {**BROKER_HEALTHCHECK, "interval": 3 * SECOND, "start_period": 2 * SECOND}
READY_TIMEOUT = 30.0        # seconds a new broker task has to accept connections
CONF = f"{CONTAINER_CONF_DIR}/mosquitto.conf"


def candidates(inv: Inventory) -> list:
    """Where the control side may find the broker's published port: every node it may run on."""
    return list(dict.fromkeys([inv.broker.host, *inv.broker.alternates]))


def published_port(inv: Inventory) -> int:
    return inv.broker.tls_port if inv.broker.tls else inv.broker.port


def broker_files(inv: Inventory, owner: tuple, conf_text: str, auth_files: dict) -> list:
    name, (uid, gid) = inv.broker.container, (str(owner[0]), str(owner[1]))
    files = [objects.Wanted(name, "mosquitto.conf", conf_text, CONF, secret=False, mode=0o444)]
    for file, text in sorted(auth_files.items()):      # passwd, acl: hashes and grants, private
        files.append(objects.Wanted(name, file, text, f"{CONTAINER_CONF_DIR}/{file}", uid=uid, gid=gid))
    for rel, text in sorted(tls_texts(inv).items()):   # tls/ca.crt, tls/server.crt, tls/server.key
        private = rel.endswith(".key")
        files.append(objects.Wanted(name, rel.replace("/", "-"), text, f"{CONTAINER_CONF_DIR}/{rel}",
                                    secret=private, uid=uid, gid=gid, mode=0o400 if private else 0o444))
    return files


def broker_service_spec(inv: Inventory, owner: tuple, conf_text: str, auth_files: dict) -> ServiceSpec:
    b, placement = inv.broker, placement_of(inv.broker)
    labels = fleet_labels(inv, "broker")
    target = CONTAINER_TLS_PORT if b.tls else CONTAINER_PORT
    return ServiceSpec(
        name=b.container, image=b.image, labels=labels, container_labels=labels, network=b.network,
        aliases=(b.dns_name,), files=tuple(broker_files(inv, owner, conf_text, auth_files)),
        ports=((published_port(inv), target),),
        mounts=(Mount(CONTAINER_DATA_DIR, broker_volume(inv), type="volume"),),
        constraints=placement.constraints if placement else (),
        preferences=placement.preferences if placement else (), healthcheck=HEALTHCHECK)


def broker_plan(inv: Inventory, *, conf_text: str, auth_files=None) -> list:
    """Create or update the broker's service: ``conf_text`` as a config, ``auth_files`` as
    secrets, the TLS files as the TLS source files are when it is applied."""
    _, client = manager_client(inv)
    hosts = nodes.eligible(inv, placement_of(inv.broker))
    missing, _ = nodes.missing_on(hosts, inv.broker.image)
    owner = _owner(inv, hosts, inv.broker.image)
    spec = broker_service_spec(inv, owner, conf_text, auth_files or {})
    service = find(client, spec.name)
    # built again when applied: the TLS files are made by an earlier item of the same plan
    deploy = lambda: _deploy(inv, client, broker_service_spec(inv, owner, conf_text, auth_files or {}),  # noqa: E731
                             missing)
    if service is None:
        return [Change("broker", "create", "no service", _diff(None, spec), deploy)]
    current = _recorded(service)
    if current != spec.summary():
        what = "config, credentials or certificates" if current.get("files") != spec.summary()["files"] \
            else ", ".join(k for k in spec.summary() if current.get(k) != spec.summary()[k])
        return [Change("broker", "update", f"{what} changed: a new broker task", _diff(current, spec), deploy)]
    if missing:
        return [Change("broker", "update", f"image missing on {', '.join(h.name for h in missing)}", apply=deploy)]
    return [Change("broker", "none", f"service {spec.name}, config unchanged")]


def _owner(inv: Inventory, hosts: list, image: str) -> tuple:
    """user mosquitto's (uid, gid) in the image: read once per image id (a throw-away
    container on a node that has it, else here), then from the state directory."""
    client = nodes.probe_client(hosts, image)
    key = image_id(client, image) or image
    cache = Path(state_paths(inv).base_image_cache) / "mosquitto-owners.json"
    try:
        known = json.loads(read_text(cache) or "{}")
    except ValueError:
        known = {}
    if not isinstance(known.get(key), list):
        known[key] = list(mosquitto_owner(client, image))
        ensure_dir(cache.parent)
        write_if_changed(cache, json.dumps(known, sort_keys=True) + "\n", 0o644)
    return tuple(known[key])


def _recorded(service) -> dict:
    try:
        return json.loads((service.attrs["Spec"].get("Labels") or {}).get(SUMMARY_LABEL) or "{}")
    except ValueError:
        return {}


def _diff(current, spec: ServiceSpec) -> str:
    return text_diff(summary_text(current) if current else "", summary_text(spec.summary()),
                     f"service {spec.name}")


def _deploy(inv: Inventory, client, spec: ServiceSpec, missing: list) -> str:
    steps = [ensure_overlay(client, inv),
             nodes.ensure_everywhere(missing, inv.broker.image) if missing else ""]
    labels = fleet_labels(inv, "broker")
    refs = objects.ensure(client, spec.files, labels, objects.existing(client, labels))
    wanted = replace(spec, labels={**spec.labels, SUMMARY_LABEL: json.dumps(spec.summary(), sort_keys=True)})
    service = find(client, spec.name)
    if service is None:
        create(client, wanted, refs)
    else:
        update(client, service, wanted, refs)
    task = wait_scheduled(client, spec.name, timeout=READY_TIMEOUT)
    steps.append(f"task {task['ID'][:12]} {task['Status']['State']}")
    steps.append(wait_accepting(inv))
    pruned = objects.prune(client, spec.name, labels)
    steps.append(f"{plural(pruned, 'old secret/config version')} removed" if pruned else "")
    return "; ".join(s for s in steps if s)


def wait_accepting(inv: Inventory, timeout: float = READY_TIMEOUT) -> str:
    """Wait until one of the broker's candidate addresses accepts; which, and when."""
    port, started = published_port(inv), time.monotonic()
    while time.monotonic() - started < timeout:
        for address in candidates(inv):
            if listening(address, port):
                return f"accepting on {address}:{port} after {time.monotonic() - started:.1f}s"
        time.sleep(0.2)
    raise RuntimeFailure(f"the broker's task started but no node of {', '.join(candidates(inv))} accepts "
                         f"on port {port} after {timeout:g}s",
                         f"read its log: docker service logs {inv.broker.container}")


def auth_sync_plan(inv: Inventory, auth_files: dict) -> list:
    """New passwd/acl versions: a service update (a new broker task), as Swarm secrets
    cannot change in place."""
    _, client = manager_client(inv)
    service = find(client, inv.broker.container)
    if service is None:
        return [Change("broker auth", "none", "no broker service yet; broker.deploy makes it")]
    hosts = nodes.eligible(inv, placement_of(inv.broker))
    conf_text = render_conf(inv, broker_layout(inv))       # unchanged: only passwd and acl are new
    spec = broker_service_spec(inv, _owner(inv, hosts, inv.broker.image), conf_text, auth_files)
    if _recorded(service).get("files") == spec.summary()["files"]:
        return [Change("broker auth", "none", "password and ACL secrets current")]
    return [Change("broker auth", "update", "password or ACL changed: new secrets, a new broker task",
                   apply=lambda: _deploy(inv, client, spec, []))]


def reload_broker(inv: Inventory) -> str:
    """SIGHUP the broker's running task; '' when none runs."""
    _, client = manager_client(inv)
    if find(client, inv.broker.container) is None:
        return ""
    with docker_errors(f"list the tasks of {inv.broker.container}"):
        task = current_task(client.api.tasks(filters={"service": inv.broker.container}))
    host = node_names(inv, client).get((task or {}).get("NodeID"), {}).get("host")
    if not task or task["Status"]["State"] != "running" or host not in inv.hosts:
        return ""
    node = engine(inv.hosts[host].docker_host)
    with docker_errors(f"signal the broker's task on {host}"):
        for container in node.containers.list(filters={"label": f"com.docker.swarm.task.id={task['ID']}"}):
            container.kill(signal="SIGHUP")
    return f"SIGHUP sent to the broker's task on {host}"


def broker_stop_plan(inv: Inventory) -> list:
    _, client = manager_client(inv)
    service = find(client, inv.broker.container)
    if service is None:
        return [Change("broker", "none", "no service")]

    def remove() -> str:
        with docker_errors(f"remove service {service.name}"):
            service.remove()
        return f"service {service.name} removed; its data volume is kept on its node"
    return [Change("broker", "remove", "the data volume is kept", apply=remove)]


def broker_status(inv: Inventory) -> dict:
    b = inv.broker
    status = {"runtime": "swarm", "running": False, "service": b.container, "image": b.image,
              "network": b.network, "volume": broker_volume(inv)}
    _, client = manager_client(inv)
    if find(client, b.container) is None:
        return status
    with docker_errors(f"list the tasks of {b.container}"):
        task = current_task(client.api.tasks(filters={"service": b.container}))
    host = node_names(inv, client).get((task or {}).get("NodeID"), {}).get("host")
    running = bool(task) and task["Status"]["State"] == "running"
    address = inv.hosts[host].address if host in inv.hosts else "?"
    return {**status, "running": running, "task": (task or {}).get("ID", "")[:12], "node": host,
            "state": (task or {}).get("Status", {}).get("State"), "address": f"{address}:{published_port(inv)}"}

