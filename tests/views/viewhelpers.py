"""Helpers for the view tests: real agent processes, an inventory file, a headless Chromium,
the dashboard served in this process or by the CLI.

No conftest.py here on purpose (see tests/agent_kit/akhelpers.py): test modules
import these by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import wait_for  # noqa: F401  (the test modules import it from here)
from agent_kit import contract
from hatchery.core.ports import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import benchkit  # noqa: E402  (pages are tested in the Chromium they are measured in)
from benchkit import stop_all as stop_processes  # noqa: E402,F401  (the test modules import it)

# The docs' pictures are refreshed by a run with HATCHERY_DOCS_IMG=1; other runs
# write them to a throw-away directory, so a test run never dirties the checkout.
IMG = (ROOT / "docs" / "img" if os.environ.get("HATCHERY_DOCS_IMG")
       else Path(tempfile.gettempdir()) / f"hatchery-docs-img-{os.getpid()}")
HATCHERY = Path(sys.executable).with_name("hatchery")


def unique(prefix: str = "v") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def write_inventory(path: Path, broker, names, *, manager: str, groups=None,
                    interval: float = 600) -> Path:
    """A real inventory file for the CLI: anonymous Phase 1 broker, local agents."""
    lines = ["fleet:", f"  manager: {manager}", f"  state_dir: {path.parent / 'state'}",
             "broker:", "  runtime: local", f"  host: {broker.host}", f"  port: {broker.port}",
             "  auth: false", "agents:"]
    for name in names:
        lines += [f"  {name}:", f"    heartbeat_interval: {interval}"]
    if groups:
        lines.append("groups:")
        for group, members in groups.items():
            lines += [f"  {group}:", f"    agents: [{', '.join(members)}]"]
    path.write_text("\n".join(lines) + "\n")
    return path


class Agents:
    """Real agent_kit handlers as subprocesses (so SIGKILL is a real kill)."""

    def __init__(self, broker, manager: str, workdir: Path):
        self.broker, self.manager, self.workdir = broker, manager, workdir
        self.procs: dict = {}

    def start(self, name: str, *, interval: float = 600, version: str = "1.4.2",
              instance: str | None = None, log: Path | None = None, keepalive: int = 2):
        """``instance``: the runtime's token for this start; ``log``: where its stderr
        goes (the path the local runtime's agent_logs reads), else nowhere."""
        config = self.workdir / f"{name}.json"
        config.write_text(json.dumps({
            "name": name, "manager": self.manager, "heartbeat_interval": interval,
            "version_command": f"echo {version}",
            "broker": {"host": self.broker.host, "port": self.broker.port}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HATCHERY_")}
        env.update(HATCHERY_AGENT_CONFIG=str(config), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        if instance:
            env["HATCHERY_AGENT_INSTANCE"] = instance
        stderr = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            stderr = log.open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "agent_kit.handler", "--keepalive", str(keepalive)], env=env,
            stdout=subprocess.DEVNULL, stderr=stderr, cwd="/")
        if log is not None:
            stderr.close()
        return self.procs[name]

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)


def raw_client(broker) -> mqtt.Client:
    """A plain paho client: what a compromised agent would use."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload, retain: bool = False) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    client.publish(topic, data, 1, retain).wait_for_publish(5)


def clear_retained(broker, names) -> None:
    client = raw_client(broker)
    for name in names:
        for kind in ("status", "heartbeat"):
            publish(client, contract.topic(name, kind), b"", retain=True)
    client.disconnect()
    client.loop_stop()


def need(binary: str, package: str) -> str:
    """The path of ``binary``; a missing one fails the test, saying which package brings it."""
    try:
        return benchkit.installed(binary, package)
    except RuntimeError as missing:
        pytest.fail(str(missing))


def chromium():
    """The benchmarks' headless Chromium; a missing package fails the test, saying which."""
    return benchkit.chromium(need("chromium", "chromium"), need("chromedriver", "chromium-driver"))


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a module's tests."""
    driver = chromium()
    yield driver
    driver.quit()


@contextlib.contextmanager
def dashboard_cli(inventory: Path, timeout: float = 15):
    """``hatchery fleet.dashboard`` as its own process on a free port; yields its base url."""
    port = free_port()
    proc = subprocess.Popen([str(HATCHERY), "fleet.dashboard", "--inventory", str(inventory),
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until("127.0.0.1", port, timeout=timeout), \
            proc.stderr.read() if proc.poll() is not None else "not listening yet"
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


@contextlib.contextmanager
def serving(model, login=None):
    """The dashboard's server in this process for ``model``; yields its base url."""
    from hatchery.observe import dashboard

    port, stop, ready = free_port(), threading.Event(), threading.Event()
    thread = threading.Thread(target=dashboard.serve, args=(model,),
                              kwargs={"port": port, "login": login, "stop": stop,
                                      "on_ready": lambda a: ready.set()}, daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop.set()
        thread.join(5)


def http_get(url: str, headers=None) -> tuple:
    """(status, headers, body) of a GET, an HTTP error status included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def shown_agents(driver) -> list:
    """The agents' rows in page order (host headers left out)."""
    return js(driver, "return [...document.querySelectorAll('#rows tr[data-agent]')]"
                      ".map(r => r.dataset.agent)")


def canvas_ink(driver, selector: str) -> int:
    """How many pixels of the canvas at ``selector`` are drawn on (not transparent)."""
    return js(driver, "const c = document.querySelector(arguments[0]); if (!c || !c.width) return 0;"
                      "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                      "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;",
              selector)
