"""The local runtime's decisions: facts in, ``Change``s out, and nothing read or touched.

A plan is two steps (pyinfra's facts and operations): the planner reads what
runs now into one of the small values below, then a pure ``decide_*`` names
the change and why. The planner binds each decision to its diff and its
apply step. ``tests/plans/local/*.json`` are cases of facts in, actions and
reasons out, run with no broker and no process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hatchery.core.plan import Action, Change
from hatchery.runtime.decisions import decide_running_broker


# --- the broker ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BrokerFacts:
    pid: Optional[int] = None           # the running broker's (None: it does not run)
    conf: Optional[str] = None          # mosquitto.conf on disk (None: never written)
    stale_auth: tuple = ()              # auth files (passwd, acl) whose text is not the wanted


@dataclass(frozen=True)
class BrokerWanted:
    conf: str


def decide_broker(facts: BrokerFacts, wanted: BrokerWanted) -> list:
    """A change to the auth files alone is a SIGHUP, like a reloadable setting."""
    if facts.pid is None:
        reason = "not running" if facts.conf == wanted.conf else "not running; config rendered"
        return [Change("broker", Action.START, reason)]
    return [decide_running_broker(f"pid {facts.pid}", facts.conf, wanted.conf, facts.stale_auth,
                                  "config changed")]


# --- an agent's handler ----------------------------------------------------------------------

@dataclass(frozen=True)
class AgentFacts:
    pids: tuple = ()                    # its handlers running now (found by what they are)
    pid_file: Optional[int] = None      # the pid its pid file names
    pid_file_alive: bool = False        # that pid is a live process
    record: Optional[dict] = None       # provenance.json: the agent_kit and config it started with


@dataclass(frozen=True)
class AgentWanted:
    name: str
    kit: str                            # this checkout's agent_kit hash
    config: str                         # the rendered config's hash


def pid_file_note(facts: AgentFacts) -> str:
    """'' when the pid file names the (one) running handler, else what is wrong with it."""
    if facts.pid_file is None:
        return "no pid file" if facts.pids else ""
    if facts.pid_file in facts.pids:
        return ""
    what = "a reused pid (another program)" if facts.pid_file_alive else "a process that is gone"
    return f"pid file names {facts.pid_file}, {what}"


def outdated_reason(record: Optional[dict], kit: str, config: str) -> str:
    """'' when ``record`` (provenance) matches, else 'outdated: agent_kit a → b, config c → d'."""
    if record is None:
        return "outdated: started without a provenance record (an older hatchery)"
    changed = [f"{label} {record.get(key) or '?'} → {now}"
               for label, key, now in (("agent_kit", "kit", kit), ("config", "config", config))
               if record.get(key) != now]
    return "outdated: " + ", ".join(changed) if changed else ""


def decide_agent(facts: AgentFacts, wanted: AgentWanted) -> list:
    """A running handler is outdated when its provenance (agent_kit, config hash) differs
    from what would start now; the reason names both."""
    item, pids, note = f"agent {wanted.name}", list(facts.pids), pid_file_note(facts)
    if not pids:
        return [Change(item, Action.START, "; ".join(filter(None, ["not running", note])))]
    if len(pids) > 1:
        return [Change(item, Action.RESTART, f"{len(pids)} handlers running (pids {_pids(pids)}): "
                       "duplicates; stopping all, starting one")]
    outdated = outdated_reason(facts.record, wanted.kit, wanted.config)
    if outdated:
        return [Change(item, Action.RESTART, outdated)]
    if note:
        return [Change(item, Action.REPAIR, f"running (pid {pids[0]}) but {note}")]
    return [Change(item, Action.NONE, f"running (pid {pids[0]}), config unchanged")]


def _pids(pids: list) -> str:
    return ", ".join(map(str, pids))


# --- a rollback ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreFacts:
    previous: Optional[dict] = None     # previous.json: what it ran before its last upgrade
    kit_present: bool = False           # that agent_kit copy is still in the state directory


@dataclass(frozen=True)
class RestoreWanted:
    name: str


def decide_restore(facts: RestoreFacts, wanted: RestoreWanted) -> list:
    item, previous = f"agent {wanted.name}", facts.previous
    if not previous or not isinstance(previous.get("config_text"), str):
        return [Change(item, Action.FAILED, "nothing to roll back to: no previous version recorded")]
    if not previous.get("kit") or not facts.kit_present:
        return [Change(item, Action.FAILED, f"the previous agent_kit copy {previous.get('kit')} is gone")]
    return [Change(item, Action.ROLLBACK, f"back to agent_kit {previous['kit']}, config {previous.get('config')}")]


# plan name -> (facts type, wanted type, decide): what tests/plans/local/*.json exercise
DECISIONS = {"broker": (BrokerFacts, BrokerWanted, decide_broker),
             "agent": (AgentFacts, AgentWanted, decide_agent),
             "restore": (RestoreFacts, RestoreWanted, decide_restore)}
