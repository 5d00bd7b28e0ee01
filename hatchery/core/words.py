"""Counted nouns for messages: ``1 agent``, ``2 agents``, never ``1 agents`` or ``agent(s)``."""

from __future__ import annotations

from typing import Optional, Union


def plural(count: Union[int, str], noun: str, many: Optional[str] = None) -> str:
    """``plural(1, 'agent')`` is '1 agent', ``plural(3, 'agent')`` '3 agents'; ``many``
    for a noun the English rules below get wrong. A count not known ('?') takes the plural."""
    return f"{count} {noun}" if count == 1 else f"{count} {many or _plural_of(noun)}"


def _plural_of(noun: str) -> str:
    head, _, last = noun.rpartition(" ")       # 'more field' -> 'more fields'
    if last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        word = last + "es"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word
