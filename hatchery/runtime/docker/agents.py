"""Each agent as a container on the fleet's network: plan, hatch, stop, retire, list.

The agent's image is built from a context whose digest is the image tag, so an
unchanged agent is never rebuilt. Its config is mounted read-only at run time,
and its credentials are a second read-only mount, never baked into an image
and never in an environment variable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from docker.types import Mount

from hatchery.configs.agent import to_json
from hatchery.configs.broker import tls_source_files
from hatchery.core.paths import StatePaths, state_paths
from hatchery.core.plan import Action, Change, bind
from hatchery.core.render import content_hash
from hatchery.core.state import ensure_dir, read_text
from hatchery.core.words import plural
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.base import INSTANCE_ENV, new_instance
from hatchery.runtime.docker import baseimage, build
from hatchery.runtime.docker.containers import (
    ContainerSpec,
    create_container,
    fleet_labels,
    remove_container,
    restart_container,
    running_summary,
    spec_diff,
    start_container,
    stop_container,
)
from hatchery.runtime.docker.decide import (
    AgentFacts,
    AgentWanted,
    RestoreFacts,
    RestoreWanted,
    decide_agent,
    decide_restore,
)
from hatchery.runtime.docker.engine import (
    AGENT_LABEL,
    CONFIG_HASH,
    INSTANCE_LABEL,
    docker_errors,
    engine,
    ensure_network,
    find_container,
    image_id,
    local_or,
)
from hatchery.runtime.docker import names
from hatchery.runtime.docker.layout import AGENT_CONFIG_DIR, CONTAINER_SECRETS_DIR, extra_hosts
from hatchery.runtime.docker.obtain import building, obtain_image
from hatchery.runtime.docker.remote import fleet_files
from hatchery.runtime.docker.states import (
    agent_client,
    agent_container,
    agent_host,
    agent_hosts,
    fleet_agents,
    host_name,
)

_LAYOUT = StatePaths.relative()


def agent_env(inv: Inventory, agent: AgentSpec, agent_config: dict) -> dict:
    broker = agent_config["broker"]
    return {**agent.env, "HATCHERY_AGENT_NAME": agent.name, "HATCHERY_MANAGER": inv.manager,
            "HATCHERY_BROKER_HOST": str(broker["host"]), "HATCHERY_BROKER_PORT": str(broker["port"]),
            "HATCHERY_AGENT_CONFIG": build.AGENT_CONFIG}


def agent_spec(inv: Inventory, agent: AgentSpec, tag: str, conf_dir: str, config_text: str,
               secrets_dir: Optional[str] = None) -> ContainerSpec:
    labels = {**fleet_labels(inv, "agent"), AGENT_LABEL: agent.name, CONFIG_HASH: content_hash(config_text)}
    mounts = [Mount(AGENT_CONFIG_DIR, conf_dir, type="bind", read_only=True)]
    if secrets_dir:   # credentials: a read-only mount, never an image layer or an env var
        mounts.append(Mount(CONTAINER_SECRETS_DIR, secrets_dir, type="bind", read_only=True))
    return ContainerSpec(
        name=agent_container(inv, agent), image=tag, network=inv.broker.network, labels=labels,
        env=agent_env(inv, agent, json.loads(config_text)), mounts=tuple(mounts),
        extra_hosts=extra_hosts(inv, agent))


def create_agent_container(client, spec: ContainerSpec) -> str:
    """Create and start an agent's container with a new instance token (env and label).

    One token per container creation: a restart of the same container (its
    restart policy, agent.restart) keeps its environment, so it keeps its
    instance; a recreate or a rollback makes a new container and a new token.
    """
    instance = new_instance()
    return create_container(client, replace(spec, created_env={INSTANCE_ENV: instance},
                                            created_labels={**spec.created_labels, INSTANCE_LABEL: instance}))


def ca_text(inv: Inventory) -> str:
    """The fleet CA the agent verifies the broker with ('' with TLS off)."""
    cafile = tls_source_files(inv).get("cafile")
    return read_text(Path(cafile)) if cafile else ""


def agent_plan(inv: Inventory, agent: AgentSpec, *, agent_config: dict,
               context_dir: Optional[Path] = None, secret_files: Optional[dict] = None) -> list:
    """``secret_files``: {name: text} mounted read-only at /run/secrets/hatchery (credentials)."""
    client = agent_client(inv, agent)
    # A host without the base image yet is probed through the local engine's copy (same id
    # after docker save | load); the copy itself happens when the agent is created.
    probe_on = client if image_id(client, agent.image) else local_or(client, agent.image)
    if probe_on is client and not image_id(client, agent.image):
        return [_base_image_first(inv, agent, client, lambda: agent_plan(
            inv, agent, agent_config=agent_config, context_dir=context_dir, secret_files=secret_files))]
    files = fleet_files(inv, agent_host(inv, agent))
    base = build.base_image(inv, probe_on, agent)
    context = build.agent_context(inv, agent, base)
    tag = f"{build.agent_image_repo(agent.name)}:{context.digest(base.image_id)}"
    config_text = to_json(agent_config)
    conf_dir = str(Path(files.path(str(_LAYOUT.mounted_agent_config(agent.name)))).parent)
    secrets_dir = files.path(str(_LAYOUT.agent_secrets_dir(agent.name))) if secret_files else None
    spec = agent_spec(inv, agent, tag, conf_dir, config_text, secrets_dir)
    hatch = _AgentHatch(inv, agent, client, files, spec, context, config_text,
                        Path(context_dir or state_paths(inv).build_dir(agent.name)),
                        secret_files or {}, ca_text(inv))
    container = find_container(client, spec.name)
    current = running_summary(container, spec) if container is not None else {}
    facts = AgentFacts(status=container.status if container is not None else None,
                       short_id=container.short_id if container is not None else "", summary=current,
                       image_cached=bool(image_id(client, tag)),
                       # read only where it decides anything: a running, current container
                       stale_secrets=bool(container is not None and container.status == "running"
                                          and hatch.stale_secrets()))
    wanted = AgentWanted(agent.name, spec.summary(), baseimage.describe(base, agent.main_command))
    steps = {Action.CREATE: hatch.create, Action.RECREATE: hatch.recreate, Action.START: hatch.start,
             Action.RESTART: hatch.restart}
    diffs = {Action.CREATE: spec_diff({}, spec), Action.RECREATE: spec_diff(current, spec)}
    return [bind(c, diffs.get(c.action, ""), steps) for c in decide_agent(facts, wanted)]


def _base_image_first(inv: Inventory, agent: AgentSpec, client, plan_again) -> Change:
    """The agent's base image is on no engine we reach: the plan cannot know the image's
    tag yet (it hashes the base's id), so this one change gets the base first (pulled, else
    built offline), then plans the agent again and applies that."""
    container = find_container(client, agent_container(inv, agent))
    where = "no container" if container is None else f"container {container.status}"

    def apply() -> str:
        steps = [obtain_image(client, agent.image)]
        if not image_id(client, agent.image):
            raise RuntimeFailure(f"base image {agent.image} is still not on the engine", "run the hatch again")
        for change in plan_again():
            if change.failed:
                raise RuntimeFailure(change.reason, f"invoke agent.hatch --name {agent.name} --check")
            if change.needed and change.apply is not None:
                steps.append(change.apply() or "")
        return "; ".join(s for s in steps if s)
    return Change(f"agent {agent.name}", Action.CREATE if container is None else Action.RECREATE,
                  f"{where}; base image {agent.image} not on the engine yet (pulled, else built offline)",
                  apply=apply)


@dataclass
class _AgentHatch:
    """The apply steps of agent_plan, bound to what was planned."""

    inv: Inventory
    agent: AgentSpec
    client: object
    files: object
    spec: ContainerSpec
    context: build.BuildContext
    config_text: str
    context_dir: Path
    secret_files: dict = field(default_factory=dict)
    ca_text: str = ""

    def _secret(self, name: str) -> str:
        return str(_LAYOUT.agent_secrets_dir(self.agent.name) / name)

    def _ca_file(self) -> str:
        return str(_LAYOUT.mounted_agent_ca(self.agent.name))

    def _write_files(self) -> None:
        self.files.write(str(_LAYOUT.mounted_agent_config(self.agent.name)), self.config_text)
        if self.ca_text:    # public: the CA certificate only, never its key
            self.files.write(self._ca_file(), self.ca_text, mode=0o644)
        for name, text in self.secret_files.items():   # 0600 in a 0700 dir; root reads them
            self.files.write(self._secret(name), text)

    def stale_secrets(self) -> bool:
        if self.ca_text and self.files.read(self._ca_file()) != self.ca_text:
            return True
        return any(self.files.read(self._secret(name)) != text for name, text in self.secret_files.items())

    def create(self) -> str:
        names.record(self.inv)
        steps = [ensure_network(self.client, self.spec.network, fleet_labels(self.inv, "network"))]
        if not image_id(self.client, self.spec.image):
            steps.append(obtain_image(self.client, self.agent.image))   # no registry: save | load, or built
            steps.append(self._build())
        self._write_files()
        steps.append(f"container {create_agent_container(self.client, self.spec)} started")
        return "; ".join(s for s in steps if s)

    def _build(self) -> str:
        with building(self.client, self.spec.image):     # one build per tag: another fleet's agent may share it
            if image_id(self.client, self.spec.image):
                return f"{self.spec.image} found (another run built it meanwhile)"
            ensure_dir(self.context_dir.parent)
            return build.build_agent_image(self.client, self.context, self.context_dir,
                                           self.spec.image, self.agent.name)

    def restart(self) -> str:
        self._write_files()
        restart_container(self.client, self.spec.name)
        return "credential files rewritten; container restarted"

    def recreate(self) -> str:
        _keep_previous(self.client, self.files, self.spec.name, self.agent.name)
        remove_container(self.client, self.spec.name)
        return self.create()

    def start(self) -> str:
        self._write_files()
        return start_container(self.client, self.spec.name)


# --- provenance: what each container came from ---------------------------------------
# The image tag is the build context's digest (agent_kit, Dockerfile, base image
# id) and the CONFIG_HASH label the rendered config's: both are on the container.
# Before a recreate, the image and config it ran are kept in previous.json (beside
# the mounted config), so fleet.rollout can put a failed agent back on them; the
# old image stays (only agent.retire removes an agent's images).

def _keep_previous(client, files, container_name: str, agent_name: str) -> None:
    container = find_container(client, container_name)
    text = files.read(str(_LAYOUT.mounted_agent_config(agent_name)))
    if container is None or not text:
        return
    previous = {"image": container.attrs["Config"]["Image"],
                "config": container.labels.get(CONFIG_HASH), "config_text": text}
    files.write(str(_LAYOUT.agent_previous(agent_name)), json.dumps(previous, sort_keys=True) + "\n")


def agent_restart_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Restart the agent's container as it is (same image, same config)."""
    client, name, item = agent_client(inv, agent), agent_container(inv, agent), f"agent {agent.name}"
    container = find_container(client, name)
    if container is None:
        return [Change(item, Action.NONE, f"no container; hatch it: invoke agent.hatch --name {agent.name}")]

    def restart() -> str:
        restart_container(client, name)
        return f"container {container.short_id} restarted"
    return [Change(item, Action.RESTART, f"container {container.status}; restart requested", apply=restart)]


def agent_restore_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Recreate the container on the image and config it ran before its last recreate."""
    client, files = agent_client(inv, agent), fleet_files(inv, agent_host(inv, agent))
    try:
        previous = json.loads(files.read(str(_LAYOUT.agent_previous(agent.name))) or "null")
    except ValueError:
        previous = None

    def restore() -> str:
        conf_dir = str(Path(files.path(str(_LAYOUT.mounted_agent_config(agent.name)))).parent)
        secrets_dir = files.path(str(_LAYOUT.agent_secrets_dir(agent.name))) if inv.broker.auth else None
        spec = agent_spec(inv, agent, previous["image"], conf_dir, previous["config_text"], secrets_dir)
        if not image_id(client, spec.image):
            raise RuntimeFailure(f"the previous image {spec.image} is gone", "hatch the agent again")
        remove_container(client, spec.name)
        files.write(str(_LAYOUT.mounted_agent_config(agent.name)), previous["config_text"])
        return f"container {create_agent_container(client, spec)} on {spec.image}"
    return [bind(c, "", {Action.ROLLBACK: restore}, "hatch the agent again")
            for c in decide_restore(RestoreFacts(previous), RestoreWanted(agent.name))]


def agent_stop_plan(inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
    """Stop the agent's container; with ``remove`` (agent.retire) also its container, images and config."""
    client, name, item = agent_client(inv, agent), agent_container(inv, agent), f"agent {agent.name}"
    container = find_container(client, name)
    if remove:
        files = fleet_files(inv, agent_host(inv, agent))
        return [Change(item, Action.REMOVE, "retiring: container, images and config",
                       apply=lambda: _retire(client, files, inv, agent))]
    if container is None or container.status != "running":
        return [Change(item, Action.NONE, "not running")]
    return [Change(item, Action.STOP, f"running ({container.short_id})", apply=lambda: stop_container(container))]


def _retire(client, files, inv: Inventory, agent: AgentSpec) -> str:
    remove_container(client, agent_container(inv, agent))
    repo = build.agent_image_repo(agent.name)
    with docker_errors(f"remove images {repo}"):
        # another fleet on this engine may run an agent of the same name on the same image
        in_use = {c.attrs.get("ImageID") for c in client.containers.list(
            all=True, sparse=True, filters={"label": f"{AGENT_LABEL}={agent.name}"})}
        images = client.images.list(name=repo)
        tags = [t for image in images if image.id not in in_use for t in image.tags]
        for tag in tags:
            client.images.remove(tag, noprune=False)
    files.remove_tree(str(_LAYOUT.agent_dir(agent.name)))
    kept = sum(1 for image in images if image.id in in_use)
    return (f"removed container, {plural(len(tags), 'image')} and config"
            + (f"; kept {plural(kept, 'image')} another fleet's container runs" if kept else ""))


def orphan_stop_plans(inv: Inventory) -> dict:
    """{host: () -> Changes}: per engine, stop running agent containers of this fleet whose
    names are not in the inventory. Each engine is asked only when its function runs."""
    return {host_name(inv, address): (lambda a=address: _orphans_on(inv, a)) for address in agent_hosts(inv)}


def _orphans_on(inv: Inventory, address: Optional[str]) -> list:
    changes = []
    for container in fleet_agents(engine(address), inv):
        name = container.labels.get(AGENT_LABEL, "")
        if name not in inv.agents and container.status == "running":
            changes.append(Change(f"agent {name}", Action.STOP,
                                  f"orphan: not in the inventory, running ({container.short_id})",
                                  apply=lambda c=container: stop_container(c)))
    return changes


def agent_logs(inv: Inventory, agent: AgentSpec, *, lines: int = 50, follow: bool = False):
    """The container's output (handler and agent process), last ``lines``, then new ones."""
    name = agent_container(inv, agent)
    container = find_container(agent_client(inv, agent), name)
    if container is None:
        raise RuntimeFailure(f"agent {agent.name} has no container ({name})",
                             f"start it: invoke agent.hatch --name {agent.name}")
    pending = b""
    with docker_errors(f"read the logs of {name}"):
        for chunk in container.logs(stream=True, follow=follow, tail=lines):
            pending += chunk
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")
