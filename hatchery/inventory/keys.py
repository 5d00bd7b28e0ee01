"""Which keys an agent or the broker may carry: the common ones, and its runtime's own.

Every runtime declares its keys (``inventory/runtimes/<name>.py``). A key
that only other runtimes take is refused where it is written, with the fix:

- on an agent, when the agent's runtime does not take it;
- in a group's vars, when no agent of the group runs in a runtime that takes it;
- under ``broker:``, when neither the broker nor any agent runs in one.

Role defaults are shared by agents of any runtime (the default role names a
base image for docker agents), so a role's key that an agent's runtime does
not take is not applied to it, and not refused.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from hatchery.inventory.document import Doc
from hatchery.inventory.fields import AGENT_FIELDS, BROKER_FIELDS, choice
from hatchery.inventory.model import AgentSpec, BrokerSpec, ReloadSpec
from hatchery.inventory.runtimes import (
    DEFAULT_RUNTIME,
    Placing,
    agent_keys,
    broker_keys,
    declared,
    host_default,
    names,
    sections,
    takers,
)

_AGENT_FIELD_NAMES = {f.name for f in fields(AgentSpec)}
_BROKER_FIELD_NAMES = {f.name for f in fields(BrokerSpec)}


@dataclass(frozen=True)
class Schemas:
    """The loader's schemas as the registered runtimes make them: key -> check."""

    agent: dict             # under an agent (and a group's vars)
    role: dict              # in a role's defaults: every agent key but role
    broker: dict
    sections: tuple         # top-level keys the runtimes add (e.g. swarm)

    @classmethod
    def now(cls) -> "Schemas":
        runtime = {"runtime": choice(names())}
        agent = {**AGENT_FIELDS, **runtime, **agent_keys()}
        return cls(agent=agent, role={k: v for k, v in agent.items() if k != "role"},
                   broker={**runtime, **BROKER_FIELDS, **broker_keys()}, sections=tuple(sections()))


def read_sections(doc: Doc, data: dict, hosts: dict) -> dict:
    """The runtimes' own top-level sections that are present, each read by its runtime."""
    return {key: reader(doc, data, hosts) for key, reader in sections().items() if key in data}


# --- an agent ----------------------------------------------------------------------------

def agent_settings(doc: Doc, agents_node, name: str, node: dict, defaults: dict, merged: dict,
                   own: dict) -> dict:
    """AgentSpec's keyword arguments from role defaults < group vars < own keys (``merged``).

    The runtime comes first: an agent placed with ``host:`` and no runtime of its
    own (or its groups') runs in the runtime that runs on hosts by default.
    """
    settings = {**defaults, **merged}
    settings.pop("role", None)
    runtime = _runtime(doc, agents_node, name, node, settings, merged, own)
    settings["runtime"] = runtime
    mine = declared(runtime).agent_keys
    for key in own:
        if key in _specific() and key not in mine:
            doc.add(node, key, f"agents.{name}.{key}", _not_taken(key, runtime), _take_fix(key))
    kept = {k: v for k, v in settings.items() if k not in _specific() or k in mine}
    if isinstance(kept.get("reload"), dict):
        kept["reload"] = ReloadSpec(**kept["reload"])
    return split(kept, _AGENT_FIELD_NAMES)


def _runtime(doc: Doc, agents_node, name: str, node: dict, settings: dict, merged: dict, own: dict) -> str:
    runtime = settings.get("runtime", DEFAULT_RUNTIME)
    if not settings.get("host") or declared(runtime).on_hosts:
        return runtime
    fallback = host_default()
    if "runtime" not in merged and fallback is not None:
        return fallback.name
    where, key = (node, "host") if "host" in own else (agents_node, name)
    doc.add(where, key, f"agents.{name}.host", f"runtime {runtime} does not run on a hosts: entry",
            declared(runtime).describe_pin())
    return runtime


def _specific() -> dict:
    return agent_keys()


def _not_taken(key: str, runtime: str) -> str:
    return f"{key} is read by runtime {' and '.join(takers(key))} only; this agent runs {runtime}"


def _take_fix(key: str) -> str:
    return f"remove {key}, or set runtime: {takers(key)[0]}"


def split(values: dict, field_names: set) -> dict:
    """Keyword arguments for a spec: its fields as they are, a runtime's other keys in options."""
    kwargs = {k: v for k, v in values.items() if k in field_names}
    options = {k: v for k, v in values.items() if k not in field_names}
    return {**kwargs, "options": options} if options else kwargs


def check_group_keys(doc: Doc, vars_node: dict, group_vars: dict, group: str, members: list) -> None:
    """A group's runtime-specific var (checked: ``group_vars``) must apply to one of its agents."""
    running = {a.runtime for a in members}
    for key in group_vars:
        if key in _specific() and not running & set(takers(key)):
            doc.add(vars_node, key, f"groups.{group}.vars.{key}",
                    f"{key} is read by runtime {' and '.join(takers(key))} only; no agent of group "
                    f"{group} runs there ({', '.join(sorted(running)) or 'no agents'})", _take_fix(key))


def run_agent_checks(doc: Doc, agents_node, agents: dict, placing: Placing) -> None:
    """Each runtime's own further rules for its agents (its declaration's check_agent)."""
    for agent in agents.values():
        check = declared(agent.runtime).check_agent
        if check is not None:
            check(doc, agents_node, agent.name, agent, placing)


# --- the broker ------------------------------------------------------------------------------

def broker_spec(values: dict) -> BrokerSpec:
    return BrokerSpec(**split(values, _BROKER_FIELD_NAMES))


def check_broker_keys(doc: Doc, broker_node: dict, given: dict, broker: BrokerSpec, agents: dict) -> None:
    """A runtime-specific key under broker: (checked: ``given``) must concern the broker or some agent."""
    running = {broker.runtime} | {a.runtime for a in agents.values()}
    for key in given:
        owners = takers(key, broker=True)
        if key in broker_keys() and not running & set(owners):
            doc.add(broker_node, key, f"broker.{key}",
                    f"{key} is read by runtime {' and '.join(owners)} only; nothing in this fleet runs "
                    f"there (it runs {', '.join(sorted(running))})",
                    f"remove broker.{key}, or set runtime: {owners[0]} where it applies")


def broker_check(runtime: str) -> Callable:
    """The broker's runtime's own further rules: (doc, node, spec, placing) -> spec."""
    return declared(runtime).check_broker or (lambda doc, node, spec, placing: spec)
