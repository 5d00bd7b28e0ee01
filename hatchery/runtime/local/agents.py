"""Local agents: plan, start, restart, restore, stop and list their handlers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hatchery.configs.agent import to_json
from hatchery.core import process
from hatchery.core.assets import PROJECT_ROOT
from hatchery.core.hosts import LOCAL_HOST
from hatchery.core.paths import StatePaths, state_paths
from hatchery.core.plan import Action, Change, bind, text_diff
from hatchery.core.render import content_hash
from hatchery.core.state import read_text, write_if_changed
from hatchery.errors import RuntimeFailure
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.base import INSTANCE_ENV, new_instance
from hatchery.runtime.local.broker import process_exited
from hatchery.runtime.local.decide import (
    AgentWanted,
    RestoreFacts,
    RestoreWanted,
    decide_agent,
    decide_restore,
)
from hatchery.runtime.local.handlers import (
    HANDLER_MODULE,
    forget_snapshot,
    handler_pids,
    handler_table,
    still_handlers,
)
from hatchery.runtime.local.kits import (
    ensure_kit,
    keep_previous,
    kit_hash,
    read_json,
    read_provenance,
    write_json,
)
from hatchery.runtime.local.states import agent_facts, orphans


def agent_plan(inv: Inventory, agent: AgentSpec, *, agent_config: dict, context_dir=None,
               secret_files: dict | None = None) -> list:
    """``secret_files`` is unused here: the config points at the secrets in the state dir.

    Facts (``agent_facts``), the pure decision (``decide.decide_agent``), then each
    decision bound to its diff and apply step.
    """
    paths = state_paths(inv)
    wanted = to_json(agent_config)
    facts = agent_facts(paths, agent.name)
    diff = text_diff(read_text(paths.agent_config(agent.name)), wanted, str(paths.agent_config(agent.name)))
    pids = list(facts.pids)
    steps = {Action.START: lambda: _start_agent(paths, agent.name, wanted),
             Action.RESTART: lambda: _restart_agent(paths, agent.name, wanted, pids),
             Action.REPAIR: lambda: _repair_pid_file(paths, agent.name, pids[0])}
    decided = decide_agent(facts, AgentWanted(agent.name, kit_hash(), content_hash(wanted)))
    # a repaired pid file changes no config: no diff to show
    return [bind(c, "" if c.action is Action.REPAIR else diff, steps) for c in decided]


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
    forget_snapshot(paths)
    kit = kit or ensure_kit(paths)
    keep_previous(paths, name, kit, config_text)
    write_if_changed(paths.agent_config(name), config_text)
    argv = [sys.executable, "-m", HANDLER_MODULE, "--config", str(paths.agent_config(name)),
            "--lock", str(paths.agent_lock(name))]
    instance = new_instance()       # every start a new one: the handler's birth and Will carry it
    pid = process.spawn(argv, log=paths.agent_log(name), pid_file=paths.agent_pid(name),
                        env={**_handler_env(Path(paths.kit_dir(kit))), INSTANCE_ENV: instance})
    write_json(paths.agent_provenance(name), {"kit": kit, "config": content_hash(config_text),
                                              "started": time.time(), "pid": pid, "instance": instance})
    time.sleep(0.05)  # a handler that dies on a bad config dies at once: say so now
    if process_exited(pid):
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
    process.stop_all(still_handlers(pids, paths.agent_config(name)))
    return _start_agent(paths, name, config_text, kit)


def agent_restart_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Stop and start the handler on what it ran (its config on disk, its agent_kit copy)."""
    paths = state_paths(inv)
    text = read_text(paths.agent_config(agent.name))
    item = f"agent {agent.name}"
    if text is None:
        return [Change(item, Action.NONE, f"never started; hatch it: invoke agent.hatch --name {agent.name}")]
    record = read_provenance(paths, agent.name) or {}
    kit = record.get("kit")
    if not kit or not Path(paths.kit_dir(kit)).is_dir():
        kit = None
    pids = handler_pids(paths, agent.name)
    what = f"running (pid {_pids(pids)})" if pids else "not running"
    return [Change(item, Action.RESTART, f"{what}; restart requested",
                   apply=lambda: _restart_agent(paths, agent.name, text, pids, kit))]


def agent_restore_plan(inv: Inventory, agent: AgentSpec) -> list:
    """Put the handler back on what it ran before its last upgrade (previous.json)."""
    paths = state_paths(inv)
    previous = read_json(paths.agent_previous(agent.name))
    kit = (previous or {}).get("kit")
    facts = RestoreFacts(previous, kit_present=bool(kit) and Path(paths.kit_dir(kit)).is_dir())
    pids = handler_pids(paths, agent.name)
    current = read_text(paths.agent_config(agent.name))

    def restore() -> str:
        return _restart_agent(paths, agent.name, previous["config_text"], pids, kit)
    steps = {Action.ROLLBACK: restore}
    return [bind(change, text_diff(current, previous["config_text"], str(paths.agent_config(agent.name)))
                 if change.action is Action.ROLLBACK else "", steps, "start it again: invoke agent.hatch")
            for change in decide_restore(facts, RestoreWanted(agent.name))]


def agent_stop_plan(inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
    """Stop every handler of the agent; with ``remove`` (agent.retire) also delete its state."""
    paths = state_paths(inv)
    pids = handler_pids(paths, agent.name)
    item = f"agent {agent.name}"
    state = paths.agent_dir(agent.name)
    if remove and (pids or state.exists()):
        return [Change(item, Action.REMOVE, "retiring: handler and state",
                       apply=lambda: _retire(paths, agent.name, pids))]
    if not pids:
        return [Change(item, Action.NONE, "not running")]
    what = f"running (pid {pids[0]})" if len(pids) == 1 else \
        f"{len(pids)} handlers running (pids {_pids(pids)}): duplicates"
    return [Change(item, Action.STOP, what, apply=lambda: stop_handlers(paths, agent.name, pids))]


def orphan_stop_plans(inv: Inventory) -> dict:
    """{'local': () -> Changes}: the orphans of this machine (one host)."""
    return {LOCAL_HOST: lambda: orphan_stop_plan(inv)}


def orphan_stop_plan(inv: Inventory) -> list:
    """Stop handlers running from this state directory for names not in the inventory.

    They are left over from an agent removed from the inventory by hand, or
    from an interrupted retire; nobody else would ever stop them.
    """
    paths = state_paths(inv)
    changes = []
    for name, pids in sorted(orphans(inv, handler_table(paths)).items()):
        changes.append(Change(f"agent {name}", Action.STOP,
                              f"orphan: not in the inventory, running (pids {_pids(pids)})",
                              apply=lambda p=pids, n=name: stop_handlers(paths, n, p)))
    return changes


def stop_handlers(paths: StatePaths, name: str, pids: list) -> str:
    forget_snapshot(paths)
    process.stop_all(still_handlers(pids, paths.agent_config(name)))
    paths.agent_pid(name).unlink(missing_ok=True)
    return f"pid {_pids(pids)} stopped"


def _retire(paths: StatePaths, name: str, pids: list) -> str:
    forget_snapshot(paths)
    process.stop_all(still_handlers(pids, paths.agent_config(name)))
    shutil.rmtree(paths.agent_dir(name), ignore_errors=True)
    return f"removed {paths.agent_dir(name)}"


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


