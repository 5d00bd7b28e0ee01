"""What the docker test modules share: the engine fixture, a fleet named by a random
prefix, its broker deployed, clean-up, MQTT readiness.

A plain module, not a conftest.py: pytest runs in prepend import mode and the
tests import ``tests/conftest.py`` as ``conftest``; a second conftest.py here
would shadow that name. Import the fixture into a test module to use it::

    from dockerhelpers import client  # noqa: F401 (fixture)

MQTT goes through paho in this process, as the manager: the manager's secret
never appears in an argv (``ps``, or a CalledProcessError printed in CI logs).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

from agent_kit import bus
from hatchery.core.plan import apply_plan
from hatchery.inventory.model import DOCKER, AgentSpec, BrokerSpec, Inventory
from hatchery.provision.credentials import plan_auth, user_secret
from hatchery.provision.operations import agent_conf, auth_files, broker_conf, hatch_plan
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import bootstrap_images, engine

remove_fleet = for_runtime(DOCKER).remove_fleet     # the tests' clean-up: remove_fleet(inv)


def hatch_changes(inv: Inventory, agent, auth=None) -> list:
    """The docker runtime's plan for one agent, with its config and credentials: what
    agent.hatch plans per agent, without the broker's auth sync around it."""
    auth = auth or plan_auth(inv)
    return for_runtime(DOCKER).agent_plan(inv, agent, agent_config=agent_conf(inv, agent, auth),
                                          secret_files=auth.agent_files(agent.name))


ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
MOSQUITTO_IMAGE = "hatchery/mosquitto:2.0.11"
TIMINGS: dict = {}      # "bootstrap images (s)", for the modules that print figures


def docker_inventory(root: Path, prefix: str, agents=(), state_dir: Path | None = None) -> Inventory:
    """A fleet on the local engine whose broker container and network are named by ``prefix``
    (which also makes them this run's), on a free port, its state under ``root``."""
    broker = BrokerSpec(runtime=DOCKER, port=free_port(), image=MOSQUITTO_IMAGE,
                        network=f"{prefix}net", container=f"{prefix}broker", container_prefix=prefix)
    return Inventory(path=root / "fleet_inventory.yaml", broker=broker,
                     state_dir=state_dir or root / ".hatchery", agents={a.name: a for a in agents})


def write_for_cli(inv: Inventory, extra: str = "") -> None:
    """``inv`` as YAML at ``inv.path`` for the real CLI: its broker, and each agent's name and
    heartbeat interval (what these fleets set); ``extra``, more top-level sections."""
    b = inv.broker
    inv.path.write_text(
        "fleet:\n  manager: zephyr\n  state_dir: .hatchery\n"
        f"broker:\n  runtime: docker\n  port: {b.port}\n  image: {b.image}\n"
        f"  network: {b.network}\n  container: {b.container}\n"
        f"  container_prefix: {b.container_prefix}\n{extra}agents:\n" +
        "".join(f"  {a.name}:\n    runtime: docker\n    heartbeat_interval: {a.heartbeat_interval:g}\n"
                for a in inv.agents.values()))


def deploy_broker(inv: Inventory):
    """What broker.deploy does: the credentials, then the broker container, then wait until it
    accepts the manager. Returns the credentials' plan (``hatch_changes`` takes it)."""
    auth = plan_auth(inv)
    assert apply_plan("credentials", [auth.change()]).ok
    assert apply_plan("broker.deploy", for_runtime(DOCKER).broker_plan(
        inv, conf_text=broker_conf(inv), auth_files=auth_files(auth))).ok
    wait_mqtt(inv)
    return auth


def hatched_fleet(root: Path, prefix: str, agents, cli_extra: str = ""):
    """Yields the inventory of ``agents`` hatched as containers on a deployed broker, written
    at inv.path for the CLI (``cli_extra``: see write_for_cli); all of the run removed afterwards."""
    inv = docker_inventory(root, prefix, agents)
    write_for_cli(inv, cli_extra)
    try:
        auth = deploy_broker(inv)
        for agent in inv.agents.values():
            assert apply_plan("agent.hatch", hatch_changes(inv, agent, auth)).ok
        yield inv
    finally:
        remove_fleet(inv)


def cli(inv: Inventory, task: str, *flags, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real CLI, ``invoke <task> --inventory <inv.path> <flags>``, without colour."""
    argv = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), task,
            "--inventory", str(inv.path), *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1"})


def one_sleeping_agent(root: Path, prefix: str):
    """Yields (inventory, agent): a deployed broker and one hatched agent container whose
    main command sleeps (version 1.0); everything of the run removed afterwards."""
    (root / "fleet_inventory.yaml").write_text("fleet:\n  manager: zephyr\n")
    agent = AgentSpec(f"{prefix}a", runtime=DOCKER, version_command="echo 1.0", main_command="sleep infinity")
    inv = docker_inventory(root, prefix, [agent])
    try:
        deploy_broker(inv)
        assert apply_plan("hatch", hatch_plan(inv, [agent])).ok
        yield inv, agent
    finally:
        remove_fleet(inv)


@pytest.fixture(scope="module")
def client():
    """The local Docker engine, with the offline base images built (kept across runs)."""
    try:
        c = engine(None)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no engine"
        pytest.fail(f"no Docker engine ({exc}); start one with scripts/start-dockerd.sh")
    started = time.monotonic()
    report = apply_plan("images", bootstrap_images(c))
    assert report.ok, [r.error for r in report.failed]
    TIMINGS["bootstrap images (s)"] = round(time.monotonic() - started, 1)
    return c


# --- MQTT as the manager, on the broker's published port -------------------------------------

def manager_session(inv: Inventory, timeout: float = 5.0):
    """A connected paho client (context manager); BusError, never naming the secret."""
    return bus.session(LOOPBACK, inv.broker.port, timeout, username=inv.manager,
                       password=user_secret(inv, inv.manager))


def wait_mqtt(inv: Inventory, timeout: float = 30.0) -> float:
    """Poll a real MQTT connect with the manager's credentials until the broker accepts it.

    A published port accepts TCP as soon as Docker's proxy listens, before
    Mosquitto inside does (the client then sees "connection lost"), and a
    reload may not have re-read the password file yet: only a CONNACK with
    success shows the broker is ready. Returns the seconds it took.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            with manager_session(inv, timeout=min(2.0, max(deadline - time.monotonic(), 0.1))):
                return time.monotonic() - started
        except bus.BusError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker on port {inv.broker.port} did not accept the "
                                   f"manager within {timeout:g}s: {exc}") from None
        time.sleep(0.1)


def publish(inv: Inventory, topic: str, payload: str, *, retain: bool = False,
            timeout: float = 5.0) -> None:
    """Publish at QoS 1 and wait for the PUBACK; BusError otherwise."""
    with manager_session(inv, timeout) as c:
        bus.publish_and_wait(c, topic, payload.encode(), qos=1, retain=retain, timeout=timeout)


def try_publish(inv: Inventory, topic: str, payload: str) -> bool:
    try:
        publish(inv, topic, payload)
        return True
    except bus.BusError:
        return False


def sub_one(inv: Inventory, topic: str, wait: float = 10) -> str:
    """The first message on ``topic`` as ``"topic payload"`` (like ``mosquitto_sub -v``),
    or "" when none came within ``wait`` seconds."""
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    with manager_session(inv) as c:
        c.on_message = lambda _c, _u, msg: inbox.put(msg)
        c.subscribe(topic, qos=1)
        try:
            msg = inbox.get(timeout=wait)
        except queue.Empty:
            return ""
    return f"{msg.topic} {msg.payload.decode(errors='replace')}"
