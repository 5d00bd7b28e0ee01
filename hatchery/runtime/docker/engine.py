"""The one boundary to the Docker engine: connecting, and turning its errors into ours.

``docker_errors(action)`` maps ``docker.errors.*`` and ``requests`` errors to
``DockerError`` with a fix, most specific first (like httpx's mapping).
``engine(docker_host)`` returns one cached client per engine address; an
``ssh://user@host`` address goes through the system ssh client.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional

from hatchery.errors import DockerError

if TYPE_CHECKING:
    import docker

# The Docker SDK (with requests, urllib3 and paramiko) costs ~0.3 s to import:
# each function below imports it when called, so a task that never talks to
# an engine (broker.status, fleet.collect, --list) never pays for it.

START_DOCKERD = "is dockerd running? start it with: scripts/start-dockerd.sh (or: dockerd &)"
CLIENT_TIMEOUT = 300        # seconds; an image build streams for longer than the default 60
ELECTION_WAIT = 60.0        # seconds a call waits while a swarm's managers elect a leader
NO_LEADER = b"does not have a leader"
DEADLINE = b"code = DeadlineExceeded"

# Labels every object we create carries; the fleet label scopes lists and clean-ups.
MANAGED = "io.hatchery.managed"
ROLE = "io.hatchery.role"
FLEET = "io.hatchery.fleet"
# Labels on containers and images, read back to compare what runs with what is wanted.
SPEC_HASH = "io.hatchery.spec-hash"         # the ContainerSpec a container was created from
CONFIG_HASH = "io.hatchery.config-hash"     # the config it was started with
AGENT_LABEL = "io.hatchery.agent"           # the agent an image or container belongs to
RECIPE_LABEL = "io.hatchery.recipe-hash"    # the recipe a base image was bootstrapped from
INSTANCE_LABEL = "io.hatchery.instance"     # the instance token an agent container was created with

_clients: dict = {}


@contextmanager
def docker_errors(action: str, unreachable_fix: str = START_DOCKERD) -> Iterator[None]:
    """Raise DockerError (with a fix) for any engine failure while doing ``action``."""
    import docker.errors
    import requests.exceptions
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise DockerError(f"{action}: image not found ({explained(exc)})",
                          "build the offline images with: invoke images.bootstrap, "
                          "or set an image that exists in the inventory") from None
    except docker.errors.BuildError as exc:
        tail = "\n".join(_build_log_tail(exc.build_log))
        raise DockerError(f"{action}: image build failed: {exc.msg}\n{tail}",
                          "read the build output above; render the Dockerfile with "
                          "--render-only to inspect it") from None
    except docker.errors.NotFound as exc:
        raise DockerError(f"{action}: not found ({explained(exc)})",
                          "it was removed meanwhile; run the task again") from None
    except docker.errors.APIError as exc:
        raise DockerError(f"{action}: the Docker engine refused: {explained(exc)}",
                          _api_fix(exc)) from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise DockerError(f"{action}: cannot talk to the Docker engine: {exc}", unreachable_fix) from None


def explained(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _api_fix(exc: docker.errors.APIError) -> str:
    text = explained(exc)
    if "port is already allocated" in text or "address already in use" in text:
        return "another program or container holds that host port; set broker.port to a free one"
    if NO_LEADER.decode() in text or DEADLINE.decode() in text:
        return ("the swarm's managers are electing a leader, or too few of them are up: "
                "run the task again in a minute; invoke swarm.status shows the managers")
    if "Conflict" in text or exc.status_code == 409:
        return "a container with that name exists but is not managed by hatchery; remove or rename it"
    return "see the engine's message above"


def _build_log_tail(log, lines: int = 15) -> list:
    text = [chunk.get("stream", "") or chunk.get("error", "") for chunk in log or ()]
    return "".join(text).splitlines()[-lines:]


def engine(docker_host: Optional[str] = None) -> docker.DockerClient:
    """A client for the engine at ``docker_host`` (None: the local one, as $DOCKER_HOST says)."""
    key = docker_host or ""
    if key not in _clients:
        with docker_errors(f"connect to the Docker engine {docker_host or '(local)'}", _unreachable_fix(docker_host)):
            client = _connect(docker_host)
        client.api.request = through_elections(client.api.request)
        _clients[key] = client
    return _clients[key]


def through_elections(request, wait: float = ELECTION_WAIT, pause: float = 0.5,
                      clock=time.monotonic, sleep=time.sleep):
    """``request`` (a requests.Session's) sent again while the swarm is electing a leader.

    A manager back from a partition makes the others elect again, and an election can
    take longer than one call waits (10 s election ticks, and elections lost to split
    votes). For up to ``wait`` seconds:
    - a call refused with "does not have a leader" is sent again: it was refused before
      anything was done;
    - a read that timed out in the managers' consensus (DeadlineExceeded, after the
      engine's own 20 s) is sent once more. A write is not: it may yet be applied."""
    def patient(method, url, *args, **kwargs):
        deadline, resent_a_timeout = clock() + wait, False
        while True:
            response = request(method, url, *args, **kwargs)
            if response.status_code < 400 or clock() >= deadline:
                return response
            if NO_LEADER in response.content:
                sleep(pause)
            elif DEADLINE in response.content and method.upper() == "GET" and not resent_a_timeout:
                resent_a_timeout = True
            else:
                return response
    return patient


def _unreachable_fix(docker_host: Optional[str]) -> str:
    if docker_host and docker_host.startswith("ssh://"):
        # The SDK passes -p 22 when the address has no port, whatever ~/.ssh/config says.
        return (f"check that this works: ssh <user@host> docker version (for {docker_host}); "
                "put a non-default port in the address: ssh://user@host:2222")
    return START_DOCKERD


def _tolerate_ended_ssh() -> None:
    """docker-py's SSHSocket.close writes to the stdin of its ``ssh`` process; when that
    process has already ended (after an exec, the engine closes the stream) the write
    raises BrokenPipeError out of a finished request (docker/docker-py#3218, open).
    Close it quietly, still ending ssh."""
    from docker.transport import sshconn
    if getattr(sshconn.SSHSocket.close, "hatchery_quiet", False):
        return
    original = sshconn.SSHSocket.close

    def close(self):
        try:
            original(self)
        except (BrokenPipeError, ConnectionResetError):
            self.proc.terminate()
    close.hatchery_quiet = True
    sshconn.SSHSocket.close = close


class _KeptOpen:
    """An ssh process's stdout as one response's file: http.client closes the file of
    each response it has read, and docker-py hands it the pipe itself, so the next
    request on that connection would read from a closed pipe."""

    def __init__(self, stream):
        self._stream = stream

    def close(self) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _reuse_ssh_connections() -> None:
    """One connection pool per client. Shelling out to ssh, docker-py builds a new pool,
    so a new ssh session and a new ``docker system dial-stdio``, for every request
    (docker/docker-py#2966, open): ~1.7 s a call here instead of ~0.01 s. Patched on
    the class before a client exists, so the client's own version probe opens the
    connection the later requests reuse. A pooled connection whose ssh has ended (the
    engine closed the stream) is replaced before it is used."""
    import threading

    from docker.transport import sshconn
    adapter_class = sshconn.SSHHTTPAdapter
    if getattr(adapter_class.get_connection, "hatchery_pooled", False):
        return

    def makefile(self, mode):
        return _KeptOpen(original_makefile(self, mode))
    original_makefile, sshconn.SSHSocket.makefile = sshconn.SSHSocket.makefile, makefile
    original_get, original_close, lock = adapter_class.get_connection, adapter_class.close, threading.Lock()

    def get_connection(self, url, proxies=None):
        if self.ssh_client:                 # paramiko: docker-py keeps its pools already
            return original_get(self, url, proxies)
        with lock:
            pool = getattr(self, "_hatchery_pool", None)
            if pool is None:
                pool = self._hatchery_pool = original_get(self, url, proxies)
                pool._get_conn = _live_only(pool, pool._get_conn)
            return pool

    def close(self):
        pool = getattr(self, "_hatchery_pool", None)
        if pool is not None:
            pool.close()
            self._hatchery_pool = None
        original_close(self)
    get_connection.hatchery_pooled = True
    adapter_class.get_connection, adapter_class.close = get_connection, close


def _live_only(pool, get_conn):
    def get(timeout=None):
        conn = get_conn(timeout)
        proc = getattr(conn.sock, "proc", None)
        if proc is not None and proc.poll() is not None:
            conn.close()
            return pool._new_conn()
        return conn
    return get


def _connect(docker_host: Optional[str]) -> docker.DockerClient:
    import docker
    if docker_host and docker_host.startswith("ssh://"):
        _tolerate_ended_ssh()
        _reuse_ssh_connections()
        # The system ssh client honours ~/.ssh/config, agents and known_hosts.
        return docker.DockerClient(base_url=docker_host, use_ssh_client=True, timeout=CLIENT_TIMEOUT)
    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=CLIENT_TIMEOUT)
    return docker.from_env(timeout=CLIENT_TIMEOUT)


def forget_engines() -> None:
    """Close and drop cached clients (tests; a long-lived process after a host change)."""
    for client in _clients.values():
        client.close()
    _clients.clear()


def find_container(client: docker.DockerClient, name: str):
    """The container called ``name``, or None."""
    import docker.errors
    with docker_errors(f"inspect container {name}"):
        try:
            return client.containers.get(name)
        except docker.errors.NotFound:
            return None


def image_id(client: docker.DockerClient, ref: str) -> Optional[str]:
    """The local image id for ``ref``, or None when it is not on the engine."""
    import docker.errors
    with docker_errors(f"inspect image {ref}"):
        try:
            return client.images.get(ref).id
        except docker.errors.ImageNotFound:
            return None


def ensure_network(client: docker.DockerClient, name: str, labels: dict) -> str:
    """Create the user-defined bridge network ``name`` unless it exists; say what happened."""
    with docker_errors(f"create network {name}"):
        if client.networks.list(names=[name]):
            return f"network {name} exists"
        client.networks.create(name, driver="bridge", labels=labels)
        return f"network {name} created"


def ensure_volume(client: docker.DockerClient, name: str, labels: dict) -> str:
    """Create the named volume unless it exists; say what happened ('' when nothing)."""
    import docker.errors
    with docker_errors(f"create volume {name}"):
        try:
            client.volumes.get(name)
            return ""
        except docker.errors.NotFound:
            client.volumes.create(name, labels=labels)
            return f"volume {name} created"


def ensure_image(client: docker.DockerClient, image: str) -> str:
    """Make sure the engine has ``image`` ('' when it has): copied from the local engine
    (``docker save | docker load``, no registry needed), else pulled."""
    if image_id(client, image):
        return ""
    local = _local_engine()
    if local is not None and local is not client and image_id(local, image):
        return copy_image(local, client, image)
    with docker_errors(f"pull {image} (not on this engine; for offline hosts run: invoke images.bootstrap)"):
        client.images.pull(image)
    return f"pulled {image}"


def _local_engine() -> Optional[docker.DockerClient]:
    try:
        return engine(None)
    except DockerError:
        return None     # no local engine: pull instead


def copy_image(source: docker.DockerClient, target: docker.DockerClient, image: str) -> str:
    """``docker save IMAGE | docker -H target load``, streamed; say how long it took."""
    started = time.monotonic()
    with docker_errors(f"copy {image} to another engine (docker save | load)"):
        # by name, so the archive carries the tag (an id alone loads untagged)
        messages = target.api.load_image(source.api.get_image(image, chunk_size=1 << 20))
        errors = [m["error"] for m in messages or () if isinstance(m, dict) and m.get("error")]
    if errors or not image_id(target, image):
        raise DockerError(f"copy {image}: the target engine did not load it: {'; '.join(errors)}",
                          "check both engines with: docker image ls")
    return f"copied {image} (save | load) in {time.monotonic() - started:.1f}s"


def local_or(client: docker.DockerClient, image: str) -> docker.DockerClient:
    """The local engine when it has ``image`` (a save | load keeps the id), else ``client``."""
    local = _local_engine()
    return local if local is not None and local is not client and image_id(local, image) else client
