"""Containers as values: the wanted ``ContainerSpec``, what runs read back, and the two compared.

A planner builds a spec, reads the running container's ``docker inspect``
back into the same summary shape, and recreates only when they differ.
Operator-supplied environment values are compared and diffed as digests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from hatchery.core.plan import text_diff
from hatchery.core.render import content_hash
from hatchery.inventory.model import Inventory
from hatchery.runtime.base import INSTANCE_ENV
from hatchery.runtime.docker.engine import (
    AGENT_LABEL,
    CONFIG_HASH,
    FLEET,
    INSTANCE_LABEL,
    MANAGED,
    RECIPE_LABEL,
    ROLE,
    SPEC_HASH,
    docker_errors,
    find_container,
    image_id,
)

SECOND = 1_000_000_000      # Docker durations are in nanoseconds


@dataclass(frozen=True)
class ContainerSpec:
    """What a container should look like; ``summary()`` is what is compared and diffed."""

    name: str
    image: str
    network: str
    labels: dict
    env: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)       # "1883/tcp" -> (host ip, host port)
    mounts: tuple = ()                              # docker.types.Mount
    aliases: tuple = ()
    healthcheck: Optional[dict] = None              # None: the image's HEALTHCHECK
    extra_hosts: dict = field(default_factory=dict)  # name -> address in /etc/hosts
    created_labels: dict = field(default_factory=dict)  # set at creation, not compared
    created_env: dict = field(default_factory=dict)     # set at creation, not compared (the instance)

    def summary(self) -> dict:
        return {"image": self.image, "env": shown_env(self.env),
                "ports": sorted(_port_text(k, ip, port) for k, (ip, port) in self.ports.items()),
                "mounts": sorted(_mount_text(m["Type"], m["Source"], m["Target"], m["ReadOnly"])
                                 for m in self.mounts),
                "network": self.network, "aliases": sorted(self.aliases),
                "restart": "unless-stopped",
                "healthcheck": (self.healthcheck or {}).get("test"),
                "labels": dict(sorted(self.labels.items())),
                **({"extra_hosts": sorted(f"{k}:{v}" for k, v in self.extra_hosts.items())}
                   if self.extra_hosts else {})}

    def digest(self) -> str:
        return content_hash(json.dumps(self.summary(), sort_keys=True))


def shown_env(env: dict) -> dict:
    """Environment as compared and diffed: our own HATCHERY_* values in clear,
    the operator's values as a digest, so --diff and --json never print them."""
    return {k: v if k.startswith("HATCHERY_") else f"sha256:{content_hash(v)}"
            for k, v in sorted(env.items())}


def _port_text(container_port: str, ip: str, port) -> str:
    return f"{ip or '0.0.0.0'}:{port}->{container_port}"


def _mount_text(kind: str, source: str, target: str, read_only: bool) -> str:
    return f"{kind} {source} -> {target}{' (ro)' if read_only else ''}"


def running_summary(container, wanted: ContainerSpec) -> dict:
    """The same fields as ``ContainerSpec.summary``, read back from ``docker inspect``."""
    attrs = container.attrs
    config, host = attrs["Config"], attrs["HostConfig"]
    env = dict(item.split("=", 1) for item in config.get("Env") or [])
    networks = attrs["NetworkSettings"]["Networks"] or {}
    aliases = (networks.get(wanted.network) or {}).get("Aliases") or []
    return {"image": config["Image"],
            "env": shown_env({k: v for k, v in env.items()
                              if (k in wanted.env or k.startswith("HATCHERY_")) and k not in _UNCOMPARED_ENV}),
            "ports": sorted(_port_text(k, b.get("HostIp"), b.get("HostPort"))
                            for k, binds in (host.get("PortBindings") or {}).items() for b in binds or []),
            "mounts": sorted(_mount_text(m["Type"], m.get("Name") or m["Source"], m["Destination"],
                                         not m["RW"]) for m in attrs.get("Mounts") or []),
            "network": ",".join(sorted(networks)),
            "aliases": sorted(a for a in aliases if a in wanted.aliases),
            "restart": (host.get("RestartPolicy") or {}).get("Name"),
            "healthcheck": (config.get("Healthcheck") or {}).get("Test") if wanted.healthcheck else None,
            "extra_hosts": sorted(host.get("ExtraHosts") or []),
            "labels": {k: v for k, v in sorted((config.get("Labels") or {}).items())
                       if k in wanted.labels or (k.startswith("io.hatchery.") and k not in _UNCOMPARED)}}


_UNCOMPARED = {SPEC_HASH, CONFIG_HASH, RECIPE_LABEL, AGENT_LABEL, INSTANCE_LABEL, "io.hatchery.run"}
# Set once per container creation: a new one would otherwise make every plan a recreate.
_UNCOMPARED_ENV = {INSTANCE_ENV}


def summary_text(summary: dict) -> str:
    return "".join(f"{key}: {json.dumps(value, sort_keys=True)}\n" for key, value in summary.items())


def differences(current: dict, wanted: dict) -> list:
    return [key for key in wanted if current.get(key) != wanted[key]]


def spec_diff(current: dict, spec: ContainerSpec) -> str:
    """The --diff text from the running summary ({} when there is no container) to ``spec``."""
    return text_diff(summary_text(current) if current else "", summary_text(spec.summary()),
                     f"container {spec.name}")


def image_moved(client, container, image: str) -> list:
    """['image'] when the tag now names another image than the container runs (a rebuild)."""
    wanted = image_id(client, image)
    return ["image"] if wanted and wanted != container.attrs["Image"] else []


def create_container(client, spec: ContainerSpec) -> str:
    """Create and start ``spec``'s container; return its short id."""
    api = client.api
    host_config = api.create_host_config(
        port_bindings={k: v for k, v in spec.ports.items()}, mounts=list(spec.mounts),
        restart_policy={"Name": "unless-stopped"}, init=True, network_mode=spec.network,
        extra_hosts=dict(spec.extra_hosts) or None)
    networking = api.create_networking_config(
        {spec.network: api.create_endpoint_config(aliases=list(spec.aliases) or None)})
    labels = {**spec.labels, **spec.created_labels, SPEC_HASH: spec.digest()}
    with docker_errors(f"create container {spec.name}"):
        created = api.create_container(
            spec.image, name=spec.name, environment={**spec.env, **spec.created_env}, labels=labels,
            ports=[int(k.split("/")[0]) for k in spec.ports], host_config=host_config,
            networking_config=networking, healthcheck=spec.healthcheck)
        api.start(created["Id"])
    return created["Id"][:12]


def remove_container(client, name: str) -> None:
    container = find_container(client, name)
    if container is not None:
        with docker_errors(f"remove container {name}"):
            container.remove(force=True)


def start_container(client, name: str) -> str:
    with docker_errors(f"start {name}"):
        client.containers.get(name).start()
    return "started"


def stop_container(container) -> str:
    with docker_errors(f"stop {container.name}"):
        container.stop(timeout=10)
    return "stopped"


def restart_container(client, name: str) -> None:
    with docker_errors(f"restart {name}"):
        client.containers.get(name).restart(timeout=10)


def signal_container(client, name: str, signal: str = "SIGHUP") -> None:
    with docker_errors(f"signal {name}"):
        client.containers.get(name).kill(signal=signal)


def fleet_labels(inv: Inventory, role: str) -> dict:
    return {MANAGED: "true", ROLE: role, FLEET: inv.broker.container}
