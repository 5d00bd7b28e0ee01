"""The nodes a service may run on, and the images they need: no registry.

An image reaches a node the way it reaches a host of ``hosts:``: the base image
by ``docker save | load`` from this machine's engine, then the agent's image is
built there from its context (its tag is the context's digest, so every node
builds the same tag; the shared layers are built once per node and cached).
Every node Swarm may place the service on (``inventory.swarm.eligible_hosts``)
gets it, in parallel; a node that cannot be reached is skipped and named.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hatchery.core.words import plural
from hatchery.errors import DockerError, HatcheryError
from hatchery.inventory.model import HostSpec, Inventory
from hatchery.inventory.swarm import eligible_hosts, swarm_of
from hatchery.runtime.docker import build
from hatchery.runtime.docker.engine import (
    docker_errors,
    engine,
    ensure_image,
    image_id,
    local_or,
)


def eligible(inv: Inventory, placement) -> list:
    """The hosts whose node may run a service with ``placement``."""
    return eligible_hosts(inv.hosts, swarm_of(inv), placement)


def missing_on(hosts: list, image: str) -> tuple:
    """(hosts without ``image``, {host: error} for those that could not be asked)."""
    def ask(host: HostSpec):
        try:
            return host.name, image_id(engine(host.docker_host), image) is not None, ""
        except HatcheryError as exc:
            return host.name, True, str(exc).splitlines()[0]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
        answers = list(pool.map(ask, hosts))
    return [h for h, (name, has, _) in zip(hosts, answers) if not has], \
        {name: error for name, _, error in answers if error}


def ensure_everywhere(hosts: list, image: str) -> str:
    """``image`` (a base, the broker's) on every host, copied from this machine's engine."""
    return _on_each(hosts, lambda client, host: ensure_image(client, image) or "present")


def build_everywhere(hosts: list, context: build.BuildContext, base_ref: str, tag: str, agent: str,
                     context_dir: Path) -> str:
    """The agent's image ``tag`` built on every host lacking it (its base copied there first)."""
    def one(client, host: HostSpec) -> str:
        if image_id(client, tag):
            return "present"
        copied = ensure_image(client, base_ref)
        directory = context_dir / host.name
        directory.parent.mkdir(parents=True, exist_ok=True)
        built = build.build_agent_image(client, context, directory, tag, agent)
        return "; ".join(s for s in (copied, built) if s)
    return _on_each(hosts, one)


def _on_each(hosts: list, work) -> str:
    """Run ``work(client, host)`` on every host at once; one line naming what each did.
    A host that cannot be reached is skipped (Swarm places nothing there while it is
    down); any other failure fails the whole, after every host has had its turn."""
    def run(host: HostSpec) -> tuple:
        started = time.monotonic()
        try:
            client = engine(host.docker_host)
        except HatcheryError as exc:
            return f"{host.name}: skipped, {str(exc).splitlines()[0]}", None
        try:
            done = work(client, host)
        except HatcheryError as exc:
            return "", f"{host.name}: {exc}"
        took = f" ({time.monotonic() - started:.1f}s)" if done != "present" else ""
        return f"{host.name}: {done}{took}", None
    if not hosts:
        return "no eligible node"
    with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
        results = list(pool.map(run, hosts))
    errors = [error for _, error in results if error]
    if errors:
        raise DockerError("; ".join(errors), "fix the node named above, then run the task again")
    return "; ".join(line for line, _ in results)


def probe_client(hosts: list, image: str):
    """An engine to probe the base image on: a node that has it, else this machine's."""
    for host in hosts:
        try:
            client = engine(host.docker_host)
            if image_id(client, image):
                return client
        except HatcheryError:
            continue
    client = engine(hosts[0].docker_host) if hosts else engine(None)
    return local_or(client, image)


def remove_images(hosts: list, *repos: str) -> str:
    """Remove every tag of ``repos`` on every host that can be reached."""
    def one(client, host: HostSpec) -> str:
        with docker_errors(f"remove images {', '.join(repos)}"):
            tags = [t for repo in repos for image in client.images.list(name=repo) for t in image.tags]
            for tag in tags:
                client.images.remove(tag, force=True, noprune=False)
        return f"{plural(len(tags), 'image')} removed"
    return _on_each(hosts, one)
