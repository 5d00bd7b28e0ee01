"""Shared fixtures: a real Mosquitto on a free loopback port, per test or module.

No fake broker anywhere: the fixture starts /usr/sbin/mosquitto with its own
config and data directory under pytest's tmp_path, and kills it afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hatchery.core.ports import free_port, wait_until  # noqa: F401  (tests import free_port from here)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    """Poll ``predicate`` until it returns something truthy or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def wait_port(port: int, timeout: float = 5.0) -> None:
    if not wait_until("127.0.0.1", port, timeout=timeout):
        raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Broker:
    host: str
    port: int
    conf: Path
    log: Path
    proc: subprocess.Popen

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.proc = _spawn(self.conf, self.log)
        wait_port(self.port)

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)


def _spawn(conf: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def start_broker(workdir: Path, extra: str = "", port: int | None = None) -> Broker:
    """Start a real Mosquitto on 127.0.0.1:<free port> with persistence in workdir."""
    if not os.path.exists(MOSQUITTO):
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto mosquitto-clients")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "set_tcp_nodelay true\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "max_packet_size 65536\n"
        f"user {user}\n"
        "log_dest stdout\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        + extra)
    log = workdir / "mosquitto.log"
    broker = Broker("127.0.0.1", port, conf, log, _spawn(conf, log))
    wait_port(port)
    return broker


@pytest.fixture(scope="session")
def user_cache_dir(tmp_path_factory) -> Path:
    """The user cache directory of every test (the parsed-inventory cache lives there)."""
    return tmp_path_factory.mktemp("user-cache")


@pytest.fixture(scope="session", autouse=True)
def away_from_the_repository(tmp_path_factory):
    """Every test runs in an empty directory of its own, never in the checkout.

    The checkout may hold the operator's own fleet (scripts/quickstart leaves
    ./fleet_inventory.yaml running with its state in ./.hatchery/). Anything a
    test forgets to point elsewhere -- an Inventory built without a state_dir
    (relative ``.hatchery``), a subprocess without --inventory (the default
    ./fleet_inventory.yaml) -- lands here instead of on that fleet.
    """
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch, user_cache_dir):
    """The developer's own fleet settings must not leak into a test (or its subprocesses),
    and no test writes to the developer's own cache directory."""
    for key in list(os.environ):
        if key.startswith("HATCHERY_") or key in ("FLEET_INVENTORY", "DOCKER_HOST"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(user_cache_dir))


@pytest.fixture
def broker(tmp_path):
    """A fresh Mosquitto for one test."""
    b = start_broker(tmp_path / "broker")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory):
    """One Mosquitto shared by the tests of a module (use unique topics/names)."""
    b = start_broker(tmp_path_factory.mktemp("broker"))
    yield b
    b.stop()
