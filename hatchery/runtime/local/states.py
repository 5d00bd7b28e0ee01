"""What the local runtime says about its agents: ``AgentState`` and ``Provenance``.

A handler is found by what it is (``handlers.handler_table``); its pid file is
only a hint, and a pid file that lies is the ``problem``. The start time and
instance come from provenance.json, and only when that record names the
handler that runs now (a record of an earlier start says nothing about it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from hatchery.core import process
from hatchery.inventory.placement import host_of
from hatchery.core.paths import StatePaths, state_paths
from hatchery.inventory.model import AgentSpec, Inventory
from hatchery.runtime.base import AgentState, Provenance
from hatchery.runtime.local.decide import AgentFacts, pid_file_note
from hatchery.runtime.local.handlers import handler_pids, handler_table, still_handlers
from hatchery.runtime.local.kits import read_provenance

RUNTIME = "local"


def agent_facts(paths: StatePaths, name: str, pids: Optional[list] = None) -> AgentFacts:
    """What runs now: its handlers (``pids`` when the caller scanned already), what its
    pid file names, what it started from (provenance.json)."""
    recorded = process.read_pid(paths.agent_pid(name))
    return AgentFacts(pids=tuple(handler_pids(paths, name) if pids is None else pids), pid_file=recorded,
                      pid_file_alive=bool(recorded is not None and process.command_line(recorded)),
                      record=read_provenance(paths, name))


def orphans(inv: Inventory, table: dict) -> dict:
    """{name: pids} of handlers running from this state directory for names not in the inventory."""
    mine = {a.name for a in inv.agents.values() if a.runtime == RUNTIME}
    return {name: pids for name, pids in table.items() if name not in mine}


def agent_list(inv: Inventory) -> list:
    """An AgentState per local agent, then one per orphan; ``problem`` says what is off."""
    paths = state_paths(inv)
    table = handler_table(paths)
    states = [_state(inv, paths, agent.name, table.get(agent.name, []), host_of(inv, agent))
              for agent in inv.agents.values() if agent.runtime == RUNTIME]
    for name, pids in sorted(orphans(inv, table).items()):
        states.append(_state(inv, paths, name, pids, "local", orphan=True))
    return states


def agent_state(inv: Inventory, agent: AgentSpec) -> AgentState:
    """One agent's AgentState, as ``agent_list`` gives it. The pids of the (half-second) process
    table snapshot are checked again one by one: fleet.heal decides on this answer, and a
    handler killed since the snapshot must read as gone, not as running."""
    paths = state_paths(inv)
    pids = still_handlers(handler_pids(paths, agent.name), paths.agent_config(agent.name))
    return _state(inv, paths, agent.name, pids, host_of(inv, agent))


def _state(inv: Inventory, paths: StatePaths, name: str, pids: list, host: str,
           orphan: bool = False) -> AgentState:
    # stopped: no handler and no pid file, which only agent.stop (or never starting) leaves;
    # a crash or kill -9 leaves the pid file behind ("exited"), so fleet.heal restarts it
    pid_file = Path(paths.agent_pid(name)).exists()
    status = "running" if pids else ("exited" if pid_file else "stopped")
    record = read_provenance(paths, name) or {}
    current = len(pids) == 1 and record.get("pid") == pids[0]     # the record is of this start
    problem = "orphan: not in the inventory" if orphan else _problem(paths, name, pids, pid_file)
    return AgentState(
        agent=name, runtime=RUNTIME, running=bool(pids), status=status, host=host,
        pid=pids[0] if len(pids) == 1 else (pids or None), problem=problem, in_inventory=not orphan,
        started_at=_epoch(record.get("started")) if current else None,
        instance=record.get("instance") if current else None,
        detail={"log": str(paths.agent_log(name)), "stopped": status == "stopped"})


def _problem(paths: StatePaths, name: str, pids: list, pid_file: bool) -> str:
    if len(pids) > 1:
        return f"duplicates: {len(pids)} handlers"
    return pid_file_note(agent_facts(paths, name, pids)) if pids or pid_file else ""


def _epoch(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def agent_provenance(inv: Inventory, agent: AgentSpec) -> Optional[Provenance]:
    """The agent_kit copy, config hash, start time and instance recorded when the handler
    started; None if it never did."""
    record = read_provenance(state_paths(inv), agent.name)
    if record is None:
        return None
    return Provenance(kit=_text(record.get("kit")), config=_text(record.get("config")),
                      started=_epoch(record.get("started")), instance=_text(record.get("instance")))


def _text(value) -> Optional[str]:
    return value if isinstance(value, str) else None
