"""The local runtime: the native mosquitto and agent handlers as background processes.

Pid files and logs live under the state directory. Each planner compares the
wanted config file with the one on disk and the pid file with the process
table, and returns the Change that would bring them in line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from hatchery.configs.agent import to_json
from hatchery.configs.broker import reload_is_enough
from hatchery.core import process
from hatchery.core.assets import PROJECT_ROOT
from hatchery.core.paths import StatePaths, state_paths
from hatchery.core.plan import Change, text_diff
from hatchery.core.ports import listening, wait_until
from hatchery.core.render import content_hash
from hatchery.core.state import ensure_dir, read_text, write_if_changed
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import AgentSpec, Inventory

HANDLER_MODULE = "agent_kit.handler"
HANDLER_NAME = "python"     # /proc/PID/comm of a handler: we start it with sys.executable


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


def broker_plan(inv: Inventory, *, conf_text: str, auth_files: dict | None = None) -> list:
    """``auth_files``: {file name: text} the broker reads beside its config (passwd, acl).

    A change to those files alone is applied with SIGHUP, like a reloadable
    setting: the config text may not change at all when a user is added.
    """
    paths = state_paths(inv)
    auth_files = auth_files or {}
    current = read_text(paths.broker_conf)
    stale = stale_auth_files(paths.broker_dir, auth_files)
    diff = text_diff(current, conf_text, str(paths.broker_conf)) + auth_diff(paths.broker_dir, stale)
    pid = _broker_pid(paths)
    write = lambda: _write_auth(paths.broker_dir, auth_files)  # noqa: E731
    if pid is None:
        reason = "not running" if current == conf_text else "not running; config rendered"
        return [Change("broker", "start", reason, diff, lambda: _start_broker(inv, paths, conf_text, write))]
    if current == conf_text and not stale:
        return [Change("broker", "none", f"running (pid {pid}), config unchanged")]
    if reload_is_enough(current, conf_text):
        what = "config" if current != conf_text else " and ".join(stale)
        return [Change("broker", "reload", f"{what} changed; SIGHUP is enough", diff,
                       lambda: _reload_broker(paths, conf_text, pid, write))]
    return [Change("broker", "restart", "config changed", diff,
                   lambda: _restart_broker(inv, paths, conf_text, pid, write))]


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
    pid = _broker_pid(paths)
    if pid is None:
        return ""
    process.send_signal(pid, signal.SIGHUP)
    return f"SIGHUP sent to pid {pid}"


def auth_sync_plan(inv: Inventory, auth_files: dict) -> list:
    """Bring the broker's password and ACL files in line and SIGHUP it (agent.hatch, retire, rotate)."""
    paths = state_paths(inv)
    stale = stale_auth_files(paths.broker_dir, auth_files)
    if not stale:
        return [Change("broker auth", "none", "password and ACL files current")]

    def apply() -> str:
        _write_auth(paths.broker_dir, auth_files)
        return reload_broker(inv) or "files written; the broker is not running"
    return [Change("broker auth", "reload", f"{' and '.join(stale)} changed; SIGHUP",
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
        if _exited(pid):
            break
        time.sleep(0.02)
    tail = process.log_tail(paths.broker_log) + "\n" + process.log_tail(paths.broker_stdout)
    raise RuntimeFailure(f"mosquitto (pid {pid}) is not listening on {host}:{port}; last log lines:\n{tail}",
                         f"read {paths.broker_log}")


def _exited(pid: int) -> bool:
    """True once ``pid`` has ended. Not ``running_pid``: between fork and exec the
    child's command line is still ours, which looked like a dead broker."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:       # not our child: is it still there?
        return not process.send_signal(pid, 0)


def broker_stop_plan(inv: Inventory) -> list:
    paths = state_paths(inv)
    pid = _broker_pid(paths)
    if pid is None:
        return [Change("broker", "none", "not running")]
    return [Change("broker", "stop", f"running (pid {pid})", apply=lambda: _stop(pid, paths.broker_pid))]


def _stop(pid: int, pid_file: Path) -> str:
    process.stop(pid)
    pid_file.unlink(missing_ok=True)
    return f"pid {pid} stopped"


def broker_status(inv: Inventory) -> dict:
    paths = state_paths(inv)
    pid = _broker_pid(paths)
    return {"runtime": "local", "running": pid is not None, "pid": pid,
            "listening": listening(inv.broker.host, inv.broker.port),
            "address": f"{inv.broker.host}:{inv.broker.port}",
            "config": str(paths.broker_conf), "log": str(paths.broker_log)}


# --- agents ---------------------------------------------------------------------
#
# A handler is found by what it is: a process whose argv is
# ``python -m agent_kit.handler --config <state>/agents/<name>/agent.json``.
# The pid file is only a hint for people and tools (rewritten when it lies),
# and every handler holds an flock on its agent's handler.lock, so a second
# one for the same agent exits at once instead of fighting over the client id.

def handler_config(argv: list) -> str | None:
    """The config path a handler was started with, None when argv is not a handler."""
    if HANDLER_MODULE not in argv or "--config" not in argv:
        return None
    at = argv.index("--config") + 1
    return argv[at] if at < len(argv) else None


def handler_table(paths: StatePaths) -> dict:
    """{agent name: [pids]} of every handler running from this state directory.

    One scan of the process table for the whole fleet. Names come from the
    config path (``agents/<name>/agent.json``), so handlers for names that
    are no longer in the inventory (orphans) show up too.
    """
    agents_dir = str(paths.agents_dir) + os.sep
    table: dict = {}

    def ours(argv: list) -> bool:
        config = handler_config(argv)
        return bool(config and config.startswith(agents_dir) and config.endswith("/agent.json"))

    for pid in process.find(ours, name_prefix=HANDLER_NAME):
        name = Path(handler_config(process.argv_of(pid)) or "").parent.name
        if name:
            table.setdefault(name, []).append(pid)
    return table


# One scan of the process table serves a whole plan (100 agents, one scan: a
# scan costs 5-50 ms on a busy host). It is kept for half a second only, dropped
# whenever this module starts or stops a handler, and every stop re-checks
# each pid's command line, so a stale entry can never signal a stranger.
SNAPSHOT_SECONDS = 0.5
_snapshots: dict = {}       # state root -> (monotonic time, handler table)


def handler_pids(paths: StatePaths, name: str) -> list:
    taken = _snapshots.get(paths.root)
    if taken is None or time.monotonic() - taken[0] > SNAPSHOT_SECONDS:
        taken = (time.monotonic(), handler_table(paths))
        _snapshots[paths.root] = taken
    return list(taken[1].get(name, []))


def _changed(paths: StatePaths) -> None:
    _snapshots.pop(paths.root, None)


def _still_handlers(pids: list, config: Path) -> list:
    return [pid for pid in pids if handler_config(process.argv_of(pid)) == str(config)]


def _pid_file_note(paths: StatePaths, name: str, pids: list) -> str:
    """'' when the pid file names the (one) running handler, else what is wrong with it."""
    recorded = process.read_pid(paths.agent_pid(name))
    if recorded is None:
        return "no pid file" if pids else ""
    if recorded in pids:
        return ""
    alive = process.command_line(recorded)
    what = "a reused pid (another program)" if alive else "a process that is gone"
    return f"pid file names {recorded}, {what}"


def agent_plan(inv: Inventory, agent: AgentSpec, *, agent_config: dict, context_dir=None,
               secret_files: dict | None = None) -> list:
    """``secret_files`` is unused here: the config points at the secrets in the state dir.

    A running handler is outdated when its recorded provenance (agent_kit hash,
    config hash) differs from what would start now; the reason names both.
    """
    paths = state_paths(inv)
    wanted = to_json(agent_config)
    current = read_text(paths.agent_config(agent.name))
    diff = text_diff(current, wanted, str(paths.agent_config(agent.name)))
    item = f"agent {agent.name}"
    pids = handler_pids(paths, agent.name)
    note = _pid_file_note(paths, agent.name, pids)
    start = lambda: _start_agent(paths, agent.name, wanted)  # noqa: E731
    restart = lambda: _restart_agent(paths, agent.name, wanted, pids)  # noqa: E731
    if not pids:
        return [Change(item, "start", "; ".join(filter(None, ["not running", note])), diff, start)]
    if len(pids) > 1:
        return [Change(item, "restart", f"{len(pids)} handlers running (pids {_pids(pids)}): "
                       "duplicates; stopping all, starting one", diff, restart)]
    outdated = outdated_reason(read_provenance(paths, agent.name), kit_hash(), content_hash(wanted))
    if outdated:
        return [Change(item, "restart", outdated, diff, restart)]
    if note:
        return [Change(item, "repair", f"running (pid {pids[0]}) but {note}",
                       apply=lambda: _repair_pid_file(paths, agent.name, pids[0]))]
    return [Change(item, "none", f"running (pid {pids[0]}), config unchanged")]


def outdated_reason(record: dict | None, kit: str, config: str) -> str:
    """'' when ``record`` (provenance) matches, else 'outdated: agent_kit a → b, config c → d'."""
    if record is None:
        return "outdated: started without a provenance record (an older hatchery)"
    changed = [f"{label} {record.get(key) or '?'} → {now}"
               for label, key, now in (("agent_kit", "kit", kit), ("config", "config", config))
               if record.get(key) != now]
    return "outdated: " + ", ".join(changed) if changed else ""


def _pids(pids: list) -> str:
    return ", ".join(map(str, pids))


def _repair_pid_file(paths: StatePaths, name: str, pid: int) -> str:
    process.write_pid(paths.agent_pid(name), pid)
    return f"pid file rewritten: {pid}"


def _start_agent(paths: StatePaths, name: str, config_text: str, kit: str | None = None) -> str:
    """Start a handler with ``config_text`` on agent_kit copy ``kit`` (default: this checkout's).

    What it ran before (when different) is kept as previous.json for a rollback;
    what it runs now is recorded in provenance.json once it has started.
    """
    _changed(paths)
    kit = kit or ensure_kit(paths)
    _keep_previous(paths, name, kit, config_text)
    write_if_changed(paths.agent_config(name), config_text)
    argv = [sys.executable, "-m", HANDLER_MODULE, "--config", str(paths.agent_config(name)),
            "--lock", str(paths.agent_lock(name))]
    pid = process.spawn(argv, log=paths.agent_log(name), pid_file=paths.agent_pid(name),
                        env=_handler_env(Path(paths.kit_dir(kit))))
    _write_json(paths.agent_provenance(name),
                {"kit": kit, "config": content_hash(config_text), "started": time.time(), "pid": pid})
    time.sleep(0.05)  # a handler that dies on a bad config dies at once: say so now
    if _exited(pid):
        raise RuntimeFailure(f"agent {name}'s handler exited at start; last log lines:\n"
                             + process.log_tail(paths.agent_log(name)), f"read {paths.agent_log(name)}")
    return f"pid {pid}, agent_kit {kit}"


def _handler_env(kit_dir: Path | None = None) -> dict:
    # The handler imports agent_kit from its own copy under the state dir (so an
    # upgrade of this checkout can be rolled back), else from this tree.
    # Its config file is the only source of truth: HATCHERY_* variables in the
    # operator's shell would override it (agent_kit reads them for containers).
    root = str(kit_dir or PROJECT_ROOT)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HATCHERY_") and k != "FLEET_INVENTORY"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _restart_agent(paths: StatePaths, name: str, config_text: str, pids: list,
                   kit: str | None = None) -> str:
    process.stop_all(_still_handlers(pids, paths.agent_config(name)))
    return _start_agent(paths, name, config_text, kit)


# --- provenance: what each handler came from ------------------------------------------

KIT_PACKAGE = "agent_kit"


_kit_hashes: dict = {}      # (file names, sizes, mtimes) -> hash: a plan of 100 agents reads the code once


def kit_hash(source: Path | None = None) -> str:
    """The code hash of an agent_kit tree (its .py files, by name and content)."""
    files = sorted(Path(source or PROJECT_ROOT / KIT_PACKAGE).glob("*.py"))
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _kit_hashes:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _kit_hashes[key] = digest.hexdigest()[:12]
    return _kit_hashes[key]


def ensure_kit(paths: StatePaths, source: Path | None = None) -> str:
    """Copy this checkout's agent_kit to kits/<hash>/ once; its hash.

    Copied to a temporary name and renamed, so a half-written copy is never used.
    """
    source = Path(source or PROJECT_ROOT / KIT_PACKAGE)
    digest = kit_hash(source)
    target = Path(paths.kit_dir(digest))
    if not (target / KIT_PACKAGE / "__init__.py").exists():
        staging = Path(paths.kits_dir) / f".{digest}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        ensure_dir(staging / KIT_PACKAGE)
        for path in source.glob("*.py"):
            shutil.copy2(path, staging / KIT_PACKAGE / path.name)
        try:
            os.rename(staging, target)
        except OSError:             # another run made it first
            shutil.rmtree(staging, ignore_errors=True)
    return digest


def read_provenance(paths: StatePaths, name: str) -> dict | None:
    return _read_json(paths.agent_provenance(name))


def _keep_previous(paths: StatePaths, name: str, kit: str, config_text: str) -> None:
    record = read_provenance(paths, name)
    old_text = read_text(paths.agent_config(name))
    if record is None or old_text is None:
        return
    if (record.get("kit"), record.get("config")) != (kit, content_hash(config_text)):
        _write_json(paths.agent_previous(name), {"kit": record.get("kit"), "config": record.get("config"),
                                                 "config_text": old_text})


def _read_json(path) -> dict | None:
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path, value: dict) -> None:
    # atomic: a reader (or a crash) never sees half a record
    path = Path(path)
    ensure_dir(path.parent)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(value, sort_keys=True) + "\n")
    os.replace(staging, path)


def agent_provenance(inv: Inventory, agent: AgentSpec) -> dict | None:
    """{'kit', 'config', 'started'} recorded when the handler started; None if it never did."""
    record = read_provenance(state_paths(inv), agent.name)
    return None if record is None else {k: record.get(k) for k in ("kit", "config", "started")}


def agent_restart_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Stop and start the handler on what it ran (its config on disk, its agent_kit copy)."""
    paths = state_paths(inv)
    text = read_text(paths.agent_config(agent.name))
    item = f"agent {agent.name}"
    if text is None:
        return [Change(item, "none", f"never started; hatch it: invoke agent.hatch --name {agent.name}")]
    record = read_provenance(paths, agent.name) or {}
    kit = record.get("kit")
    if not kit or not Path(paths.kit_dir(kit)).is_dir():
        kit = None
    pids = handler_pids(paths, agent.name)
    what = f"running (pid {_pids(pids)})" if pids else "not running"
    return [Change(item, "restart", f"{what}; restart requested",
                   apply=lambda: _restart_agent(paths, agent.name, text, pids, kit))]


def agent_restore_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Put the handler back on what it ran before its last upgrade (previous.json)."""
    paths = state_paths(inv)
    previous = _read_json(paths.agent_previous(agent.name))
    item = f"agent {agent.name}"
    if not previous or not isinstance(previous.get("config_text"), str):
        return [Change(item, "failed", "nothing to roll back to: no previous version recorded",
                       apply=_nothing_to_restore)]
    kit = previous.get("kit")
    if not kit or not Path(paths.kit_dir(kit)).is_dir():
        return [Change(item, "failed", f"the previous agent_kit copy {kit} is gone", apply=_nothing_to_restore)]
    pids = handler_pids(paths, agent.name)
    return [Change(item, "rollback", f"back to agent_kit {kit}, config {previous.get('config')}",
                   text_diff(read_text(paths.agent_config(agent.name)), previous["config_text"],
                             str(paths.agent_config(agent.name))),
                   lambda: _restart_agent(paths, agent.name, previous["config_text"], pids, kit))]


def _nothing_to_restore() -> str:
    raise RuntimeFailure("no previous version to restore", "start it again: invoke agent.hatch")


def agent_stop_plan(inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
    """Stop every handler of the agent; with ``remove`` (agent.retire) also delete its state."""
    paths = state_paths(inv)
    pids = handler_pids(paths, agent.name)
    item = f"agent {agent.name}"
    state = paths.agent_dir(agent.name)
    if remove and (pids or state.exists()):
        return [Change(item, "remove", "retiring: handler and state",
                       apply=lambda: _retire(paths, agent.name, pids))]
    if not pids:
        return [Change(item, "none", "not running")]
    what = f"running (pid {pids[0]})" if len(pids) == 1 else \
        f"{len(pids)} handlers running (pids {_pids(pids)}): duplicates"
    return [Change(item, "stop", what, apply=lambda: _stop_handlers(paths, agent.name, pids))]


def orphan_stop_plan(inv: Inventory) -> list:
    """Stop handlers running from this state directory for names not in the inventory.

    They are left over from an agent removed from the inventory by hand, or
    from an interrupted retire; nobody else would ever stop them.
    """
    paths = state_paths(inv)
    changes = []
    for name, pids in sorted(_orphans(inv, handler_table(paths)).items()):
        changes.append(Change(f"agent {name}", "stop",
                              f"orphan: not in the inventory, running (pids {_pids(pids)})",
                              apply=lambda p=pids, n=name: _stop_handlers(paths, n, p)))
    return changes


def _orphans(inv: Inventory, table: dict) -> dict:
    local = {a.name for a in inv.agents.values() if a.runtime == "local"}
    return {name: pids for name, pids in table.items() if name not in local}


def _stop_handlers(paths: StatePaths, name: str, pids: list) -> str:
    _changed(paths)
    process.stop_all(_still_handlers(pids, paths.agent_config(name)))
    paths.agent_pid(name).unlink(missing_ok=True)
    return f"pid {_pids(pids)} stopped"


def _retire(paths: StatePaths, name: str, pids: list) -> str:
    _changed(paths)
    process.stop_all(_still_handlers(pids, paths.agent_config(name)))
    shutil.rmtree(paths.agent_dir(name), ignore_errors=True)
    return f"removed {paths.agent_dir(name)}"


def agent_list(inv: Inventory) -> list:
    """One row per local agent, then one per orphan; ``problem`` says what is off."""
    paths = state_paths(inv)
    table = handler_table(paths)
    rows = []
    for agent in inv.agents.values():
        if agent.runtime != "local":
            continue
        pids = table.get(agent.name, [])
        rows.append(_row(agent.name, pids, _problem(paths, agent.name, pids), paths))
    for name, pids in sorted(_orphans(inv, table).items()):
        rows.append(_row(name, pids, "orphan: not in the inventory", paths))
    return rows


def _row(name: str, pids: list, problem: str, paths: StatePaths) -> dict:
    # stopped: no handler and no pid file, which only agent.stop (or never starting) leaves;
    # a crash or kill -9 leaves the pid file behind, so fleet.heal knows to restart it
    return {"agent": name, "runtime": "local", "running": bool(pids),
            "pid": pids[0] if len(pids) == 1 else (pids or None),
            "problem": problem, "log": str(paths.agent_log(name)),
            "stopped": not pids and not Path(paths.agent_pid(name)).exists()}


def _problem(paths: StatePaths, name: str, pids: list) -> str:
    if len(pids) > 1:
        return f"duplicates: {len(pids)} handlers"
    return _pid_file_note(paths, name, pids) if pids or paths.agent_pid(name).exists() else ""


# --- logs -------------------------------------------------------------------------

LOG_POLL = 0.2      # seconds between looks at a followed log


def agent_logs(inv: Inventory, agent: AgentSpec, *, lines: int = 50, follow: bool = False):
    """The last ``lines`` lines of the handler's log, then (``follow``) new ones as they come.

    A generator of text lines without their newline; following ends when the
    caller stops iterating (Ctrl-C).
    """
    path = state_paths(inv).agent_log(agent.name)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise RuntimeFailure(f"agent {agent.name} has no log yet ({path})",
                             f"start it: invoke agent.hatch --name {agent.name}") from None
    with handle:
        yield from tail_lines(handle, lines)
        while follow:
            yield from _new_lines(handle, path)


def tail_lines(handle, count: int, block: int = 8192) -> list:
    """The last ``count`` lines of a binary file, reading backwards from its end."""
    handle.seek(0, os.SEEK_END)
    end = position = handle.tell()
    data = b""
    while position > 0 and data.count(b"\n") <= count:
        position = max(0, position - block)
        handle.seek(position)
        data = handle.read(end - position)
    handle.seek(end)
    text = data.decode(errors="replace").splitlines()
    return text[-count:] if count else []


def _new_lines(handle, path: Path):
    """Whole lines appended since the last call; sleeps a little when there are none."""
    where = handle.tell()
    chunk = handle.readline()
    if chunk.endswith(b"\n"):
        yield chunk.decode(errors="replace").rstrip("\n")
        return
    handle.seek(where)          # half a line: wait for the rest
    try:
        if path.stat().st_size < where:   # truncated or replaced: start again from its top
            handle.seek(0)
    except FileNotFoundError:
        pass
    time.sleep(LOG_POLL)


def agent_status(inv: Inventory, agent: AgentSpec) -> dict:
    """One agent's row of ``agent_list``."""
    paths = state_paths(inv)
    pids = handler_pids(paths, agent.name)
    return _row(agent.name, pids, _problem(paths, agent.name, pids), paths)


def agent_inspect(inv: Inventory, agent: AgentSpec) -> dict | None:
    """The handler's pid (None when it does not run), config and log; None when it never started."""
    paths = state_paths(inv)
    if not paths.agent_dir(agent.name).exists():
        return None
    pids = handler_pids(paths, agent.name)
    return {"pid": pids[0] if pids else None, "config": str(paths.agent_config(agent.name)),
            "log": str(paths.agent_log(agent.name))}


def exec_in_agent(inv: Inventory, agent: AgentSpec, argv: list, timeout: float) -> tuple:
    """Run ``argv`` on this host in the handler's environment: (exit code, output);
    124 on timeout, as coreutils' timeout says in a container."""
    if not handler_pids(state_paths(inv), agent.name):
        raise RuntimeFailure(f"agent {agent.name}'s handler is not running",
                             f"hatch it: invoke agent.hatch --name {agent.name}")
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=_handler_env(), timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return 124, (exc.output or b"").decode(errors="replace")
    except OSError as exc:
        raise RuntimeFailure(f"cannot run {argv[0]!r} for agent {agent.name}: {exc}",
                             "check the command and that it is installed on this host") from None
    return done.returncode, done.stdout.decode(errors="replace")


def verify_in_agent(inv: Inventory, agent: AgentSpec, timeout: float = 5.0) -> list:
    """[]: a local handler runs on this host, which fleet.verify already checks from here."""
    return []


def write_build_files(inv: Inventory, agents: list) -> list:
    """[]: local handlers run from this checkout; there is no image to build."""
    return []


def remove_fleet(inv: Inventory) -> None:
    """Stop the broker and every handler running from the state directory (state kept)."""
    paths = state_paths(inv)
    for name, pids in sorted(handler_table(paths).items()):
        _stop_handlers(paths, name, pids)
    pid = _broker_pid(paths)
    if pid is not None:
        _stop(pid, paths.broker_pid)


class LocalRuntime:
    """The native mosquitto and agent handlers as background processes on this host."""

    name = "local"
    broker_plan = staticmethod(broker_plan)
    broker_stop_plan = staticmethod(broker_stop_plan)
    broker_status = staticmethod(broker_status)
    auth_sync_plan = staticmethod(auth_sync_plan)
    reload_broker = staticmethod(reload_broker)
    agent_plan = staticmethod(agent_plan)
    agent_stop_plan = staticmethod(agent_stop_plan)
    agent_list = staticmethod(agent_list)
    orphan_stop_plan = staticmethod(orphan_stop_plan)
    agent_logs = staticmethod(agent_logs)
    agent_provenance = staticmethod(agent_provenance)
    agent_restart_plan = staticmethod(agent_restart_plan)
    agent_restore_plan = staticmethod(agent_restore_plan)
    agent_status = staticmethod(agent_status)
    agent_inspect = staticmethod(agent_inspect)
    exec_in_agent = staticmethod(exec_in_agent)
    verify_in_agent = staticmethod(verify_in_agent)
    write_build_files = staticmethod(write_build_files)
    remove_fleet = staticmethod(remove_fleet)
