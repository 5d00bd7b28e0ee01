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

from hatchery.core.assets import PROJECT_ROOT
from hatchery.core.plan import Change
from hatchery.core.render import content_hash
from hatchery.errors import RuntimeFailure, UsageError
from hatchery.runtime.docker.engine import MANAGED, ROLE, docker_errors

RECIPE_LABEL = "io.hatchery.recipe-hash"
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
        return Change(item, "none", f"present (recipe {digest})")
    reason = "missing" if current is None else f"recipe changed ({current} -> {digest})"
    return Change(item, "create" if current is None else "update", reason,
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


# --- agent images -------------------------------------------------------------------

AGENT_LIB = "/opt/hatchery/lib"               # agent_kit and paho-mqtt, on sys.path via a .pth file
AGENT_CONFIG_DIR = "/etc/hatchery"            # the agent config is mounted here read-only at run time
AGENT_CONFIG = f"{AGENT_CONFIG_DIR}/agent.json"
HANDLER_PID = "/run/hatchery/handler.pid"
ENTRYPOINT = "/usr/local/lib/hatchery/entrypoint.sh"
AGENT_LABEL = "io.hatchery.agent"
REPO_ROOT = PROJECT_ROOT
# The bus toolkit of the article, as console scripts of agent_kit (see pyproject.toml).
WRAPPERS = {"bus-publish": "agent_kit.cli:publish_main",
            "bus-subscribe": "agent_kit.cli:subscribe_main",
            "bus-command": "agent_kit.cli:command_main",
            "bus-heartbeat": "agent_kit.cli:heartbeat_main",
            "bus-selftest": "agent_kit.selftest:main",
            "bus-command-handler": "agent_kit.handler:main"}


@dataclass(frozen=True)
class BuildContext:
    """The files of an agent's image build, in memory: relative path -> (bytes, mode)."""

    files: dict

    def digest(self, base_image_id: str) -> str:
        parts = [base_image_id]
        for rel in sorted(self.files):
            data, mode = self.files[rel]
            parts += [rel, oct(mode), data]
        return content_hash(*parts)

    def write(self, directory: Path) -> None:
        """Write the files under ``directory``, removing what an older context left."""
        shutil.rmtree(directory, ignore_errors=True)
        for rel, (data, mode) in self.files.items():
            path = directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)


def agent_image_repo(name: str) -> str:
    return f"hatchery/agent-{name}"


def render_dockerfile(inv, agent) -> str:
    from hatchery.core.render import render
    return render("agent.Dockerfile.j2", {
        "name": agent.name, "base_image": agent.image, "lib_dir": AGENT_LIB,
        "entrypoint": ENTRYPOINT, "handler_pid": HANDLER_PID, "agent_label": AGENT_LABEL,
        "wrappers": sorted(WRAPPERS)}, inventory=inv)


def render_entrypoint(inv, agent) -> str:
    from hatchery.core.render import render
    return render("agent-entrypoint.sh.j2", {
        "name": agent.name, "config": AGENT_CONFIG, "handler_pid": HANDLER_PID,
        "main_command": _shell_command(agent.main_command)}, inventory=inv)


def _shell_command(command) -> str:
    """The main command as one quoted word for ``sh -c`` ('' when the agent has none)."""
    import shlex
    if not command:
        return ""
    text = command if isinstance(command, str) else shlex.join(command)
    return shlex.quote(text)


def agent_context(inv, agent) -> BuildContext:
    """Everything the agent image is built from; nothing is written yet."""
    files = {"Dockerfile": (render_dockerfile(inv, agent).encode(), 0o644),
             "entrypoint.sh": (render_entrypoint(inv, agent).encode(), 0o755)}
    files.update(_package_files(REPO_ROOT / "agent_kit", "lib/agent_kit"))
    files.update(_package_files(_paho_dir(), "lib/paho"))
    for script, target in WRAPPERS.items():
        files[f"bin/{script}"] = (_wrapper(script, target).encode(), 0o755)
    return BuildContext(files)


def _paho_dir() -> Path:
    import paho
    return Path(paho.__file__).resolve().parent   # pure Python: copied, installed offline


def _package_files(root: Path, prefix: str) -> dict:
    return {f"{prefix}/{p.relative_to(root).as_posix()}": (p.read_bytes(), 0o644)
            for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")}


def _wrapper(script: str, target: str) -> str:
    module, func = target.split(":")
    return ("#!/bin/sh\n"
            f"# {script}: the agent_kit console script {target} (generated by hatchery).\n"
            f"exec python3 -c 'import sys; sys.argv[0] = \"{script}\"; "
            f"from {module} import {func}; sys.exit({func}())' \"$@\"\n")


def build_agent_image(client, context: BuildContext, directory: Path, tag: str, agent_name: str) -> str:
    """Write the context under ``directory`` and build ``tag`` from it (no registry, no PyPI)."""
    context.write(directory)
    started = time.monotonic()
    with docker_errors(f"build {tag}"):
        client.images.build(path=str(directory), tag=tag, rm=True, forcerm=True, pull=False,
                            labels={MANAGED: "true", ROLE: "agent-image", AGENT_LABEL: agent_name})
    return f"built {tag} in {time.monotonic() - started:.1f}s"
