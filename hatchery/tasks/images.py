"""invoke images.*: build the base images from Debian packages, for hosts with no registry."""

from __future__ import annotations

from invoke import Collection

from hatchery.runtime.docker import DEFAULT_IMAGES, RECIPES, bootstrap_images, engine
from hatchery.tasks import output
from hatchery.tasks.common import choices, load, op, run_plan


@op(which=f"comma-separated images to build (default: {','.join(DEFAULT_IMAGES)}; "
          f"known: {','.join(RECIPES)})",
    docker_host="the engine to build on (default: the broker's docker_host, else local)")
def bootstrap(c, which=None, docker_host=None, inventory=None, check=False, json=False):
    """Build hatchery's base images with mmdebstrap + docker import (no registry needed)."""
    host = docker_host
    if host is None and inventory:
        host = load(inventory).broker.docker_host
    keys = choices(which, tuple(RECIPES), "--which") or list(DEFAULT_IMAGES)
    changes = bootstrap_images(engine(host), which=keys, progress=output.notice)
    run_plan("images.bootstrap", changes, check=check, json=json)


images = Collection("images", bootstrap)
