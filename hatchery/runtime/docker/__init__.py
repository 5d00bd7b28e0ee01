"""The Docker runtime: the broker and the agents as containers on a local or remote engine.

Callers use it through the runtime interface: ``hatchery.runtime.for_runtime("docker")``
returns a ``DockerRuntime`` (see ``runtime.base.Runtime``). This module is the
package's public face for what only Docker has; the job modules behind it
(engine, containers, broker, agents, inside, build, bootstrap, remote) are internal.

- ``bootstrap_images(client, which=...)``, ``DEFAULT_IMAGES``, ``RECIPES``: the
  offline base images (invoke images.bootstrap).
- ``engine(docker_host)``: the cached client for an engine address;
  ``forget_connections()`` closes every cached engine and SSH connection.
- ``agent_container(inv, agent)``: the name of an agent's container.
- ``base_image(inv, client, agent)``: what the agent's base image has (python3,
  package manager, ENTRYPOINT/CMD, USER), probed once per image id; a ``BaseImage``
  (what to install, which main process, as which user). ``inspect_base_image(client,
  ref, cache_dir)`` probes any image; ``forget_base_images()`` drops the in-memory cache.
- ``agent_context(inv, agent, base)``: an agent image's build context, in memory.
- ``shown_env(env)``: a container environment as --diff shows it (values of the
  operator's variables as digests).
- ``parse_ssh_url(url)``: ``ssh://user@host:port`` -> (user, host, port), or UsageError.
- ``FLEET``: the label that scopes every object of one fleet.
"""

from hatchery.runtime.docker.agents import agent_container
from hatchery.runtime.docker.bootstrap import DEFAULT_IMAGES, RECIPES, bootstrap_images
from hatchery.runtime.docker.baseimage import BaseImage
from hatchery.runtime.docker.baseimage import forget as forget_base_images
from hatchery.runtime.docker.baseimage import inspect as inspect_base_image
from hatchery.runtime.docker.build import BuildContext, agent_context, base_image
from hatchery.runtime.docker.containers import shown_env
from hatchery.runtime.docker.engine import FLEET, engine, forget_engines
from hatchery.runtime.docker.remote import forget_connections as _forget_ssh
from hatchery.runtime.docker.remote import parse_ssh_url
from hatchery.runtime.docker.runtime import DockerRuntime


def forget_connections() -> None:
    """Close and drop every cached engine client and SSH connection (tests; after a host change)."""
    _forget_ssh()
    forget_engines()


__all__ = ["DEFAULT_IMAGES", "FLEET", "RECIPES", "BaseImage", "BuildContext", "DockerRuntime",
           "agent_container", "agent_context", "base_image", "bootstrap_images", "engine",
           "forget_base_images", "forget_connections", "inspect_base_image", "parse_ssh_url",
           "shown_env"]
