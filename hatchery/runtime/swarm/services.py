"""Services as values: the wanted ``ServiceSpec``, its API body, and creating or updating it.

A planner builds a spec; its ``summary()`` is what --diff shows and its digest
(a label on the service) is what the next plan compares, so an unchanged
service is never updated. The update sends the whole spec (Swarm replaces it
as a whole) and keeps the one it replaces in ``previous.json`` beside the
agent's state: Swarm remembers only one previous spec, hatchery keeps its own
last-known-good.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

from hatchery.core.render import content_hash
from hatchery.errors import DockerError
from hatchery.runtime.docker.containers import shown_env
from hatchery.runtime.docker.engine import SPEC_HASH, docker_errors

SECOND = 1_000_000_000                 # Swarm durations are nanoseconds
RESTART_DELAY = 2.0                    # seconds between a task's exit and its replacement
SCHEDULE_WAIT = 15.0                   # seconds a new task has to be placed on a node
MONITOR = 10.0                         # seconds an updated task must stay up to count as good


@dataclass(frozen=True)
class ServiceSpec:
    """What a service should look like; ``summary()`` is what is compared and diffed."""

    name: str
    image: str
    labels: dict                       # on the service (the fleet's, the agent's)
    container_labels: dict             # on each task's container (found per node by them)
    network: str
    hostname: str = ""
    env: dict = field(default_factory=dict)
    templated_env: dict = field(default_factory=dict)   # Go templates Swarm fills per task
    files: tuple = ()                  # objects.Wanted: secrets and configs
    aliases: tuple = ()
    constraints: tuple = ()
    preferences: tuple = ()            # "spread=node.labels.x"
    ports: tuple = ()                  # (published, target): host-mode, on the node of the task
    mounts: tuple = ()                 # docker.types.Mount (the broker's volume)
    healthcheck: Optional[dict] = None
    command: Optional[tuple] = None
    replicas: int = 1
    parallelism: int = 1
    order: str = "stop-first"          # one handler per client id: never two at once

    def summary(self) -> dict:
        return {"image": self.image, "hostname": self.hostname,
                "env": {**shown_env(self.env), **self.templated_env},
                "files": sorted(f.described() for f in self.files),
                "network": self.network, "aliases": sorted(self.aliases),
                "placement": {"constraints": sorted(self.constraints), "preferences": list(self.preferences)},
                "ports": [f"{p}->{t}/tcp (host)" for p, t in self.ports],
                "mounts": sorted(f"{m['Type']} {m['Source']} -> {m['Target']}" for m in self.mounts),
                "healthcheck": (self.healthcheck or {}).get("test"),
                "restart": f"any, {RESTART_DELAY:g}s apart",
                "update": f"{self.parallelism} at a time, {self.order}, rollback on failure",
                "labels": dict(sorted(self.labels.items()))}

    def digest(self) -> str:
        return content_hash(json.dumps(self.summary(), sort_keys=True))


def summary_text(summary: dict) -> str:
    return "".join(f"{key}: {json.dumps(value, sort_keys=True)}\n" for key, value in summary.items())


# --- the API body --------------------------------------------------------------------------

def task_template(spec: ServiceSpec, refs: list, force: int = 0):
    from docker.types import (
        ContainerSpec,
        Healthcheck,
        NetworkAttachmentConfig,
        Placement,
        RestartPolicy,
        TaskTemplate,
    )
    env = [f"{k}={v}" for k, v in {**spec.env, **spec.templated_env}.items()]
    health = Healthcheck(**spec.healthcheck) if spec.healthcheck else None
    container = ContainerSpec(
        spec.image, command=list(spec.command) if spec.command else None, env=env,
        hostname=spec.hostname or None, labels=spec.container_labels, mounts=list(spec.mounts),
        secrets=[r for r in refs if "SecretID" in r], configs=[r for r in refs if "ConfigID" in r],
        healthcheck=health, stop_grace_period=10 * SECOND, init=True)
    placement = Placement(constraints=list(spec.constraints),
                          preferences=[tuple(p.split("=", 1)) for p in spec.preferences])
    return TaskTemplate(container, restart_policy=RestartPolicy("any", delay=int(RESTART_DELAY * SECOND)),
                        placement=placement,
                        networks=[NetworkAttachmentConfig(spec.network, aliases=list(spec.aliases) or None)],
                        force_update=force)


def _service_body(spec: ServiceSpec, refs: list, force: int = 0) -> dict:
    from docker.types import EndpointSpec, RollbackConfig, ServiceMode, UpdateConfig
    return dict(task_template=task_template(spec, refs, force), name=spec.name,
                labels={**spec.labels, SPEC_HASH: spec.digest()},
                mode=ServiceMode("replicated", replicas=spec.replicas),
                update_config=UpdateConfig(parallelism=spec.parallelism, failure_action="rollback",
                                           monitor=int(MONITOR * SECOND), order=spec.order,
                                           max_failure_ratio=0),
                rollback_config=RollbackConfig(parallelism=spec.parallelism, order=spec.order,
                                               monitor=int(MONITOR * SECOND)),
                endpoint_spec=EndpointSpec(mode="dnsrr", ports={p: (t, "tcp", "host") for p, t in spec.ports}))


def create(client, spec: ServiceSpec, refs: list) -> str:
    with docker_errors(f"create service {spec.name}"):
        return client.api.create_service(**_service_body(spec, refs))["ID"]


def update(client, service, spec: ServiceSpec, refs: list, *, force: bool = False) -> None:
    """Send the whole wanted spec (a forced update starts a new task on the same spec)."""
    current = service.attrs["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    with docker_errors(f"update service {spec.name}"):
        client.api.update_service(service.id, service.attrs["Version"]["Index"],
                                  **_service_body(spec, refs, current + 1 if force else current))


def update_forced(client, service) -> None:
    """A new task on the same spec (docker service update --force)."""
    spec = dict(service.attrs["Spec"])
    template = dict(spec["TaskTemplate"])
    template["ForceUpdate"] = template.get("ForceUpdate", 0) + 1
    put_spec(client, service, {**spec, "TaskTemplate": template})


def set_replicas(client, service, replicas: int) -> None:
    """Scale to ``replicas`` (0: stopped, the service and its spec kept)."""
    spec = dict(service.attrs["Spec"])
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    put_spec(client, service, spec)


def put_spec(client, service, spec: dict) -> None:
    """Replace the service's spec with ``spec`` (a spec read back from Swarm, or recorded)."""
    with docker_errors(f"update service {spec.get('Name')}"):
        client.api._raise_for_status(client.api._post_json(
            client.api._url("/services/{0}/update", service.id), data=spec,
            params={"version": service.attrs["Version"]["Index"]}))


def find(client, name: str):
    """The service called ``name``, or None."""
    import docker.errors
    with docker_errors(f"inspect service {name}"):
        try:
            return client.services.get(name)
        except docker.errors.NotFound:
            return None


def replicas_of(service) -> int:
    return ((service.attrs["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1)


def wait_scheduled(client, name: str, timeout: float = SCHEDULE_WAIT) -> dict:
    """Wait until a task of ``name`` that should run has left 'pending' (a node took it);
    that task. DockerError with Swarm's reason when none could be placed in time."""
    deadline, reason = time.monotonic() + timeout, ""
    while True:
        tasks = [t for t in tasks_of(client, name) if t.get("DesiredState") == "running"]
        placed = [t for t in tasks if t["Status"]["State"] not in ("new", "pending", "allocated")]
        if placed:
            return placed[0]
        reason = next((t["Status"].get("Err") or t["Status"].get("Message") for t in tasks), "") or reason
        if time.monotonic() > deadline:
            raise DockerError(f"service {name}: no node took its task in {timeout:g}s ({reason or 'pending'})",
                              "check the placement constraints and that the eligible nodes are up: "
                              "invoke swarm.status")
        time.sleep(0.2)


def tasks_of(client, name: str) -> list:
    with docker_errors(f"list the tasks of {name}"):
        return client.api.tasks(filters={"service": name})
