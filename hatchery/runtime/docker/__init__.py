"""The Docker runtime: the broker and the agents as containers on a local or remote engine.

Callers use it through the runtime interface: ``hatchery.runtime.for_runtime("docker")``
returns a ``DockerRuntime`` (see ``runtime.base.Runtime``). This module is the
package's public face for what only Docker has; the job modules behind it
(engine, containers, broker, agents, inside, build, bootstrap, remote) are internal.

- ``bootstrap_images(client, which=...)``, ``DEFAULT_IMAGES``, ``RECIPES``: the
  offline base images (invoke images.bootstrap); ``recipe_for(ref)``: the recipe that
  builds ``ref`` (its tag, or its tag with a ``-suffix``), which deploy and hatch build
  when the engine lacks it and no registry gives it.
- ``resolved_names(inv)``: ``inv`` with the names its fleet uses on its engines (per
  fleet, recorded at its first deploy, or kept from before names were per fleet);
  ``old_names_kept(inv)``, ``describe_names(inv)``; ``forget_names()`` (tests).
- ``engine(docker_host)``: the cached client for an engine address;
  ``forget_connections()`` closes every cached engine and SSH connection.
- ``through_elections(request)``: a session's ``request`` that sends a call again while
  the swarm answers it has no leader (every engine client is made so; pure, tests feed it).
- ``agent_container(inv, agent)``: the name of an agent's container.
- ``state_of(name, attrs, host=...)``: an agent's ``AgentState`` from its container's
  ``docker inspect`` attributes (pure; tests feed it captured data).
- ``container_usage(before, after)``: (memory kB, CPU share) from two one-shot
  container stats (pure; tests feed it captured stats).
- ``base_image(inv, client, agent)``: what the agent's base image has (python3,
  package manager, ENTRYPOINT/CMD, USER), probed once per image id; a ``BaseImage``
  (what to install, which main process, as which user). ``inspect_base_image(client,
  ref, cache_dir)`` probes any image; ``forget_base_images()`` drops the in-memory cache;
  ``checked_base_user(ref, user)``: an image's USER when it is a user name or id, else UsageError.
- ``agent_context(inv, agent, base)``: an agent image's build context, in memory.
- ``shown_env(env)``: a container environment as --diff shows it (values of the
  operator's variables as digests).
- ``broker_ports(inv)``: what the broker container publishes, where (plain on
  loopback unless ``broker.allow_plain``; TLS on ``broker.bind``).
- ``parse_ssh_url(url)``: ``ssh://user@host:port`` -> (user, host, port), or UsageError.
- ``FLEET``: the label that scopes every object of one fleet.
- ``DECISIONS``: plan name -> (facts type, wanted type, pure decide), for the
  fixture tests (tests/plans/docker/).

Each name is imported on first use (PEP 562): the job modules pull in the
Docker SDK and fabric (~0.5 s), and ``invoke --list`` touches this package
only for ``images.*``'s help text.
"""

from importlib import import_module

# engine.py imports the SDK only inside its functions, so it is cheap to load
# now; and it must be: the function ``engine`` shares the submodule's name,
# and importing the submodule later would rebind ``engine`` to the module.
from hatchery.runtime.docker.engine import FLEET, engine, forget_engines, through_elections

# public name -> (job module, its name there)
_HOMES = {"agent_container": ("states", "agent_container"), "broker_ports": ("broker", "broker_ports"),
          "DEFAULT_IMAGES": ("bootstrap", "DEFAULT_IMAGES"), "RECIPES": ("bootstrap", "RECIPES"),
          "bootstrap_images": ("bootstrap", "bootstrap_images"), "recipe_for": ("bootstrap", "recipe_for"),
          "resolved_names": ("names", "resolved"), "old_names_kept": ("names", "old_style"),
          "describe_names": ("names", "describe"), "forget_names": ("names", "forget"),
          "BaseImage": ("baseimage", "BaseImage"), "forget_base_images": ("baseimage", "forget"),
          "inspect_base_image": ("baseimage", "inspect"),
          "checked_base_user": ("baseimage", "checked_user"),
          "BuildContext": ("build", "BuildContext"), "agent_context": ("build", "agent_context"),
          "base_image": ("build", "base_image"), "shown_env": ("containers", "shown_env"),
          "parse_ssh_url": ("remote", "parse_ssh_url"), "DockerRuntime": ("runtime", "DockerRuntime"),
          "state_of": ("states", "state_of"), "DECISIONS": ("decide", "DECISIONS"),
          "container_usage": ("usage", "container_usage")}


def __getattr__(name: str):
    if name in _HOMES:
        module, attr = _HOMES[name]
        return getattr(import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def forget_connections() -> None:
    """Close and drop every cached engine client and SSH connection (tests; after a host change)."""
    from hatchery.runtime.docker.remote import forget_connections as forget_ssh
    forget_ssh()
    forget_engines()


__all__ = ["broker_ports", "DECISIONS", "DEFAULT_IMAGES", "FLEET", "RECIPES", "BaseImage", "BuildContext", "DockerRuntime",
           "agent_container", "agent_context", "base_image", "bootstrap_images", "checked_base_user", "engine",
           "forget_base_images", "forget_connections", "inspect_base_image", "parse_ssh_url",
           "shown_env", "state_of", "container_usage", "recipe_for", "resolved_names", "old_names_kept",
           "describe_names", "forget_names", "through_elections"]
