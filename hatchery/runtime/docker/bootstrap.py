"""Base images built from Debian packages, with no container registry.

``mmdebstrap --variant=minbase`` writes a root filesystem tarball from the apt
mirror (plain HTTP is enough); ``docker import`` turns it into an image, with
CMD/LABEL set through ``--change``. Each image carries the hash of its recipe
as a label, so a second bootstrap skips what is already built.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from hatchery.core.plan import Action, Change
from hatchery.core.render import content_hash
from hatchery.errors import RuntimeFailure, UsageError
from hatchery.runtime.docker.engine import MANAGED, RECIPE_LABEL, ROLE, docker_errors

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT = 900     # seconds for one mmdebstrap run
# Documentation and translations are a third of a minbase tree and nobody reads them in a container.
SLIM = ("--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
        "--aptopt=Acquire::Languages \"none\"")

# The official eclipse-mosquitto layout, made writable for the 'mosquitto' user.
_MOSQUITTO_DIRS = ('mkdir -p "$1/mosquitto/config" "$1/mosquitto/data" "$1/mosquitto/log"'
                   ' && chroot "$1" chown mosquitto:mosquitto /mosquitto/data /mosquitto/log')

# The node-demo image's main process: it stands in for an agent (an OpenClaw gateway,
# say), logs, idles, and ends cleanly on SIGTERM (exit 0), as a well-behaved service does.
_NODE_AGENT = """mkdir -p "$1/app" && cat > "$1/app/agent.js" <<'EOF'
console.log(`agent.js: pid ${process.pid} up, node ${process.version}`);
const idle = setInterval(() => {}, 3600 * 1000);
process.on('SIGTERM', () => { console.log('agent.js: SIGTERM, exiting 0'); clearInterval(idle); });
EOF"""


@dataclass(frozen=True)
class Recipe:
    key: str
    tag: str
    packages: tuple
    changes: tuple = ()     # Dockerfile instructions applied by docker import
    hooks: tuple = ()       # mmdebstrap --customize-hook shell snippets ($1 = the root)

    def digest(self, suite: str, mirror: str) -> str:
        return content_hash(json.dumps({**asdict(self), "suite": suite, "mirror": mirror},
                                       sort_keys=True))


RECIPES = {r.key: r for r in (
    Recipe("base", "hatchery/base:bookworm", ("ca-certificates",), ('CMD ["/bin/bash"]',)),
    Recipe("broker", "hatchery/mosquitto:2.0.11", ("mosquitto", "mosquitto-clients"),
           ('CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]',
            "EXPOSE 1883"), (_MOSQUITTO_DIRS,)),
    # No mosquitto-clients: the agent Dockerfile installs them only when missing.
    Recipe("agent-base", "hatchery/agent-base:bookworm", ("python3", "ca-certificates", "procps"),
           ('CMD ["python3"]',)),
    Recipe("agent-clients", "hatchery/agent-base:bookworm-clients",
           ("python3", "ca-certificates", "procps", "mosquitto-clients"), ('CMD ["python3"]',)),
    # An agent image as most are (Node.js, no Python), made offline: for the tests and to try hatch.
    Recipe("node-demo", "hatchery/node-demo:bookworm", ("nodejs",),
           ('CMD ["node", "/app/agent.js"]', "WORKDIR /app", "USER nobody"), (_NODE_AGENT,)),
)}
DEFAULT_IMAGES = ("base", "broker", "agent-base")


def bootstrap_images(client, *, which: Iterable[str] = DEFAULT_IMAGES,
                     progress: Optional[Callable[[str], None]] = None,
                     suite: str = SUITE, mirror: str = MIRROR) -> list:
    """One Change per image: build it unless it exists with the same recipe hash."""
    return [_image_change(client, _recipe(key), suite, mirror, progress or (lambda _: None))
            for key in which]


def _recipe(key: str) -> Recipe:
    if key not in RECIPES:
        raise UsageError(f"unknown base image {key!r}", f"use one of: {', '.join(RECIPES)}")
    return RECIPES[key]


def _image_change(client, recipe: Recipe, suite: str, mirror: str, progress) -> Change:
    digest = recipe.digest(suite, mirror)
    item = f"image {recipe.tag}"
    current = _recipe_label(client, recipe.tag)
    if current == digest:
        return Change(item, Action.NONE, f"present (recipe {digest})")
    reason = "missing" if current is None else f"recipe changed ({current} -> {digest})"
    return Change(item, Action.CREATE if current is None else Action.UPDATE, reason,
                  apply=lambda: _build(client, recipe, digest, suite, mirror, progress))


def _recipe_label(client, tag: str) -> Optional[str]:
    import docker.errors
    with docker_errors(f"inspect image {tag}"):
        try:
            return client.images.get(tag).labels.get(RECIPE_LABEL, "")
        except docker.errors.ImageNotFound:
            return None


def _build(client, recipe: Recipe, digest: str, suite: str, mirror: str, progress) -> str:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hatchery-rootfs-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        progress(f"{recipe.tag}: mmdebstrap {suite} + {' '.join(recipe.packages)}")
        _mmdebstrap(recipe, suite, mirror, tarball)
        progress(f"{recipe.tag}: docker import ({tarball.stat().st_size // 2**20} MiB)")
        _import(client, recipe, digest, tarball)
    return f"built in {time.monotonic() - started:.1f}s (recipe {digest})"


def _mmdebstrap(recipe: Recipe, suite: str, mirror: str, out: Path) -> None:
    exe = shutil.which("mmdebstrap")
    if not exe:
        raise RuntimeFailure("mmdebstrap is not installed", "apt-get install -y mmdebstrap")
    argv = [exe, "--variant=minbase", "--quiet", f"--include={','.join(recipe.packages)}", *SLIM,
            *(f"--customize-hook={hook}" for hook in recipe.hooks), suite, str(out), mirror]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"mmdebstrap for {recipe.tag} took over {BUILD_TIMEOUT}s",
                             f"check that {mirror} is reachable and fast") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
        raise RuntimeFailure(f"mmdebstrap for {recipe.tag} failed:\n{tail}",
                             f"check the mirror {mirror} and the package names {recipe.packages}")


def _import(client, recipe: Recipe, digest: str, tarball: Path) -> None:
    repository, _, tag = recipe.tag.rpartition(":")
    labels = [f"LABEL {RECIPE_LABEL}={digest} {MANAGED}=true {ROLE}=base-image"]
    with docker_errors(f"import {recipe.tag}"):
        # A path that exists is uploaded by the client, so this works for a remote engine too.
        client.api.import_image(src=str(tarball), repository=repository, tag=tag,
                                changes=[*recipe.changes, *labels])
