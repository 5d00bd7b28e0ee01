"""The local runtime: the native mosquitto and agent handlers as background processes.

Pid files and logs live under the state directory. Each planner compares the
wanted config file with the one on disk and the pid file with the process
table, and returns the Change that would bring them in line.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from .. import process
from ..agentconf import to_json
from ..brokerconf import reload_is_enough
from ..errors import RuntimeFailure
from ..model import AgentSpec, Inventory
from ..plan import Change, text_diff
from ..state import StatePaths, ensure_dir, read_text, write_if_changed

HANDLER_MODULE = "agent_kit.handler"


# --- broker ---------------------------------------------------------------------

def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto",
                     "/opt/homebrew/sbin/mosquitto") if os.path.exists(p)), None)
    if not found:
        raise RuntimeFailure("mosquitto is not installed",
                             "apt-get install -y mosquitto (Debian/Ubuntu) or brew install mosquitto (macOS)")
    return found


def _broker_pid(paths: StatePaths) -> int | None:
    return process.running_pid(paths.broker_pid, str(paths.broker_conf))


def broker_plan(inv: Inventory, *, conf_text: str) -> list:
    paths = StatePaths(inv.state_dir)
    current = read_text(paths.broker_conf)
    diff = text_diff(current, conf_text, str(paths.broker_conf))
    pid = _broker_pid(paths)
    if pid is None:
        reason = "not running" if current == conf_text else "not running; config rendered"
        return [Change("broker", "start", reason, diff, lambda: _start_broker(inv, paths, conf_text))]
    if current == conf_text:
        return [Change("broker", "none", f"running (pid {pid}), config unchanged")]
    if reload_is_enough(current, conf_text):
        return [Change("broker", "reload", "config changed; SIGHUP is enough", diff,
                       lambda: _reload_broker(paths, conf_text, pid))]
    return [Change("broker", "restart", "config changed", diff,
                   lambda: _restart_broker(inv, paths, conf_text, pid))]


def _start_broker(inv: Inventory, paths: StatePaths, conf_text: str) -> str:
    _refuse_busy_port(inv.broker.bind or "127.0.0.1", inv.broker.port)
    ensure_dir(paths.broker_data)
    write_if_changed(paths.broker_conf, conf_text)
    pid = process.spawn([mosquitto_binary(), "-c", str(paths.broker_conf)],
                        log=paths.broker_dir / "mosquitto.stdout", pid_file=paths.broker_pid)
    _wait_listening(inv.broker.host, inv.broker.port, pid, paths)
    return f"pid {pid}, listening on {inv.broker.host}:{inv.broker.port}"


def _reload_broker(paths: StatePaths, conf_text: str, pid: int) -> str:
    write_if_changed(paths.broker_conf, conf_text)
    process.send_signal(pid, signal.SIGHUP)
    return f"SIGHUP sent to pid {pid}"


def _restart_broker(inv: Inventory, paths: StatePaths, conf_text: str, pid: int) -> str:
    process.stop(pid)
    _wait_port_free(inv.broker.host, inv.broker.port)
    return _start_broker(inv, paths, conf_text)


def _refuse_busy_port(host: str, port: int) -> None:
    if _listening(host if host != "0.0.0.0" else "127.0.0.1", port):
        raise RuntimeFailure(f"port {port} on {host} is already in use by another program",
                             "stop that program, or set broker.port in the inventory to a free port")


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait_listening(host: str, port: int, pid: int, paths: StatePaths, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(host, port):
            return
        if process.running_pid(paths.broker_pid, str(paths.broker_conf)) is None:
            break
        time.sleep(0.02)
    tail = process.log_tail(paths.broker_log) + "\n" + process.log_tail(paths.broker_dir / "mosquitto.stdout")
    raise RuntimeFailure(f"mosquitto (pid {pid}) is not listening on {host}:{port}; last log lines:\n{tail}",
                         f"read {paths.broker_log}")


def _wait_port_free(host: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _listening(host, port):
        time.sleep(0.02)


def broker_stop_plan(inv: Inventory) -> list:
    paths = StatePaths(inv.state_dir)
    pid = _broker_pid(paths)
    if pid is None:
        return [Change("broker", "none", "not running")]
    return [Change("broker", "stop", f"running (pid {pid})", apply=lambda: _stop(pid, paths.broker_pid))]


def _stop(pid: int, pid_file: Path) -> str:
    process.stop(pid)
    pid_file.unlink(missing_ok=True)
    return f"pid {pid} stopped"


def broker_status(inv: Inventory) -> dict:
    paths = StatePaths(inv.state_dir)
    pid = _broker_pid(paths)
    return {"runtime": "local", "running": pid is not None, "pid": pid,
            "listening": _listening(inv.broker.host, inv.broker.port),
            "address": f"{inv.broker.host}:{inv.broker.port}",
            "config": str(paths.broker_conf), "log": str(paths.broker_log)}


# --- agents ---------------------------------------------------------------------

def _agent_pid(paths: StatePaths, name: str) -> int | None:
    return process.running_pid(paths.agent_pid(name), str(paths.agent_config(name)))


def agent_plan(inv: Inventory, agent: AgentSpec, *, agent_config: dict, context_dir=None) -> list:
    paths = StatePaths(inv.state_dir)
    wanted = to_json(agent_config)
    current = read_text(paths.agent_config(agent.name))
    diff = text_diff(current, wanted, str(paths.agent_config(agent.name)))
    item = f"agent {agent.name}"
    pid = _agent_pid(paths, agent.name)
    if pid is None:
        return [Change(item, "start", "not running", diff,
                       lambda: _start_agent(paths, agent.name, wanted))]
    if current == wanted:
        return [Change(item, "none", f"running (pid {pid}), config unchanged")]
    return [Change(item, "restart", "config changed", diff,
                   lambda: _restart_agent(paths, agent.name, wanted, pid))]


def _start_agent(paths: StatePaths, name: str, config_text: str) -> str:
    write_if_changed(paths.agent_config(name), config_text)
    argv = [sys.executable, "-m", HANDLER_MODULE, "--config", str(paths.agent_config(name))]
    pid = process.spawn(argv, log=paths.agent_log(name), pid_file=paths.agent_pid(name),
                        env=_handler_env())
    time.sleep(0.05)  # a handler that dies on a bad config dies at once: say so now
    if _agent_pid(paths, name) is None:
        raise RuntimeFailure(f"agent {name}'s handler exited at start; last log lines:\n"
                             + process.log_tail(paths.agent_log(name)), f"read {paths.agent_log(name)}")
    return f"pid {pid}"


def _handler_env() -> dict:
    # The handler imports agent_kit from the same tree as this process.
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _restart_agent(paths: StatePaths, name: str, config_text: str, pid: int) -> str:
    process.stop(pid)
    return _start_agent(paths, name, config_text)


def agent_stop_plan(inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
    """Stop the handler; with ``remove`` (agent.retire) also delete its state."""
    paths = StatePaths(inv.state_dir)
    pid = _agent_pid(paths, agent.name)
    item = f"agent {agent.name}"
    state = paths.agent_dir(agent.name)
    if remove and (pid is not None or state.exists()):
        return [Change(item, "remove", "retiring: handler and state",
                       apply=lambda: _retire(pid, state))]
    if pid is None:
        return [Change(item, "none", "not running")]
    return [Change(item, "stop", f"running (pid {pid})",
                   apply=lambda: _stop(pid, paths.agent_pid(agent.name)))]


def _retire(pid: int | None, state: Path) -> str:
    if pid is not None:
        process.stop(pid)
    shutil.rmtree(state, ignore_errors=True)
    return f"removed {state}"


def agent_list(inv: Inventory) -> list:
    paths = StatePaths(inv.state_dir)
    rows = []
    for agent in inv.agents.values():
        if agent.runtime != "local":
            continue
        pid = _agent_pid(paths, agent.name)
        rows.append({"agent": agent.name, "runtime": "local", "running": pid is not None,
                     "pid": pid, "log": str(paths.agent_log(agent.name))})
    return rows
