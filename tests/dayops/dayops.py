"""Helpers for the day-2 tests: a real local fleet driven through the real CLI,
and real handler processes counted by their command line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import wait_for  # noqa: F401  (the test modules import it from here)
from hatchery.core import process
from hatchery.core.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def write_inventory(directory: Path, port: int, agents, *, auth: bool = True,
                    groups: dict | None = None) -> Path:
    """A local fleet's inventory; ``agents``: names (each answers version ``<name>-1.0``)
    or {name: version_command}; ``groups``: {group: [agent names]}."""
    versions = agents if isinstance(agents, dict) else {name: f"echo {name}-1.0" for name in agents}
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
             "  host: 127.0.0.1", "  bind: 127.0.0.1", f"  port: {port}"]
    lines += [] if auth else ["  auth: false"]
    lines += ["agents:"]
    for name, command in versions.items():
        lines += [f"  # {name} is one of ours", f"  {name}:",
                  f"    version_command: '{command}'", "    heartbeat_interval: 30"]
    if groups:
        lines += ["groups:"]
        for group, members in groups.items():
            lines += [f"  {group}:", f"    agents: [{', '.join(members)}]"]
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def env_for(inventory: Path) -> dict:
    return {**os.environ, "FLEET_INVENTORY": str(inventory), "NO_COLOR": "1"}


def run(*args, inventory: Path, check=None, timeout=120) -> subprocess.CompletedProcess:
    proc = subprocess.run([*INVOKE, *args], capture_output=True, text=True,
                          env=env_for(inventory), timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def start(*args, inventory: Path) -> subprocess.Popen:
    """The CLI in its own process group, as a terminal runs it (Ctrl-C reaches the group)."""
    with ctrl_c_reaches_children():
        return subprocess.Popen([*INVOKE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env_for(inventory), start_new_session=True)


def interrupt(cli: subprocess.Popen, timeout: float = 30) -> tuple:
    """Ctrl-C the CLI's process group and wait for it: (stdout, stderr). One that outlives
    ``timeout`` is killed, so a failing test leaves no CLI behind, and the test fails."""
    os.killpg(cli.pid, signal.SIGINT)
    try:
        return cli.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.communicate()
        raise AssertionError(f"{' '.join(cli.args[3:])} ran on {timeout} s after Ctrl-C") from None


@contextlib.contextmanager
def ctrl_c_reaches_children():
    """Children started inside get SIGINT at its default, as a terminal's foreground job does.

    A test run started in the background of a non-interactive shell (``pytest ... &`` in a
    script) ignores SIGINT, an ignored signal stays ignored across exec, and Python then never
    raises KeyboardInterrupt: every CLI a test Ctrl-Cs would run on until its own end. A
    handled signal is reset to its default by exec, so a handler here for the Popen is enough.
    """
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def bring_up(directory: Path, agents, *, hatch: bool = True, **inventory) -> tuple:
    """(inventory path, state dir, port): a fresh fleet in ``directory`` on a free port through
    the real CLI, broker.deploy then (with ``hatch``) agent.hatch; ``agents``, ``inventory``:
    what write_inventory takes. take_down ends it."""
    port = free_port()
    path = write_inventory(directory, port, agents, **inventory)
    run("broker.deploy", inventory=path, check=0)
    if hatch:
        run("agent.hatch", inventory=path, check=0)
    return path, directory / ".hatchery", port


def take_down(inventory: Path, state_dir: Path) -> dict:
    """agent.stop and broker.stop through the CLI, then kill any handler they left (never leave
    one behind); returns the handlers that were left, {agent name: [pids]}."""
    run("agent.stop", inventory=inventory)
    run("broker.stop", inventory=inventory)
    left = handlers(state_dir)
    process.stop_all([pid for pids in left.values() for pid in pids])
    return left


def handler_config(argv: list) -> str | None:
    """The --config of an ``agent_kit.handler`` command line (read here, not through the runtime)."""
    if "agent_kit.handler" not in argv or "--config" not in argv:
        return None
    at = argv.index("--config") + 1
    return argv[at] if at < len(argv) else None


def handlers(state_dir: Path) -> dict:
    """{agent name: [pids]} of the real handler processes of this state dir, from /proc."""
    prefix = str(state_dir / "agents") + os.sep
    found: dict = {}
    for pid in process.find(lambda argv: (handler_config(argv) or "").startswith(prefix)):
        config = handler_config(process.argv_of(pid))
        if config:                  # None: it ended between the scan and this read
            found.setdefault(Path(config).parent.name, []).append(pid)
    return found


def raw_client(state_dir: Path, port: int, user: str, password: str | None = None):
    """A plain paho client (not our BusClient) logged in as ``user`` with its stored secret."""
    import paho.mqtt.client as mqtt
    secret = password if password is not None else \
        (state_dir / "secrets" / f"{user}.password").read_text().strip()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{user}-test-{os.getpid()}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(user, secret)
    connected = []
    client.on_connect = lambda c, u, f, rc, p: connected.append(rc)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    wait_for(lambda: connected, timeout=5)
    return client, connected


def listen(state_dir: Path, port: int, user: str, topic_filter: str) -> tuple:
    """(messages, client): a raw paho client logged in as ``user`` collecting the JSON payloads
    on ``topic_filter`` into ``messages``; the caller disconnects it."""
    client, connected = raw_client(state_dir, port, user)
    assert connected and not connected[0].is_failure
    got: list = []
    client.on_message = lambda c, u, m: got.append(json.loads(m.payload))
    client.subscribe(topic_filter, qos=1)
    time.sleep(0.3)
    return got, client


def retained_on(state_dir: Path, port: int, topic_filter: str, wait: float = 1.0) -> dict:
    """{topic: payload} of the retained messages a fresh manager subscription receives."""
    client, _ = raw_client(state_dir, port, "zephyr")
    got: dict = {}
    client.on_message = lambda c, u, m: got.__setitem__(m.topic, m.payload) if m.retain else None
    client.subscribe(topic_filter, qos=1)
    time.sleep(wait)
    client.disconnect()
    client.loop_stop()
    return got
