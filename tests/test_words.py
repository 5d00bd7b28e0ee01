"""Counted nouns in messages: ``1 secret issued``, ``6 secrets issued``, never ``secret(s)``."""

import ast
import re
from pathlib import Path

import pytest

from hatchery.core.words import plural

ROOT = Path(__file__).resolve().parents[1]
HEDGE = re.compile(r"[a-z]\(s\)")           # 'agent(s)'; the URL scheme 'http(s)' is no hedge


@pytest.mark.parametrize("count, noun, many, text", [
    (0, "agent", None, "0 agents"), (1, "agent", None, "1 agent"), (2, "agent", None, "2 agents"),
    (1, "entry", None, "1 entry"), (3, "entry", None, "3 entries"), (2, "match", None, "2 matches"),
    (2, "key", None, "2 keys"), (4, "more field", None, "4 more fields"), (2, "child", "children", "2 children"),
    (1, "old secret/config version", None, "1 old secret/config version"),
    (0, "old secret/config version", None, "0 old secret/config versions"),
    (1, "secret/config", "secrets/configs", "1 secret/config"),
    (5, "secret/config", "secrets/configs", "5 secrets/configs"),
    ("?", "rotated file", None, "? rotated files"),
])
def test_plural(count, noun, many, text):
    assert plural(count, noun, many) == text


def test_runtime_text_counts_restarts_in_the_singular_for_one():
    from hatchery.observe.crosscheck import runtime_text
    from hatchery.runtime.base import AgentState
    texts = [runtime_text(AgentState("a", "docker", True, status="running", restarts=n)) for n in (0, 1, 3)]
    assert texts == ["running, 0 restarts", "running, 1 restart", "running, 3 restarts"]


def _strings(path: Path):
    """Every string literal of a module but its docstrings, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value


def _templates():
    """Every line of a rendered template, with its line."""
    for path in sorted((ROOT / "templates").rglob("*.j2")):
        for line, text in enumerate(path.read_text().splitlines(), 1):
            yield path, line, text


def test_no_message_hedges_its_count_with_s_in_brackets():
    strings = [(path, line, text) for package in ("hatchery", "agent_kit")
               for path in sorted((ROOT / package).rglob("*.py")) for line, text in _strings(path)]
    hedged = [f"{path.relative_to(ROOT)}:{line}: {text.strip()[:60]!r}"
              for path, line, text in strings + list(_templates()) if HEDGE.search(text.replace("http(s)", ""))]
    assert not hedged, "say it with hatchery.core.words.plural instead:\n" + "\n".join(hedged)
