"""Agent images: the build context (Dockerfile, entrypoint, agent_kit, paho) and the build.

The context is computed in memory first, so its digest names the image tag
before anything is written: an unchanged agent never rebuilds. No registry and
no PyPI: agent_kit and paho-mqtt (pure Python) are copied into the context.
Configs and secrets are never part of it; they are mounted at run time.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hatchery.core.assets import PROJECT_ROOT
from hatchery.core.paths import state_paths
from hatchery.core.render import content_hash, render
from hatchery.core.state import ensure_dir
from hatchery.runtime.docker import baseimage
from hatchery.runtime.docker.baseimage import BaseImage, main_user, needs
from hatchery.runtime.docker.engine import (
    AGENT_LABEL,
    MANAGED,
    ROLE,
    docker_errors,
    engine,
)
from hatchery.runtime.docker.layout import AGENT_CONFIG_DIR  # the config is mounted there at run time

AGENT_LIB = "/opt/hatchery/lib"               # agent_kit and paho-mqtt, on sys.path via a .pth file
AGENT_CONFIG = f"{AGENT_CONFIG_DIR}/agent.json"
HANDLER_PID = "/run/hatchery/handler.pid"
ENTRYPOINT = "/usr/local/lib/hatchery/entrypoint.sh"
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


def render_dockerfile(inv, agent, base) -> str:
    """``base``: the BaseImage (runtime.docker.baseimage) the Dockerfile builds on."""
    extra = needs(base)
    return render("agent.Dockerfile.j2", {
        "name": agent.name, "base_image": agent.image, "lib_dir": AGENT_LIB,
        "entrypoint": ENTRYPOINT, "handler_pid": HANDLER_PID, "agent_label": AGENT_LABEL,
        "wrappers": sorted(WRAPPERS), "package_manager": extra.package_manager,
        "packages": " ".join(extra.packages), "why": "; ".join(extra.why),
        "base_user": "" if base.runs_as_root else base.user}, inventory=inv)


def render_entrypoint(inv, agent, base) -> str:
    return render("agent-entrypoint.sh.j2", {
        "name": agent.name, "config": AGENT_CONFIG, "handler_pid": HANDLER_PID,
        **main_process(agent.main_command, base.image_command),
        "main_user": _quote(main_user(base, agent.main_command))}, inventory=inv)


def main_process(main_command, image_command: tuple) -> dict:
    """The agent's main process for the supervisor: the inventory's ``main_command``
    (a shell string for ``sh -c``, or an argv), else the image's ENTRYPOINT + CMD.

    ``main``: the words to run, each shell-quoted (the image config is input too);
    ``main_source``: where it came from, for the comment and the logs.
    """
    if isinstance(main_command, str) and main_command:
        return {"main": "sh -c " + shlex.quote(main_command), "main_source": "main_command"}
    if main_command:
        return {"main": shlex.join(main_command), "main_source": "main_command"}
    if image_command:
        return {"main": shlex.join(image_command), "main_source": "the image's ENTRYPOINT/CMD"}
    return {"main": "", "main_source": "none"}


def _quote(word: str) -> str:
    return shlex.quote(word) if word else ""


def agent_context(inv, agent, base) -> BuildContext:
    """Everything the agent image is built from on ``base`` (a BaseImage, see
    ``base_image``); nothing is written yet."""
    files = {"Dockerfile": (render_dockerfile(inv, agent, base).encode(), 0o644),
             "entrypoint.sh": (render_entrypoint(inv, agent, base).encode(), 0o755)}
    files.update(_package_files(PROJECT_ROOT / "agent_kit", "lib/agent_kit"))
    files.update(_package_files(_paho_dir(), "lib/paho"))
    for script, target in WRAPPERS.items():
        files[f"bin/{script}"] = (_wrapper(script, target).encode(), 0o755)
    return BuildContext(files)


def base_image(inv, client, agent) -> BaseImage:
    """The agent's base image as probed (python3? package manager? ENTRYPOINT/CMD), cached by id."""
    return baseimage.inspect(client, agent.image, Path(state_paths(inv).base_image_cache))


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


def write_build_files(inv, agents: list) -> list:
    """Write each agent's build context (Dockerfile included) under the state directory
    for review, as ``agent.hatch --render-only`` does; return the Dockerfiles' paths."""
    written = []
    for agent in agents:
        directory = Path(state_paths(inv).build_dir(agent.name))
        ensure_dir(directory.parent)
        client = engine(agent.docker_host or inv.broker.docker_host)   # the agent's engine
        agent_context(inv, agent, base_image(inv, client, agent)).write(directory)
        written.append(directory / "Dockerfile")
    return written
