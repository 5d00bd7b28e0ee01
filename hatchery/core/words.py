"""Words in messages: counted nouns (``1 agent``, ``2 agents``, never ``1 agents`` or
``agent(s)``), and ``Word``, the base of our closed sets of words (Action, Intent, Verdict)."""

from __future__ import annotations

from enum import Enum
from typing import Optional, Union


class Word(str, Enum):
    """A closed set of words, each member its own text: it prints, formats, compares and
    serialises as its value ("restart"), on every Python we support."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


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
