"""Which agents a task acts on: ``--name``, ``--pattern`` and ``--group``.

Each flag takes a comma-separated list whose entries are alternatives
(``--name a,b`` is a or b). Flags given together narrow each other: an agent
is chosen when it satisfies every flag given (``--group warm --pattern
'client-*'`` is the warm agents whose name matches ``client-*``). No flag at
all chooses every agent. The result keeps the order of the group listing with
``--group``, else the inventory's order.

A name that is not in the inventory is answered with the closest few names,
never with the whole fleet.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Iterable, Optional, Union

from hatchery.core.words import plural
from hatchery.errors import UsageError

MAX_SUGGESTIONS = 3
MAX_LISTED = 5              # a fleet this small is listed when nothing is close
MAX_ENTRIES = 1000          # a selector longer than this is a mistake, not a fleet
Spec = Optional[Union[str, Iterable[str]]]


def entries(value: Spec) -> list:
    """``'a, b'`` or ``['a', 'b']`` to ``['a', 'b']``; empty entries dropped."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    cleaned = [p.strip() for p in parts if p and p.strip()]
    if len(cleaned) > MAX_ENTRIES:
        raise UsageError(f"{len(cleaned)} entries in one selector; at most {MAX_ENTRIES}",
                         "use --group or --pattern for large sets")
    return cleaned


def suggest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> list:
    """The closest few of ``choices`` to ``word``, closest first.

    A choice equal but for case comes first (``Client-A`` -> ``client-a``); the
    rest are ranked by difflib's ratio, ignoring case, ties in the choices' order
    (difflib's own ``get_close_matches`` breaks ties by reverse alphabet, which
    put ``client-b`` before ``client-a``).
    """
    folded = word.casefold()
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(folded)
    scored = []
    for index, choice in enumerate(choices):
        if choice == word:
            continue
        matcher.set_seq1(choice.casefold())
        if choice.casefold() == folded:
            scored.append((2.0, index, choice))
        elif matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff \
                and matcher.ratio() >= cutoff:
            scored.append((matcher.ratio(), index, choice))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [choice for _, _, choice in scored[:MAX_SUGGESTIONS]]


def unknown(kind: str, word: str, choices: Iterable[str], where) -> UsageError:
    """'agent 'clinet-a' is not in fleet.yaml' with 'did you mean client-a?'."""
    choices = list(choices)
    close = suggest(word, choices)
    if close:
        fix = f"did you mean {' or '.join(close)}?"
    elif 0 < len(choices) <= MAX_LISTED or (choices and kind != "agent"):
        fix = f"use one of: {', '.join(choices[:MAX_LISTED])}" + \
            (" ..." if len(choices) > MAX_LISTED else "")
    elif choices:
        fix = f"{plural(len(choices), 'agent')} in the inventory; see them with: invoke agent.list"
    else:
        fix = f"the inventory has no {kind}s yet"
    return UsageError(f"{kind} {word!r} is not in {where}", fix)


def select_agents(inv, *, names: Spec = None, pattern: Spec = None, group: Spec = None,
                  host: Spec = None) -> list:
    """The AgentSpecs chosen by the selectors: group order with --group, else inventory order.

    Linear in the fleet: each selector is one set lookup or one compiled match per agent.
    """
    chosen = _group_members(inv, entries(group)) if entries(group) else list(inv.agents)
    wanted = entries(names)
    for name in wanted:
        if name not in inv.agents:
            raise unknown("agent", name, inv.agents, inv.path)
    if wanted:
        wanted_set = set(wanted)
        chosen = [n for n in chosen if n in wanted_set]
    globs = entries(pattern)
    if globs:
        matches = re.compile("|".join(fnmatch.translate(p) for p in globs)).match
        chosen = [n for n in chosen if matches(n)]
    hosts = entries(host)
    if hosts:
        chosen = _on_hosts(inv, chosen, hosts)
    if not chosen and (wanted or group or globs or hosts):
        raise UsageError(f"no agent matches {describe(names=names, pattern=pattern, group=group, host=host)}",
                         "--name, --pattern, --group and --host narrow each other; "
                         "see the names with: invoke agent.list")
    return [inv.agents[n] for n in chosen]


def _group_members(inv, groups: list) -> list:
    members: dict = {}                 # ordered, and a repeat costs one lookup
    for g in groups:
        if g not in inv.groups:
            raise unknown("group", g, inv.groups, inv.path)
        members.update(dict.fromkeys(inv.groups[g]))
    return list(members)


def select_names(inv, **selectors) -> list:
    return [a.name for a in select_agents(inv, **selectors)]


def _on_hosts(inv, chosen: list, hosts: list) -> list:
    """``--host``: the agents that run on one of ``hosts`` (names under hosts:, engine
    addresses, 'local'). The known hosts are worked out once, not once per agent."""
    from hatchery.inventory.placement import host_of, known_hosts
    known = known_hosts(inv)
    for name in hosts:
        if name not in known:
            raise unknown("host", name, known, inv.path)
    wanted = set(hosts)
    return [n for n in chosen if host_of(inv, inv.agents[n]) in wanted]


def describe(*, names: Spec = None, pattern: Spec = None, group: Spec = None, host: Spec = None) -> str:
    """The selectors as the operator typed them, for messages."""
    given = [(flag, entries(v)) for flag, v in (("--name", names), ("--pattern", pattern),
                                                 ("--group", group), ("--host", host))]
    return " ".join(f"{flag} {','.join(v)}" for flag, v in given if v) or "(all agents)"
