"""What an agent's base image brings, read before its Dockerfile is rendered.

Two sources, both from the engine: the image config (ENTRYPOINT, CMD, WORKDIR,
USER) and one throw-away container of the image running a short POSIX-sh probe
(is there a python3 >= 3.9? mosquitto_pub? which package manager?). The answer
depends only on the image's content, so it is kept per image id: in memory for
this process and as a small JSON file in the state directory for the next run.

From that, ``needs(...)`` decides what the agent Dockerfile installs (a minimal
python3, mosquitto-clients) with which package manager, and ``main_argv`` which
command is the agent's own main process. A base that lacks something and has no
known package manager is refused here, before any build, naming the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Optional

from hatchery.errors import UsageError
from hatchery.runtime.docker.engine import docker_errors

MIN_PYTHON = (3, 9)
PROBE_TIMEOUT = 30      # seconds for the throw-away container

# The probe prints key=value lines; it must run on any POSIX sh (dash, busybox ash).
PROBE = """\
v=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) && echo "python=$v"
for pm in apt-get apk dnf microdnf; do
  if command -v "$pm" >/dev/null 2>&1; then echo "package_manager=$pm"; break; fi
done
command -v mosquitto_pub >/dev/null 2>&1 && echo "mosquitto_clients=yes"
command -v setpriv >/dev/null 2>&1 && echo "setpriv=yes"
exit 0
"""
_PROBE_LINE = re.compile(r"(python|package_manager|mosquitto_clients|setpriv)=([A-Za-z0-9.-]{1,32})")

# What "a minimal python3" and "the bus toolkit" are called by each package manager.
# apt: python3-minimal alone lacks json, queue, uuid and hmac, which agent_kit needs;
# libpython3-stdlib adds them (python3 without its docs and tools).
PACKAGES = {
    "apt-get": {"python": ("python3-minimal", "libpython3-stdlib"), "mosquitto": ("mosquitto-clients",)},
    "apk": {"python": ("python3",), "mosquitto": ("mosquitto-clients",)},
    "dnf": {"python": ("python3",), "mosquitto": ("mosquitto",)},
    "microdnf": {"python": ("python3",), "mosquitto": ("mosquitto",)},
}
# A base whose only command is one of these starts an interactive prompt, not a
# service (debian's CMD is bash, python's is python3): without a terminal it
# exits at once, so it is not kept as a main process.
PROMPTS = {"sh", "bash", "dash", "ash", "zsh", "python", "python3", "node", "irb", "jshell"}
ROOT_USERS = ("", "root", "0", "0:0", "root:root")

_cache: dict = {}       # image id -> BaseImage


@dataclass(frozen=True)
class BaseImage:
    """One base image, as far as hatching an agent on it is concerned."""

    ref: str                            # as the inventory names it
    image_id: str
    python: Optional[str] = None        # "3.11"; None: no python3
    package_manager: Optional[str] = None
    mosquitto_clients: bool = False
    setpriv: bool = False
    entrypoint: tuple = ()
    cmd: tuple = ()
    workdir: str = ""
    user: str = ""

    @property
    def has_python(self) -> bool:
        return self.python is not None and _version(self.python) >= MIN_PYTHON

    @property
    def runs_as_root(self) -> bool:
        return self.user in ROOT_USERS

    @property
    def image_command(self) -> tuple:
        """ENTRYPOINT + CMD, as Docker would start the image; () for an interactive prompt."""
        argv = self.entrypoint + self.cmd
        if len(argv) == 1 and Path(argv[0]).name in PROMPTS:
            return ()
        return argv

    # The decisions, as methods too: the package's face exports only this class.
    PROBE: ClassVar[str] = PROBE

    @classmethod
    def from_probe(cls, ref: str, image_id: str, config: dict, probe_output: str) -> "BaseImage":
        return from_config(ref, image_id, config, probe_output)

    def needs(self) -> "Needs":
        return needs(self)

    def main_user(self, main_command) -> str:
        return main_user(self, main_command)

    def describe(self, main_command) -> str:
        return describe(self, main_command)

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BaseImage":
        data = json.loads(text)
        return cls(**{**data, "entrypoint": tuple(data["entrypoint"]), "cmd": tuple(data["cmd"])})


def _version(text: str) -> tuple:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return (0,)


def parse_probe(output: str) -> dict:
    """The probe's key=value lines as BaseImage fields; anything else is ignored."""
    found = {}
    for line in output.splitlines():
        match = _PROBE_LINE.fullmatch(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return {"python": found.get("python"),
            "package_manager": found.get("package_manager") if found.get("package_manager") in PACKAGES else None,
            "mosquitto_clients": found.get("mosquitto_clients") == "yes",
            "setpriv": found.get("setpriv") == "yes"}


# Docker's USER: a name or a numeric id, optionally ':' and a group (name or id).
# The image's config is input too: a USER with a newline once became RUN lines in
# the agent's Dockerfile.
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")


def checked_user(ref: str, user: str) -> str:
    """The image's USER, when it is one (full match); UsageError naming the image otherwise."""
    if user and not _USER_RE.fullmatch(user):
        raise UsageError(f"base image {ref} declares USER {user[:60]!r}, which is not a user name "
                         "or id (letters, digits, '_', '.', '-'; ':' before a group)",
                         "rebuild the base image with a plain USER, or use another base image")
    return user


def from_config(ref: str, image_id: str, config: dict, probe_output: str) -> BaseImage:
    """A BaseImage from ``docker image inspect``'s Config and the probe's output."""
    return BaseImage(ref=ref, image_id=image_id, entrypoint=tuple(config.get("Entrypoint") or ()),
                     cmd=tuple(config.get("Cmd") or ()), workdir=config.get("WorkingDir") or "",
                     user=checked_user(ref, config.get("User") or ""), **parse_probe(probe_output))


# --- reading it from the engine -------------------------------------------------------------

def inspect(client, ref: str, cache_dir: Optional[Path] = None) -> BaseImage:
    """``ref``'s BaseImage, probed once per image id (memory, then ``cache_dir``)."""
    image = _image(client, ref)
    if image.id in _cache:
        return _with_ref(_cache[image.id], ref)
    cached = _read_cache(cache_dir, image.id)
    if cached is None:
        config = image.attrs.get("Config") or {}
        checked_user(ref, config.get("User") or "")         # before any container of it runs
        cached = from_config(ref, image.id, config, _probe(client, ref, image.id))
        _write_cache(cache_dir, cached)
    _cache[image.id] = cached
    return _with_ref(cached, ref)


def _with_ref(base: BaseImage, ref: str) -> BaseImage:
    from dataclasses import replace
    return base if base.ref == ref else replace(base, ref=ref)


def _image(client, ref: str):
    """The image, pulled when the engine lacks it (as docker build would); UsageError if it cannot."""
    import docker.errors
    with docker_errors(f"inspect base image {ref}"):
        try:
            return client.images.get(ref)
        except docker.errors.ImageNotFound:
            pass
        try:
            return client.images.pull(ref)
        except docker.errors.APIError as exc:
            raise UsageError(f"base image {ref} is not on the Docker engine and could not be "
                             f"pulled ({getattr(exc, 'explanation', None) or exc})",
                             "load it there first (docker load, docker save | ssh HOST docker load), "
                             "or build the offline ones with: invoke images.bootstrap") from None


def _probe(client, ref: str, image_id: str) -> str:
    """Run PROBE in a throw-away container of the image: no network, as root, removed after."""
    import docker.errors
    container = None
    with docker_errors(f"probe base image {ref}"):
        try:
            container = client.containers.create(
                image_id, entrypoint=["/bin/sh", "-c", PROBE], command=[], user="0",
                network_disabled=True, labels={"io.hatchery.role": "probe"})
            container.start()
            status = container.wait(timeout=PROBE_TIMEOUT)
            output = container.logs(stdout=True, stderr=False).decode(errors="replace")
        except docker.errors.APIError as exc:
            if "/bin/sh" in str(exc) or "no such file" in str(exc).lower():
                raise _no_shell(ref) from None
            raise
        finally:
            if container is not None:
                container.remove(force=True)
    if status.get("StatusCode") == 127:
        raise _no_shell(ref)
    return output


def _no_shell(ref: str) -> UsageError:
    return UsageError(f"base image {ref} has no /bin/sh; the agent's supervisor and bus tools need "
                      "a POSIX shell", "use a base image with a shell (debian, ubuntu, alpine, a "
                      "*-slim variant), or build one FROM it that adds busybox")


def _cache_file(cache_dir: Optional[Path], image_id: str) -> Optional[Path]:
    if cache_dir is None:
        return None
    return Path(cache_dir) / f"{image_id.split(':')[-1]}.json"


def _read_cache(cache_dir: Optional[Path], image_id: str) -> Optional[BaseImage]:
    path = _cache_file(cache_dir, image_id)
    try:
        return BaseImage.from_json(path.read_text()) if path else None
    except (OSError, ValueError, TypeError, KeyError):
        return None     # missing or from an older layout: probe again


def _write_cache(cache_dir: Optional[Path], base: BaseImage) -> None:
    path = _cache_file(cache_dir, base.image_id)
    if path is None:
        return
    from hatchery.core.state import ensure_dir
    ensure_dir(path.parent)
    path.write_text(base.as_json())


def forget() -> None:
    """Drop the in-memory cache (tests)."""
    _cache.clear()


# --- what the agent image needs on top ----------------------------------------------------------

@dataclass(frozen=True)
class Needs:
    """What the agent Dockerfile adds to a base, and with which package manager."""

    package_manager: Optional[str]
    packages: tuple
    why: tuple              # "python3 missing", ...


def needs(base: BaseImage) -> Needs:
    """What to install on ``base``; UsageError when something is missing and cannot be installed."""
    wanted, why = [], []
    if not base.has_python:
        why.append(f"python3 {'missing' if base.python is None else base.python + ' is older than 3.9'}")
        wanted.append("python")
    if not base.mosquitto_clients:
        why.append("mosquitto_pub missing")
        wanted.append("mosquitto")
    if not wanted:
        return Needs(None, (), ())
    if base.package_manager is None:
        raise UsageError(
            f"base image {base.ref} lacks {' and '.join(why)} and has none of the package managers "
            f"hatch knows ({', '.join(PACKAGES)})",
            f"use a Debian, Ubuntu, Alpine or Fedora-family base, or build an image FROM {base.ref} "
            "that adds python3 (>= 3.9) and mosquitto-clients, and set it as the agent's image")
    table = PACKAGES[base.package_manager]
    return Needs(base.package_manager, tuple(p for key in wanted for p in table[key]), tuple(why))


def main_user(base: BaseImage, main_command) -> str:
    """The user the main process runs as ('' = root); UsageError when it cannot be dropped to."""
    if base.runs_as_root or not (main_command or base.image_command):
        return ""
    if not base.setpriv:
        raise UsageError(f"base image {base.ref} runs as user {base.user!r} but has no setpriv to "
                         "start its main process as that user under hatch's supervisor",
                         "install util-linux in the base image, or set main_command in the inventory")
    return base.user


def describe(base: BaseImage, main_command) -> str:
    """A few words for the plan: what the build adds, what runs beside the handler."""
    import shlex
    added = needs(base).packages
    adds = f"adds {' '.join(added)}" if added else "adds only agent_kit"
    if main_command:
        main = "main: main_command"
    elif base.image_command:
        user = main_user(base, main_command)
        main = f"main: {shlex.join(base.image_command)[:60]}" + (f" as {user}" if user else "")
    else:
        main = "no main process (handler only)"
    return f"{adds}; {main}"
