"""The local broker: the native mosquitto as a background process, its config and auth files."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

from hatchery.core import process
from hatchery.core.paths import StatePaths, state_paths
from hatchery.core.plan import Action, Change, bind, text_diff
from hatchery.core.ports import listening, wait_until
from hatchery.core.state import ensure_dir, read_text, write_if_changed
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import Inventory
from hatchery.runtime.local.decide import BrokerFacts, BrokerWanted, decide_broker

# --- broker ---------------------------------------------------------------------

def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto",
                     "/opt/homebrew/sbin/mosquitto") if os.path.exists(p)), None)
    if not found:
        raise RuntimeFailure("mosquitto is not installed",
                             "apt-get install -y mosquitto (Debian/Ubuntu) or brew install mosquitto (macOS)")
    return found


def broker_pid(paths: StatePaths) -> int | None:
    return process.running_pid(paths.broker_pid, str(paths.broker_conf))


def broker_facts(paths: StatePaths, auth_files: dict) -> BrokerFacts:
    """What runs now: the broker's pid, its config on disk, the auth files that differ."""
    return BrokerFacts(pid=broker_pid(paths), conf=read_text(paths.broker_conf),
                       stale_auth=tuple(stale_auth_files(paths.broker_dir, auth_files)))


def broker_plan(inv: Inventory, *, conf_text: str, auth_files: dict | None = None) -> list:
    """``auth_files``: {file name: text} the broker reads beside its config (passwd, acl).

    Facts first (``broker_facts``), then the pure decision (``decide.decide_broker``),
    then each decision bound to its diff and its apply step.
    """
    paths = state_paths(inv)
    auth_files = auth_files or {}
    facts = broker_facts(paths, auth_files)
    diff = text_diff(facts.conf, conf_text, str(paths.broker_conf)) + auth_diff(paths.broker_dir, facts.stale_auth)
    write = lambda: _write_auth(paths.broker_dir, auth_files)  # noqa: E731
    steps = {Action.START: lambda: _start_broker(inv, paths, conf_text, write),
             Action.RELOAD: lambda: _reload_broker(paths, conf_text, facts.pid, write),
             Action.RESTART: lambda: _restart_broker(inv, paths, conf_text, facts.pid, write)}
    return [bind(change, diff, steps) for change in decide_broker(facts, BrokerWanted(conf_text))]


def stale_auth_files(directory: Path, auth_files: dict) -> list:
    """Names of the auth files whose text on disk differs from the wanted text."""
    return [name for name, text in auth_files.items() if read_text(Path(directory) / name) != text]


def auth_diff(directory: Path, stale: list) -> str:
    # Names only: the password file holds hashes, and the ACL is rendered from the inventory.
    return "".join(f"~ {Path(directory) / name} (rewritten)\n" for name in stale)


def _write_auth(directory: Path, auth_files: dict) -> None:
    for name, text in auth_files.items():
        write_if_changed(Path(directory) / name, text, mode=0o600)


def _start_broker(inv: Inventory, paths: StatePaths, conf_text: str, write_auth=None) -> str:
    _refuse_busy_port(inv.broker.bind or "127.0.0.1", inv.broker.port)
    ensure_dir(paths.broker_data)
    if write_auth:
        write_auth()
    write_if_changed(paths.broker_conf, conf_text)
    pid = process.spawn([mosquitto_binary(), "-c", str(paths.broker_conf)],
                        log=paths.broker_stdout, pid_file=paths.broker_pid)
    _waitlistening(inv.broker.host, inv.broker.port, pid, paths)
    return f"pid {pid}, listening on {inv.broker.host}:{inv.broker.port}"


def _reload_broker(paths: StatePaths, conf_text: str, pid: int, write_auth=None) -> str:
    if write_auth:
        write_auth()
    write_if_changed(paths.broker_conf, conf_text)
    process.send_signal(pid, signal.SIGHUP)
    return f"SIGHUP sent to pid {pid}"


def reload_broker(inv: Inventory) -> str:
    """SIGHUP the running broker (after a credential change); '' when it does not run."""
    paths = state_paths(inv)
    pid = broker_pid(paths)
    if pid is None:
        return ""
    process.send_signal(pid, signal.SIGHUP)
    return f"SIGHUP sent to pid {pid}"


def auth_sync_plan(inv: Inventory, auth_files: dict) -> list:
    """Bring the broker's password and ACL files in line and SIGHUP it (agent.hatch, retire, rotate)."""
    paths = state_paths(inv)
    stale = stale_auth_files(paths.broker_dir, auth_files)
    if not stale:
        return [Change("broker auth", Action.NONE, "password and ACL files current")]

    def apply() -> str:
        _write_auth(paths.broker_dir, auth_files)
        return reload_broker(inv) or "files written; the broker is not running"
    return [Change("broker auth", Action.RELOAD, f"{' and '.join(stale)} changed; SIGHUP",
                   auth_diff(paths.broker_dir, stale), apply)]


def _restart_broker(inv: Inventory, paths: StatePaths, conf_text: str, pid: int, write_auth=None) -> str:
    process.stop(pid)
    wait_until(inv.broker.host, inv.broker.port, up=False)
    return _start_broker(inv, paths, conf_text, write_auth)


def _refuse_busy_port(host: str, port: int) -> None:
    if listening(host if host != "0.0.0.0" else "127.0.0.1", port):
        raise RuntimeFailure(f"port {port} on {host} is already in use by another program",
                             "stop that program, or set broker.port in the inventory to a free port")


def _waitlistening(host: str, port: int, pid: int, paths: StatePaths, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(host, port):
            return
        if process_exited(pid):
            break
        time.sleep(0.02)
    tail = process.log_tail(paths.broker_log) + "\n" + process.log_tail(paths.broker_stdout)
    raise RuntimeFailure(f"mosquitto (pid {pid}) is not listening on {host}:{port}; last log lines:\n{tail}",
                         f"read {paths.broker_log}")


def process_exited(pid: int) -> bool:
    """True once ``pid`` has ended. Not ``running_pid``: between fork and exec the
    child's command line is still ours, which looked like a dead broker."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:       # not our child: is it still there?
        return not process.send_signal(pid, 0)


def broker_stop_plan(inv: Inventory) -> list:
    paths = state_paths(inv)
    pid = broker_pid(paths)
    if pid is None:
        return [Change("broker", Action.NONE, "not running")]
    return [Change("broker", Action.STOP, f"running (pid {pid})", apply=lambda: stop_pid(pid, paths.broker_pid))]


def stop_pid(pid: int, pid_file: Path) -> str:
    process.stop(pid)
    pid_file.unlink(missing_ok=True)
    return f"pid {pid} stopped"


def broker_status(inv: Inventory) -> dict:
    paths = state_paths(inv)
    pid = broker_pid(paths)
    return {"runtime": "local", "running": pid is not None, "pid": pid,
            "listening": listening(inv.broker.host, inv.broker.port),
            "address": f"{inv.broker.host}:{inv.broker.port}",
            "config": str(paths.broker_conf), "log": str(paths.broker_log)}


