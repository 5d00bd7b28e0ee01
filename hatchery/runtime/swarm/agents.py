"""Each agent as a Swarm service: one replica, its hostname the agent's name, its credentials
as secrets, its config and the fleet CA as configs, a healthcheck, restarted on any exit.

Swarm places the task (``placement:``), restarts it, and moves it off a lost node;
hatchery plans the service, gets its image to every node it may run on, and keeps
the spec it replaces (``previous.json``) so fleet.rollout can put it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hatchery.configs.agent import to_json
from hatchery.core.paths import state_paths
from hatchery.core.plan import Change, text_diff
from hatchery.core.render import content_hash
from hatchery.core.state import read_text, write_if_changed
from hatchery.core.words import plural
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.inventory.swarm import placement_of
from hatchery.runtime.base import INSTANCE_ENV
from hatchery.runtime.docker import build
from hatchery.runtime.docker.agents import agent_env, ca_text
from hatchery.runtime.docker.containers import fleet_labels
from hatchery.runtime.docker.engine import AGENT_LABEL, CONFIG_HASH, docker_errors
from hatchery.runtime.docker.layout import CONTAINER_CA_FILE, CONTAINER_SECRETS_DIR
from hatchery.runtime.swarm import nodes, objects
from hatchery.runtime.swarm.facts import manager_client
from hatchery.runtime.swarm.network import ensure_overlay
from hatchery.runtime.swarm.services import (
    SECOND,
    ServiceSpec,
    create,
    find,
    replicas_of,
    set_replicas,
    summary_text,
    tasks_of,
    update,
    wait_scheduled,
)
from hatchery.runtime.swarm.states import current_task, service_name

SUMMARY_LABEL = "io.hatchery.summary"      # the summary the service was made from, for --diff
HEALTHCHECK = {"test": ["CMD-SHELL", f'kill -0 "$(cat {build.HANDLER_PID})" || exit 1'],
               "interval": 5 * SECOND, "timeout": 3 * SECOND, "retries": 3, "start_period": 10 * SECOND}


def agent_service_spec(inv: Inventory, agent: AgentSpec, image: str, config_text: str,
                       secret_files: dict) -> ServiceSpec:
    name = service_name(inv, agent.name)
    files = [objects.Wanted(name, "agent.json", config_text, build.AGENT_CONFIG, secret=False, mode=0o444)]
    ca = ca_text(inv)
    if ca:      # public: the CA certificate only, never its key
        files.append(objects.Wanted(name, "ca.crt", ca, CONTAINER_CA_FILE, secret=False, mode=0o444))
    files += [objects.Wanted(name, file, text, f"{CONTAINER_SECRETS_DIR}/{file}")
              for file, text in sorted(secret_files.items())]
    own = {**fleet_labels(inv, "agent"), AGENT_LABEL: agent.name}
    placement = placement_of(agent)
    return ServiceSpec(
        name=name, image=image, labels={**own, CONFIG_HASH: content_hash(config_text)},
        container_labels=own, network=inv.broker.network, hostname=agent.name,
        env=agent_env(inv, agent, json.loads(config_text)),
        templated_env={INSTANCE_ENV: "{{.Task.ID}}"},    # each task its own instance: the task id
        files=tuple(files), constraints=placement.constraints if placement else (),
        preferences=placement.preferences if placement else (), healthcheck=HEALTHCHECK)


def agent_plan(inv: Inventory, agent: AgentSpec, *, agent_config: dict,
               context_dir: Optional[Path] = None, secret_files: Optional[dict] = None) -> list:
    """Create or update the agent's service; get its image to every node it may run on."""
    _, client = manager_client(inv)
    hosts = nodes.eligible(inv, placement_of(agent))
    base = build.base_image(inv, nodes.probe_client(hosts, agent.image), agent)
    context = build.agent_context(inv, agent, base)
    tag = f"{build.agent_image_repo(agent.name)}:{context.digest(base.image_id)}"
    spec = agent_service_spec(inv, agent, tag, to_json(agent_config), secret_files or {})
    missing, _ = nodes.missing_on(hosts, tag)
    hatch = _AgentHatch(inv, agent, client, spec, context, missing,
                        Path(context_dir or state_paths(inv).build_dir(agent.name)))
    item, service = f"agent {agent.name}", find(client, spec.name)
    images = f"image to build on {', '.join(h.name for h in missing)}" if missing else "image on every node"
    if service is None:
        return [Change(item, "create", f"no service; {images}", _diff(None, spec), hatch.deploy)]
    current = _recorded_summary(service)
    if current != spec.summary():
        return [Change(item, "update", f"outdated: {_what_changed(current, spec.summary())}; {images}",
                       _diff(current, spec), hatch.deploy)]
    if missing:
        return [Change(item, "update", images, apply=hatch.images)]
    if replicas_of(service) == 0:
        return [Change(item, "start", "stopped (0 replicas)", apply=hatch.start)]
    return [Change(item, "none", f"service {spec.name}, {tag.rsplit(':', 1)[1]}")]


def _recorded_summary(service) -> dict:
    try:
        return json.loads((service.attrs["Spec"].get("Labels") or {}).get(SUMMARY_LABEL) or "{}")
    except ValueError:
        return {}


def _diff(current: Optional[dict], spec: ServiceSpec) -> str:
    return text_diff(summary_text(current) if current else "", summary_text(spec.summary()),
                     f"service {spec.name}")


def _what_changed(current: dict, wanted: dict) -> str:
    keys = [k for k in wanted if current.get(k) != wanted[k]]
    parts = [f"image {_tag(current.get('image'))} → {_tag(wanted['image'])}" if k == "image" else
             ("config or credentials" if k == "files" else f"{k} changed") for k in keys]
    return ", ".join(parts) or "labels changed"


def _tag(image: Optional[str]) -> str:
    return (image or "?").rsplit(":", 1)[-1]


@dataclass
class _AgentHatch:
    """The apply steps of agent_plan, bound to what was planned."""

    inv: Inventory
    agent: AgentSpec
    client: object
    spec: ServiceSpec
    context: build.BuildContext
    missing: list
    context_dir: Path

    def images(self) -> str:
        return nodes.build_everywhere(self.missing, self.context, self.agent.image, self.spec.image,
                                      self.agent.name, self.context_dir)

    def deploy(self) -> str:
        labels = fleet_labels(self.inv, "agent")
        steps = [ensure_overlay(self.client, self.inv), self.images() if self.missing else ""]
        refs = objects.ensure(self.client, self.spec.files, labels, objects.existing(self.client, labels))
        service = find(self.client, self.spec.name)
        body = {**self.spec.labels, SUMMARY_LABEL: json.dumps(self.spec.summary(), sort_keys=True)}
        spec = _with_labels(self.spec, body)
        if service is None:
            create(self.client, spec, refs)
            steps.append("service created")
        else:
            keep_previous(self.inv, self.agent.name, service, self.client)
            update(self.client, service, spec, refs)
            steps.append("service updated")
        task = wait_scheduled(self.client, self.spec.name)
        steps.append(f"task {task['ID'][:12]} {task['Status']['State']}")
        spare = objects.names_in(read_previous(self.inv, self.agent.name))
        pruned = objects.prune(self.client, self.spec.name, labels, spare)
        steps.append(f"{plural(pruned, 'old secret/config version')} removed" if pruned else "")
        return "; ".join(s for s in steps if s)

    def start(self) -> str:
        set_replicas(self.client, find(self.client, self.spec.name), 1)
        task = wait_scheduled(self.client, self.spec.name)
        return f"scaled to 1; task {task['ID'][:12]} {task['Status']['State']}"


def _with_labels(spec: ServiceSpec, labels: dict) -> ServiceSpec:
    from dataclasses import replace
    return replace(spec, labels=labels)


# --- last-known-good: hatchery's own, since Swarm remembers one previous spec ---------------

def previous_path(inv: Inventory, name: str) -> Path:
    return Path(state_paths(inv).agent_dir(name)) / "swarm-previous.json"


def keep_previous(inv: Inventory, name: str, service, client) -> None:
    """Record the spec ``service`` runs now, before it is replaced, if it is known good: its
    task runs on that very spec and no update of it is paused or being rolled back (an
    update in its monitor window with the new task running counts: fleet.rollout's bus gate
    has judged it already). A spec that never ran keeps the record it would replace: a
    second bad release must not become the one a rollback goes back to, as Swarm's single
    PreviousSpec would."""
    update_state = (service.attrs.get("UpdateStatus") or {}).get("State", "completed")
    task = current_task(tasks_of(client, service.id))
    if update_state in ("paused", "rollback_started", "rollback_paused", "rollback_completed") \
            or not task or task["Status"]["State"] != "running" or not runs_spec(task, service.attrs["Spec"]):
        return
    write_if_changed(previous_path(inv, name), json.dumps(service.attrs["Spec"], sort_keys=True) + "\n")


def runs_spec(task: dict, spec: dict) -> bool:
    """Whether ``task`` was made from ``spec`` (its image, secrets and configs)."""
    def image(template: dict) -> str:
        return ((template or {}).get("ContainerSpec") or {}).get("Image", "")
    template = spec.get("TaskTemplate") or {}
    return image(task.get("Spec")) == image(template) and \
        objects.names_in({"TaskTemplate": task.get("Spec")}) == objects.names_in(spec)


def read_previous(inv: Inventory, name: str) -> Optional[dict]:
    try:
        recorded = json.loads(read_text(previous_path(inv, name)) or "null")
    except ValueError:
        return None
    return recorded if isinstance(recorded, dict) and recorded.get("TaskTemplate") else None


def nothing_to_restore() -> str:
    raise RuntimeFailure("no previous version to restore", "hatch the agent again")


def remove_service(client, name: str) -> bool:
    service = find(client, name)
    if service is None:
        return False
    with docker_errors(f"remove service {name}"):
        service.remove()
    return True
