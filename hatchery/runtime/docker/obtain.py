"""Getting an image onto an engine that lacks it: copied, pulled, or built offline.

In this order: the local engine's copy (``docker save | load``, for a remote
host); a pull, given up when the registry says nothing for ``PULL_STALL``
seconds (a blackholed registry must not hang a deploy for minutes); then, for
an image hatchery has a recipe for (``hatchery/mosquitto:2.0.11``,
``hatchery/agent-base:bookworm``, or either with a ``-suffix``), hatchery's
own offline build (``bootstrap``: mmdebstrap + docker import). A registry
that answers wins; the detail line says which happened.

The build runs once per engine: a lock per engine and image (``building``),
shared by every fleet of this user on this machine, and a second look after
taking it, so two hatches at once build once and the second finds the image.
Agent images are built under the same lock. What is happening
is logged on the ``hatchery`` logger (the task layer shows it as progress).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Optional

from hatchery.core.state import held, user_lock_dir
from hatchery.errors import DockerError
from hatchery.runtime.docker.bootstrap import BUILD_TIMEOUT, build_image, recipe_for
from hatchery.runtime.docker.engine import copy_image, docker_errors, image_id, local_or

PULL_STALL = 15.0       # seconds without a word from the registry before a pull is given up
_DONE = object()
log = logging.getLogger(__name__)


def obtain_image(client, ref: str) -> str:
    """Make sure the engine of ``client`` has ``ref``: '' when it had it, else what was done."""
    if image_id(client, ref):
        return ""
    source = local_or(client, ref)
    if source is not client:
        return copy_image(source, client, ref)
    with building(client, ref):
        if image_id(client, ref):
            return f"{ref} found (another run made it meanwhile)"
        return _pull_or_build(client, ref)


def building(client, ref: str):
    """Held while ``ref`` is made on this engine (pulled, imported or built): a second run
    waits, then finds it. Two builds of one tag at once would each leave an image, and the
    one that lost the tag would keep running untagged under the other fleet."""
    return held(_lock(client, ref), BUILD_TIMEOUT + 60, f"another run has been making {ref} for too long")


def _pull_or_build(client, ref: str) -> str:
    recipe = recipe_for(ref)
    log.info(f"{ref}: not on the Docker engine; asking the registry")
    started = time.monotonic()
    why = pull(client, ref)
    if why is None:
        return f"pulled {ref} in {time.monotonic() - started:.1f}s"
    if recipe is None:
        raise DockerError(f"image {ref} is not on the Docker engine and the registry did not give it ({why})",
                          "load it there (docker load, or docker save | ssh HOST docker load), or use an "
                          "image hatchery builds offline: hatchery/agent-base:bookworm for agents, "
                          "hatchery/mosquitto:2.0.11 for the broker")
    log.info(f"{ref}: no registry gave it ({why}); building hatchery's offline image "
             "(mmdebstrap + docker import, about a minute, once per engine)")
    started = time.monotonic()
    build_image(client, recipe, progress=log.info)
    if not image_id(client, ref):
        raise DockerError(f"built {ref} offline, but the engine does not list it", "docker image ls; run again")
    return f"{ref} built offline in {time.monotonic() - started:.1f}s (no registry gave it)"


def pull(client, ref: str, stall: float = PULL_STALL) -> Optional[str]:
    """Pull ``ref``; None when the engine has it after, else why not in a few words.

    The pull runs on a thread and is given up when no progress line came for ``stall``
    seconds (docker-py's pull has no timeout of its own); the engine may finish it later."""
    from docker.utils import parse_repository_tag
    repository, tag = parse_repository_tag(ref)
    lines: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_pull_into, args=(client, repository, tag or "latest", lines),
                     name=f"pull {ref}", daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=stall)
        except queue.Empty:
            return f"no answer from the registry in {stall:g}s"
        if line is _DONE:
            return None if image_id(client, ref) else "the pull ended without the image"
        if isinstance(line, DockerError):
            return _short(line.message)
        if isinstance(line, dict) and line.get("error"):
            return _short(str(line["error"]))


def _pull_into(client, repository: str, tag: str, lines: queue.SimpleQueue) -> None:
    try:
        with docker_errors(f"pull {repository}:{tag}"):
            for line in client.api.pull(repository, tag=tag, stream=True, decode=True):
                lines.put(line)
    except DockerError as exc:   # handed to the waiting caller, who says why
        lines.put(exc)
        return
    lines.put(_DONE)


def _short(text: str, limit: int = 120) -> str:
    """The registry's answer in a few words: the engine's prefix, the URL it tried and the
    resolver's address left out (``dial tcp: lookup registry-1.docker.io: no such host``)."""
    text = " ".join(text.split())
    marker = "the Docker engine refused: "
    if marker in text:
        text = text.split(marker, 1)[1]
    text = re.sub(r'^Get "[^"]*": ', "", text)
    text = re.sub(r" on \S+:\d+:", ":", text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _lock(client, ref: str) -> Path:
    """One lock file per engine (its ID, whatever address reaches it) and image."""
    with docker_errors("ask the Docker engine for its ID"):
        engine_id = client.info().get("ID", "")
    digest = hashlib.sha256(f"{engine_id}\0{ref}".encode()).hexdigest()[:16]
    return user_lock_dir() / f"image-{digest}.lock"
