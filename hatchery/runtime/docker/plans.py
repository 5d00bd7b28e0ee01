"""The Docker runtime: the broker and each agent as containers on the fleet's network.

Each planner builds the wanted container (a ``ContainerSpec``), reads back what
runs, and returns the Change that brings them in line: create when missing,
recreate only when the container itself must differ, start when stopped.
The broker's config file is bind-mounted (its directory, so an atomic rewrite
is seen inside): a config-only change rewrites it and sends SIGHUP, or restarts
the container when SIGHUP cannot apply it. Agent configs are mounted read-only
at run time, never baked into an image.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from docker.types import Mount

from hatchery.configs.agent import to_json
from hatchery.configs.broker import (
    CONTAINER_CONF_DIR,
    CONTAINER_DATA_DIR,
    CONTAINER_PORT,
    reload_is_enough,
)
from hatchery.core.checks import timed
from hatchery.core.plan import Change, text_diff
from hatchery.core.render import content_hash
from hatchery.core.state import StatePaths, ensure_dir
from hatchery.errors import DockerError
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.docker import images, remote
from hatchery.runtime.docker.engine import (
    FLEET,
    MANAGED,
    ROLE,
    docker_errors,
    engine,
    ensure_network,
    find_container,
    image_id,
)

SPEC_HASH = "io.hatchery.spec-hash"
CONFIG_HASH = "io.hatchery.config-hash"
AGENT = images.AGENT_LABEL
SECOND = 1_000_000_000      # Docker durations are in nanoseconds
BROKER_HEALTHCHECK = {
    # A plain TCP connect: anonymous clients are refused, and a credential in the
    # healthcheck would show in `docker inspect`. bash's /dev/tcp, else busybox nc.
    "test": ["CMD-SHELL", f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{CONTAINER_PORT}' 2>/dev/null"
             f" || nc -z 127.0.0.1 {CONTAINER_PORT}"],
    "interval": 10 * SECOND, "timeout": 5 * SECOND, "retries": 3, "start_period": 3 * SECOND}
SECRETS_MOUNT = "/run/secrets/hatchery"     # agentconf.CONTAINER_SECRETS_DIR


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
    created_labels: dict = field(default_factory=dict)  # set at creation, not compared

    def summary(self) -> dict:
        return {"image": self.image, "env": shown_env(self.env),
                "ports": sorted(_port_text(k, ip, port) for k, (ip, port) in self.ports.items()),
                "mounts": sorted(_mount_text(m["Type"], m["Source"], m["Target"], m["ReadOnly"])
                                 for m in self.mounts),
                "network": self.network, "aliases": sorted(self.aliases),
                "restart": "unless-stopped",
                "healthcheck": (self.healthcheck or {}).get("test"),
                "labels": dict(sorted(self.labels.items()))}

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
            "env": shown_env({k: v for k, v in env.items() if k in wanted.env or k.startswith("HATCHERY_")}),
            "ports": sorted(_port_text(k, b.get("HostIp"), b.get("HostPort"))
                            for k, binds in (host.get("PortBindings") or {}).items() for b in binds or []),
            "mounts": sorted(_mount_text(m["Type"], m.get("Name") or m["Source"], m["Destination"],
                                         not m["RW"]) for m in attrs.get("Mounts") or []),
            "network": ",".join(sorted(networks)),
            "aliases": sorted(a for a in aliases if a in wanted.aliases),
            "restart": (host.get("RestartPolicy") or {}).get("Name"),
            "healthcheck": (config.get("Healthcheck") or {}).get("Test") if wanted.healthcheck else None,
            "labels": {k: v for k, v in sorted((config.get("Labels") or {}).items())
                       if k in wanted.labels or (k.startswith("io.hatchery.") and k not in _UNCOMPARED)}}


_UNCOMPARED = {SPEC_HASH, CONFIG_HASH, images.RECIPE_LABEL, AGENT, "io.hatchery.run"}


def summary_text(summary: dict) -> str:
    return "".join(f"{key}: {json.dumps(value, sort_keys=True)}\n" for key, value in summary.items())


def differences(current: dict, wanted: dict) -> list:
    return [key for key in wanted if current.get(key) != wanted[key]]


def create_container(client, spec: ContainerSpec) -> str:
    """Create and start ``spec``'s container; return its short id."""
    api = client.api
    host_config = api.create_host_config(
        port_bindings={k: v for k, v in spec.ports.items()}, mounts=list(spec.mounts),
        restart_policy={"Name": "unless-stopped"}, init=True, network_mode=spec.network)
    networking = api.create_networking_config(
        {spec.network: api.create_endpoint_config(aliases=list(spec.aliases) or None)})
    labels = {**spec.labels, **spec.created_labels, SPEC_HASH: spec.digest()}
    with docker_errors(f"create container {spec.name}"):
        created = api.create_container(
            spec.image, name=spec.name, environment=spec.env, labels=labels,
            ports=[int(k.split("/")[0]) for k in spec.ports], host_config=host_config,
            networking_config=networking, healthcheck=spec.healthcheck)
        api.start(created["Id"])
    return created["Id"][:12]


def remove_container(client, name: str) -> None:
    container = find_container(client, name)
    if container is not None:
        with docker_errors(f"remove container {name}"):
            container.remove(force=True)


def fleet_labels(inv: Inventory, role: str) -> dict:
    return {MANAGED: "true", ROLE: role, FLEET: inv.broker.container}


def _files(inv: Inventory, docker_host: Optional[str]):
    return remote.files_for(docker_host, inv.state_dir, inv.broker.container, inv.broker.remote_dir)


# --- broker ---------------------------------------------------------------------

BROKER_CONF = "broker/config/mosquitto.conf"


def broker_client(inv: Inventory):
    return engine(inv.broker.docker_host)


def broker_spec(inv: Inventory, conf_dir: str, conf_text: str) -> ContainerSpec:
    b = inv.broker
    return ContainerSpec(
        name=b.container, image=b.image, network=b.network, aliases=(b.dns_name,),
        labels=fleet_labels(inv, "broker"),
        ports={f"{CONTAINER_PORT}/tcp": (b.bind, b.port)},
        mounts=(Mount(CONTAINER_CONF_DIR, conf_dir, type="bind", read_only=True),
                Mount(CONTAINER_DATA_DIR, broker_volume(inv), type="volume")),
        healthcheck=BROKER_HEALTHCHECK,
        created_labels={CONFIG_HASH: content_hash(conf_text)})


def broker_volume(inv: Inventory) -> str:
    return f"{inv.broker.container}-data"


def _broker_file(name: str) -> str:
    return f"{Path(BROKER_CONF).parent.as_posix()}/{name}"


def _stale_auth(files, auth_files: dict) -> list:
    return [name for name, text in auth_files.items() if files.read(_broker_file(name)) != text]


def _auth_diff(files, stale: list) -> str:
    # Names only: the password file holds hashes.
    return "".join(f"~ {files.path(_broker_file(name))} (rewritten)\n" for name in stale)


def broker_plan(inv: Inventory, *, conf_text: str, auth_files: Optional[dict] = None) -> list:
    """``auth_files``: {name: text} (passwd, acl) written beside mosquitto.conf; a
    change to them alone is a SIGHUP reload."""
    client, files = broker_client(inv), _files(inv, inv.broker.docker_host)
    conf_dir = str(Path(files.path(BROKER_CONF)).parent)
    spec = broker_spec(inv, conf_dir, conf_text)
    current_conf = files.read(BROKER_CONF)
    auth_files = auth_files or {}
    stale = _stale_auth(files, auth_files)
    conf_diff = text_diff(current_conf, conf_text, files.path(BROKER_CONF)) + _auth_diff(files, stale)
    deploy = _BrokerDeploy(inv, client, files, spec, conf_text, auth_files)
    container = find_container(client, spec.name)
    if container is None:
        return [Change("broker", "create", "no container", _spec_diff({}, spec) + conf_diff, deploy.create)]
    current = running_summary(container, spec)
    changed = differences(current, spec.summary()) + _image_moved(client, container, spec.image)
    if changed:
        return [Change("broker", "recreate", f"{', '.join(changed)} changed",
                       _spec_diff(current, spec) + conf_diff, deploy.recreate)]
    if container.status != "running":
        return [Change("broker", "start", f"container {container.status}", conf_diff, deploy.start)]
    if current_conf == conf_text and not stale:
        return [Change("broker", "none", f"running ({container.short_id}), config unchanged")]
    if reload_is_enough(current_conf, conf_text):
        what = "config" if current_conf != conf_text else " and ".join(stale)
        return [Change("broker", "reload", f"{what} changed; SIGHUP is enough", conf_diff, deploy.reload)]
    return [Change("broker", "restart", "config changed; needs a restart", conf_diff, deploy.restart)]


def _image_moved(client, container, image: str) -> list:
    """['image'] when the tag now names another image than the container runs (a rebuild)."""
    wanted = image_id(client, image)
    return ["image"] if wanted and wanted != container.attrs["Image"] else []


def _spec_diff(current: dict, spec: ContainerSpec) -> str:
    return text_diff(summary_text(current) if current else "", summary_text(spec.summary()),
                     f"container {spec.name}")


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
        return self.files.write(BROKER_CONF, self.conf_text, mode=0o644, dir_mode=0o755)

    def create(self) -> str:
        labels = fleet_labels(self.inv, "broker")
        steps = [ensure_network(self.client, self.spec.network, labels),
                 _ensure_volume(self.client, broker_volume(self.inv), labels),
                 _ensure_image(self.client, self.spec.image)]
        self._write_conf()
        steps.append(f"container {create_container(self.client, self.spec)} started")
        return "; ".join(s for s in steps if s)

    def recreate(self) -> str:
        remove_container(self.client, self.spec.name)
        return self.create()

    def start(self) -> str:
        self._write_conf()
        with docker_errors(f"start {self.spec.name}"):
            self.client.containers.get(self.spec.name).start()
        return "started"

    def reload(self) -> str:
        self._write_conf()
        with docker_errors(f"signal {self.spec.name}"):
            self.client.containers.get(self.spec.name).kill(signal="SIGHUP")
        return "config rewritten; SIGHUP sent"

    def restart(self) -> str:
        self._write_conf()
        with docker_errors(f"restart {self.spec.name}"):
            self.client.containers.get(self.spec.name).restart(timeout=10)
        return "config rewritten; container restarted"


def write_auth_files(files, auth_files: dict) -> None:
    for name, text in auth_files.items():
        files.write(_broker_file(name), text, mode=0o644, dir_mode=0o755)


def auth_sync_plan(inv: Inventory, auth_files: dict) -> list:
    """Bring the broker's password and ACL files in line and SIGHUP it (agent.hatch, retire, rotate)."""
    files = _files(inv, inv.broker.docker_host)
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


def _ensure_volume(client, name: str, labels: dict) -> str:
    import docker.errors
    with docker_errors(f"create volume {name}"):
        try:
            client.volumes.get(name)
            return ""
        except docker.errors.NotFound:
            client.volumes.create(name, labels=labels)
            return f"volume {name} created"


def _ensure_image(client, image: str) -> str:
    if image_id(client, image):
        return ""
    with docker_errors(f"pull {image} (not on this engine; for offline hosts run: invoke images.bootstrap)"):
        client.images.pull(image)
    return f"pulled {image}"


def remove_fleet(client, inv: Inventory) -> None:
    """Every container, network and volume labelled with this fleet, and its agent images.

    Not a task: the tests and benchmarks clean up their throw-away fleets with it.
    """
    label = f"{FLEET}={inv.broker.container}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    for image in client.images.list(filters={"label": "io.hatchery.role=agent-image"}):
        if any(t.startswith(f"hatchery/agent-{inv.broker.container_prefix}") for t in image.tags):
            client.images.remove(image.id, force=True)


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


# --- agents ---------------------------------------------------------------------

def agent_container(inv: Inventory, agent: AgentSpec) -> str:
    return f"{inv.broker.container_prefix}agent-{agent.name}"


def agent_client(inv: Inventory, agent: AgentSpec):
    return engine(_agent_host(inv, agent))


def _agent_host(inv: Inventory, agent: AgentSpec) -> Optional[str]:
    return agent.docker_host or inv.broker.docker_host


def _agent_conf(agent: AgentSpec) -> str:
    return f"agents/{agent.name}/config/agent.json"


def agent_env(inv: Inventory, agent: AgentSpec, agent_config: dict) -> dict:
    broker = agent_config["broker"]
    return {**agent.env, "HATCHERY_AGENT_NAME": agent.name, "HATCHERY_MANAGER": inv.manager,
            "HATCHERY_BROKER_HOST": str(broker["host"]), "HATCHERY_BROKER_PORT": str(broker["port"]),
            "HATCHERY_AGENT_CONFIG": images.AGENT_CONFIG}


def _agent_secrets(agent: AgentSpec) -> str:
    return f"agents/{agent.name}/secrets"


def agent_spec(inv: Inventory, agent: AgentSpec, tag: str, conf_dir: str, config_text: str,
               secrets_dir: Optional[str] = None) -> ContainerSpec:
    labels = {**fleet_labels(inv, "agent"), AGENT: agent.name, CONFIG_HASH: content_hash(config_text)}
    mounts = [Mount(images.AGENT_CONFIG_DIR, conf_dir, type="bind", read_only=True)]
    if secrets_dir:   # credentials: a read-only mount, never an image layer or an env var
        mounts.append(Mount(SECRETS_MOUNT, secrets_dir, type="bind", read_only=True))
    return ContainerSpec(
        name=agent_container(inv, agent), image=tag, network=inv.broker.network, labels=labels,
        env=agent_env(inv, agent, _config_dict(config_text)), mounts=tuple(mounts))


def _config_dict(config_text: str) -> dict:
    return json.loads(config_text)


def agent_plan(inv: Inventory, agent: AgentSpec, *, agent_config: dict,
               context_dir: Optional[Path] = None, secret_files: Optional[dict] = None) -> list:
    """``secret_files``: {name: text} mounted read-only at /run/secrets/hatchery (credentials)."""
    client, files = agent_client(inv, agent), _files(inv, _agent_host(inv, agent))
    context = images.agent_context(inv, agent)
    tag = f"{images.agent_image_repo(agent.name)}:{context.digest(image_id(client, agent.image) or agent.image)}"
    config_text = to_json(agent_config)
    conf_dir = str(Path(files.path(_agent_conf(agent))).parent)
    secrets_dir = files.path(_agent_secrets(agent)) if secret_files else None
    spec = agent_spec(inv, agent, tag, conf_dir, config_text, secrets_dir)
    hatch = _AgentHatch(inv, agent, client, files, spec, context, config_text,
                        Path(context_dir or StatePaths(inv.state_dir).build_dir(agent.name)),
                        secret_files or {})
    item = f"agent {agent.name}"
    built = "image cached" if image_id(client, tag) else "image to build"
    container = find_container(client, spec.name)
    if container is None:
        return [Change(item, "create", f"no container; {built}", _spec_diff({}, spec), hatch.create)]
    current = running_summary(container, spec)
    changed = differences(current, spec.summary())
    if changed:
        return [Change(item, "recreate", f"{', '.join(changed)} changed; {built}",
                       _spec_diff(current, spec), hatch.recreate)]
    if container.status != "running":
        return [Change(item, "start", f"container {container.status}", apply=hatch.start)]
    if hatch.stale_secrets():
        return [Change(item, "restart", "credential files differ from the state directory",
                       apply=hatch.restart)]
    return [Change(item, "none", f"running ({container.short_id}), {tag.split(':')[1]}")]


@dataclass
class _AgentHatch:
    """The apply steps of agent_plan, bound to what was planned."""

    inv: Inventory
    agent: AgentSpec
    client: object
    files: object
    spec: ContainerSpec
    context: images.BuildContext
    config_text: str
    context_dir: Path
    secret_files: dict = field(default_factory=dict)

    def _write_files(self) -> None:
        self.files.write(_agent_conf(self.agent), self.config_text)
        for name, text in self.secret_files.items():   # 0600 in a 0700 dir; root reads them
            self.files.write(f"{_agent_secrets(self.agent)}/{name}", text)

    def stale_secrets(self) -> bool:
        return any(self.files.read(f"{_agent_secrets(self.agent)}/{name}") != text
                   for name, text in self.secret_files.items())

    def create(self) -> str:
        steps = [ensure_network(self.client, self.spec.network, fleet_labels(self.inv, "network"))]
        if not image_id(self.client, self.spec.image):
            ensure_dir(self.context_dir.parent)
            steps.append(images.build_agent_image(self.client, self.context, self.context_dir,
                                                  self.spec.image, self.agent.name))
        self._write_files()
        steps.append(f"container {create_container(self.client, self.spec)} started")
        return "; ".join(steps)

    def restart(self) -> str:
        self._write_files()
        with docker_errors(f"restart {self.spec.name}"):
            self.client.containers.get(self.spec.name).restart(timeout=10)
        return "credential files rewritten; container restarted"

    def recreate(self) -> str:
        remove_container(self.client, self.spec.name)
        return self.create()

    def start(self) -> str:
        self._write_files()
        with docker_errors(f"start {self.spec.name}"):
            self.client.containers.get(self.spec.name).start()
        return "started"


def agent_stop_plan(inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
    """Stop the agent's container; with ``remove`` (agent.retire) also its container, images and config."""
    client, name, item = agent_client(inv, agent), agent_container(inv, agent), f"agent {agent.name}"
    container = find_container(client, name)
    if remove:
        files = _files(inv, _agent_host(inv, agent))
        return [Change(item, "remove", "retiring: container, images and config",
                       apply=lambda: _retire(client, files, inv, agent))]
    if container is None or container.status != "running":
        return [Change(item, "none", "not running")]
    return [Change(item, "stop", f"running ({container.short_id})", apply=lambda: _stop(container))]


def _stop(container) -> str:
    with docker_errors(f"stop {container.name}"):
        container.stop(timeout=10)
    return "stopped"


def _retire(client, files, inv: Inventory, agent: AgentSpec) -> str:
    remove_container(client, agent_container(inv, agent))
    repo = images.agent_image_repo(agent.name)
    with docker_errors(f"remove images {repo}"):
        tags = [t for image in client.images.list(name=repo) for t in image.tags]
        for tag in tags:
            client.images.remove(tag, noprune=False)
    files.remove_tree(f"agents/{agent.name}")
    return f"removed container, {len(tags)} image(s) and config"


def agent_list(inv: Inventory) -> list:
    """The inventory's docker agents and any managed agent container of this fleet."""
    rows, seen = [], set()
    for host in {_agent_host(inv, a) for a in inv.agents.values() if a.runtime == "docker"} or {inv.broker.docker_host}:
        for container in _fleet_agents(engine(host), inv):
            name = container.labels.get(AGENT, "")
            seen.add(name)
            rows.append(_agent_row(name, container, name in inv.agents))
    for agent in inv.agents.values():
        if agent.runtime == "docker" and agent.name not in seen:
            rows.append({"agent": agent.name, "runtime": "docker", "running": False, "pid": None,
                         "container": agent_container(inv, agent), "status": "missing"})
    return rows


def _fleet_agents(client, inv: Inventory) -> list:
    with docker_errors("list agent containers"):
        return client.containers.list(all=True, filters={"label": [f"{ROLE}=agent", f"{FLEET}={inv.broker.container}"]})


def _agent_row(name: str, container, in_inventory: bool) -> dict:
    state = container.attrs["State"]
    return {"agent": name, "runtime": "docker", "running": state.get("Running", False),
            "pid": state.get("Pid") or None, "container": container.name, "status": container.status,
            "health": (state.get("Health") or {}).get("Status"),
            "image": container.attrs["Config"]["Image"], "in_inventory": in_inventory}


# --- inside the containers ------------------------------------------------------------

def exec_in_agent(inv: Inventory, agent: AgentSpec, argv: list, timeout: float) -> tuple:
    """Run ``argv`` inside the agent's container, killed after ``timeout`` seconds: (exit code, output)."""
    name = agent_container(inv, agent)
    container = find_container(agent_client(inv, agent), name)
    if container is None or container.status != "running":
        raise DockerError(f"agent {agent.name}'s container {name} is not running",
                          f"hatch it: invoke agent.hatch --name {agent.name}")
    # exec has no timeout of its own; coreutils' timeout exits 124 when it fires.
    wrapped = ["timeout", "-k", "1", str(max(1, math.ceil(timeout))), *argv]
    with docker_errors(f"exec in {name}"):
        code, output = container.exec_run(wrapped, demux=False)
    return code, (output or b"").decode(errors="replace")


def verify_in_agent(inv: Inventory, agent: AgentSpec, timeout: float = 5.0) -> list:
    """Inside the container: the broker name resolves; a retained round trip works
    with the agent's own mounted credentials (agent_kit.selftest)."""
    host = inv.broker.dns_name

    def run(argv: list) -> str:
        code, out = exec_in_agent(inv, agent, argv, timeout + 2)
        if code != 0:
            raise DockerError(f"{' '.join(argv[:3])} exited {code}: {out.strip()[-200:]}")
        return out.strip()

    def round_trip() -> str:
        got = run(["python3", "-m", "agent_kit.selftest", "--config", images.AGENT_CONFIG,
                   "--timeout", str(timeout)])
        if got != "ping":
            raise DockerError(f"read back {got[-80:]!r} instead of 'ping'")
        return "published a retained message as the agent and read it back"

    return [timed(f"agent {agent.name}: {host} resolves in the container",
                  lambda: run(["getent", "hosts", host])),
            timed(f"agent {agent.name}: retained round trip in the container (own credentials)",
                  round_trip)]


def render_only(inv: Inventory, agents: list) -> list:
    """Write each agent's build context (Dockerfile included) for review; return the Dockerfiles."""
    paths = []
    for agent in agents:
        directory = StatePaths(inv.state_dir).build_dir(agent.name)
        ensure_dir(directory.parent)
        images.agent_context(inv, agent).write(directory)
        paths.append(directory / "Dockerfile")
    return paths


def render_dockerfile(inv: Inventory, agent: AgentSpec) -> str:
    return images.render_dockerfile(inv, agent)
