"""The layer order of docs/ARCHITECTURE.md, enforced on every import in hatchery/.

The order is read from the document itself (the block after "Rooms import
downward only"), so the document and this test cannot drift apart. Every
import is found by walking the syntax tree, at module level and inside
functions alike (a lazy import is still an arrow), and it fails:

- an import of a higher room (or of another room on the same level);
- an import cycle between modules;
- a branch on a runtime's name outside hatchery/runtime/: a comparison with
  "local", "docker" or "swarm" (or the LOCAL/DOCKER/SWARM constants), or
  ``for_runtime("docker")``. Callers read a runtime's capabilities instead.

Run it as a script to count what it finds in any checkout (the figures of the
issue's before/after)::

    .venv/bin/python tests/test_layers.py [ROOT]
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_NAMES = {"local", "docker", "swarm"}
RUNTIME_CONSTANTS = {"LOCAL", "DOCKER", "SWARM"}
ANCHOR = "Rooms import downward only"
# Known exceptions, each with the branch that removes it. A test fails when one is no
# longer needed, so an exception cannot outlive its reason.
KNOWN_CYCLES: set = set()
KNOWN_PRIVATE: set = set()


# --- the order, from the document ---------------------------------------------------------

def layer_order(root: Path = ROOT) -> list:
    """[[room, ...], ...] bottom up, from the first code block after ANCHOR."""
    text = (root / "docs" / "ARCHITECTURE.md").read_text()
    after = text[text.index(ANCHOR):]
    block = re.search(r"```\n(.*?)```", after, re.S).group(1)
    block = re.sub(r"\([^)]*\)", "", block)        # "provision (credentials, tls)": the room is provision
    return [[room.strip() for room in level.split(",") if room.strip()]
            for level in block.replace("\n", " ").split("<")]


def room_levels(order: list) -> dict:
    return {room: index for index, level in enumerate(order) for room in level}


def room_of(module: str, levels: dict):
    """The most specific room a module is in (provision.operations before provision), or None."""
    parts = module.split(".")[1:]
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in levels:
            return ".".join(parts[:end])
    return None


# --- the imports --------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def modules(root: Path = ROOT) -> dict:
    """{dotted name: path} of every module under hatchery/ (a package by its __init__)."""
    found = {}
    for path in sorted((root / "hatchery").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def arrows(root: Path = ROOT) -> list:
    """Every import of one hatchery module by another, wherever it is written."""
    known = modules(root)
    found = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(_tree(path)):
            for target in _targets(node, package, known):
                if target != name:
                    found.append(Arrow(name, target, node.lineno))
    return found


def _targets(node, package: str, known: dict) -> list:
    if isinstance(node, ast.Import):
        return [_module(a.name, known) for a in node.names if a.name.startswith("hatchery")]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
    if not base.startswith("hatchery"):
        return []
    # `from hatchery.provision import operations` imports the module operations.py
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else _module(base, known) for a in node.names]


def _module(name: str, known: dict) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def upward(found: list, levels: dict) -> list:
    """The arrows that point up (or sideways, to another room on the same level), one per
    pair of modules."""
    bad = {}
    for arrow in found:
        source, target = room_of(arrow.source, levels), room_of(arrow.target, levels)
        if source is None or target is None or source == target:
            continue
        if levels[target] >= levels[source]:
            bad.setdefault((arrow.source, arrow.target), arrow)
    return list(bad.values())


def private_imports(root: Path = ROOT) -> list:
    """'module -> other:_name' for each private name one module takes from another."""
    found = []
    for name, path in modules(root).items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hatchery"):
                found += [f"{name} -> {node.module}:{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def cycles(found: list) -> list:
    """Each set of modules that import each other, round (Tarjan's strongly connected parts)."""
    graph: dict = {}
    for arrow in found:
        graph.setdefault(arrow.source, set()).add(arrow.target)
    index, low, stack, on_stack, parts = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                parts.append(sorted(part))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(parts)


# --- branches on a runtime's name ----------------------------------------------------------

def _names_a_runtime(node) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in RUNTIME_NAMES
    if isinstance(node, (ast.Name, ast.Attribute)):
        return (node.id if isinstance(node, ast.Name) else node.attr) in RUNTIME_CONSTANTS
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_names_a_runtime(e) for e in node.elts)
    return False


def name_branches(root: Path = ROOT) -> list:
    """'path:line: code' for each comparison with a runtime's name, or for_runtime(<a name>),
    outside hatchery/runtime/."""
    found = []
    runtime_dir = root / "hatchery" / "runtime"
    for path in sorted((root / "hatchery").rglob("*.py")):
        if runtime_dir in path.parents:
            continue
        source = path.read_text()
        for node in ast.walk(_tree(path)):
            if _is_name_branch(node):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    return found


def _is_name_branch(node) -> bool:
    if isinstance(node, ast.Compare):
        return any(_names_a_runtime(side) for side in [node.left, *node.comparators])
    if isinstance(node, ast.Call):
        called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        return called == "for_runtime" and any(_names_a_runtime(a) for a in node.args)
    return False


# --- the tests ------------------------------------------------------------------------------

def test_the_order_is_read_from_the_document():
    order = layer_order()
    flat = [room for level in order for room in level]
    assert flat[0] == "errors" and flat[-1] == "tasks" and len(flat) == len(set(flat))
    assert {"core", "inventory", "configs", "runtime", "provision.operations", "bus"} <= set(flat)
    every_room = {name.split(".")[1] for name in modules() if "." in name}
    assert every_room <= {room.split(".")[0] for room in flat}, "a room of hatchery/ is not in the order"


def test_no_import_points_up():
    levels = room_levels(layer_order())
    bad = upward(arrows(), levels)
    assert not bad, "imports of a higher room:\n" + "\n".join(
        f"{a}  [{room_of(a.source, levels)} -> {room_of(a.target, levels)}]" for a in bad)


def test_no_import_cycles():
    found = {tuple(part) for part in cycles(arrows())}
    assert not found - KNOWN_CYCLES, "import cycles:\n" + "\n".join(" <-> ".join(p) for p in found - KNOWN_CYCLES)
    assert not KNOWN_CYCLES - found, f"no longer a cycle, drop it from KNOWN_CYCLES: {KNOWN_CYCLES - found}"


def test_no_module_takes_a_private_name_from_another():
    found = set(private_imports())
    assert not found - KNOWN_PRIVATE, "use (or make) a public function instead:\n" + "\n".join(found - KNOWN_PRIVATE)
    assert not KNOWN_PRIVATE - found, f"fixed, drop it from KNOWN_PRIVATE: {KNOWN_PRIVATE - found}"


def test_no_branch_on_a_runtimes_name_outside_the_runtimes():
    found = name_branches()
    assert not found, "callers read capabilities, never a runtime's name:\n" + "\n".join(found)


def test_the_checks_can_fail():
    """Each check finds what it is meant to find (a check that cannot fail is a defect)."""
    levels = room_levels([["errors"], ["core"], ["inventory"]])
    assert upward([Arrow("hatchery.core.hosts", "hatchery.inventory.model", 1)], levels)
    assert not upward([Arrow("hatchery.inventory.model", "hatchery.core.plan", 1)], levels)
    assert cycles([Arrow("a", "b", 1), Arrow("b", "c", 1), Arrow("c", "a", 1)]) == [["a", "b", "c"]]
    for code in ('agent.runtime == "docker"', "x.runtime != DOCKER", 'r in ("local", "x")',
                 'for_runtime("docker")', "for_runtime(LOCAL)"):
        assert any(_is_name_branch(n) for n in ast.walk(ast.parse(code))), code
    assert not any(_is_name_branch(n) for n in ast.walk(ast.parse("for_runtime(agent.runtime).inspectable")))


def report(root: Path) -> dict:
    """The counts of a checkout (its own document's order)."""
    found = arrows(root)
    return {"name branches outside runtime/": name_branches(root),
            "upward import arrows": [str(a) for a in upward(found, room_levels(layer_order(root)))],
            "private names taken from another module": private_imports(root),
            "import cycles": [" <-> ".join(part) for part in cycles(found)]}


if __name__ == "__main__":
    for title, items in report(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT).items():
        print(f"{title}: {len(items)}")
        for item in items:
            print(f"  {item}")
