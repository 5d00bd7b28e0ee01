"""Round 3: the dashboard's log panel (``/logs``) against an agent that controls its own output.

A local agent's program writes its handler's log, so a compromised agent
decides what that file holds. The real dashboard server runs in this
process; the viewer is a raw HTTP client with a short timeout. Fails if one
agent's log can hold a request (and the memory behind it) for more than a
few seconds, or if the panel serves a file the log was pointed at.
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest

from hatchery.core.paths import state_paths
from hatchery.core.ports import free_port
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.observe import dashboard, dashroutes
from hatchery.observe.live import FleetModel


def _inventory(tmp_path: Path) -> Inventory:
    return Inventory(tmp_path / "fleet_inventory.yaml", manager="mgr", state_dir=tmp_path / "state",
                     agents={n: AgentSpec(n, heartbeat_interval=10) for n in ("alpha", "beta")})


@pytest.fixture
def served(tmp_path):
    inv = _inventory(tmp_path)
    port, stop, ready = free_port(), threading.Event(), threading.Event()
    thread = threading.Thread(target=dashboard.serve, args=(FleetModel(inv),),
                              kwargs={"port": port, "stop": stop, "on_ready": lambda a: ready.set()},
                              daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        yield inv, port
    finally:
        stop.set()
        thread.join(5)


def _get(port: int, path: str, timeout: float) -> tuple:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _log(inv: Inventory, name: str) -> Path:
    path = Path(state_paths(inv).agent_log(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_a_log_line_without_end_cannot_hold_the_panel(served):
    """32 MiB with no newline after a few real lines: before the fix the backward
    read re-read a growing tail until it found 101 newlines (all of it, quadratically):
    11 s for 16 MiB, about a minute here."""
    inv, port = served
    with _log(inv, "alpha").open("wb") as log:
        log.write(b"started\n" * 3)
        block = b"z" * (1 << 20)
        for _ in range(32):
            log.write(block)
    started = time.monotonic()
    status, body = _get(port, "/logs?agent=alpha", timeout=10)
    took = time.monotonic() - started
    assert status == 200 and len(body) <= dashroutes.MAX_LOG_BYTES
    assert took < 3.0, f"one agent's log held the request for {took:.1f}s"


def test_a_log_pointed_at_another_file_is_not_served(served, tmp_path):
    """The log replaced by a link to a secret (the manager's password file, another
    agent's log): the panel shows neither."""
    inv, port = served
    secret = tmp_path / "state" / "secrets" / "mgr.password"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("s3cret-of-the-manager\n")
    beta = _log(inv, "beta")
    beta.write_text("beta's own line\n")
    for target in (secret, beta):
        log = _log(inv, "alpha")
        log.unlink(missing_ok=True)
        log.symlink_to(target)
        status, body = _get(port, "/logs?agent=alpha", timeout=5)
        assert b"s3cret" not in body and b"beta's own" not in body, (status, body)


# every script the page loads (the server serves nothing else), so a sink in any is found
PAGE_SCRIPTS = sorted(path for path in dashboard.STATIC if path.endswith(".js"))
HTML_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
              "new Function", "setTimeout(\"", "srcdoc")


def test_what_agents_say_reaches_the_page_as_text_only(served):
    """Versions (printable text an agent chooses), alert codes and log lines reach the page:
    it writes them with textContent only, and every answer carries the CSP that forbids
    inline script, so markup an agent sends stays text."""
    inv, port = served
    assert "/app.js" in PAGE_SCRIPTS and len(PAGE_SCRIPTS) == len(list(Path(dashboard.PAGE_DIR).glob("*.js")))
    for path in PAGE_SCRIPTS:
        script = (Path(dashboard.PAGE_DIR) / dashboard.STATIC[path][0]).read_text()
        assert not [sink for sink in HTML_SINKS if sink in script], path
    _log(inv, "alpha").write_text("<script>alert(1)</script>\n")
    for path in ("/", *PAGE_SCRIPTS, "/history", "/logs?agent=alpha"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            policy = response.getheader("Content-Security-Policy") or ""
        finally:
            connection.close()
        assert response.status == 200, path
        assert "script-src 'self'" in policy and "unsafe" not in policy, (path, policy)
        assert response.getheader("X-Content-Type-Options") == "nosniff", path
