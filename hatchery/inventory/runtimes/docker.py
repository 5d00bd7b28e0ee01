"""The Docker runtime's inventory keys: images, engines, the fleet's network and names."""

from __future__ import annotations

import re

from hatchery.inventory.fields import command, docker_host, optional, text, text_that
from hatchery.inventory.runtimes.declaration import RuntimeKeys

_DOCKER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")

# A container, network or volume name as Docker accepts it.
docker_name = text_that(_DOCKER_NAME_RE.fullmatch, "a valid Docker name",
                        "use letters, digits, '_', '.' and '-', starting with a letter or digit")


# What an agent in a container of a built image takes, on one engine or on a swarm
# (runtimes/swarm.py takes these and the names below, and adds its placement).
IMAGE_AGENT_KEYS = {
    "image": text,                          # the agent's base image
    "main_command": optional(command),      # the agent's own main process beside the handler
}
# The names the fleet's network and containers (or services) take on the engines.
CONTAINER_NAMES = {"network": docker_name, "container": docker_name, "container_prefix": docker_name}

DECLARATION = RuntimeKeys(
    name="docker",
    implementation="hatchery.runtime.docker.runtime:DockerRuntime",
    agent_keys={
        **IMAGE_AGENT_KEYS,
        "docker_host": optional(docker_host),   # its engine (default: the broker's)
    },
    broker_keys={
        "image": text, "docker_host": optional(docker_host), "remote_dir": optional(text),
        **CONTAINER_NAMES,
    },
    engine_key="docker_host",
    on_hosts=True,
    host_default=True,
)
