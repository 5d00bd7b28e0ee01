"""No test touches the operator's own fleet in the checkout.

scripts/quickstart runs the repository's ./fleet_inventory.yaml with its state
in ./.hatchery/ (broker, secrets, control socket), and the README invites the
operator to edit that file. The suite must pass beside that fleet and never
read, stop or reconfigure it. This module reads every test module and refuses:

- a path to ``fleet_inventory.yaml`` or ``.hatchery`` under a directory computed
  from ``__file__`` (ROOT, REPO, ...) or ``hatchery.core.assets.PROJECT_ROOT``;
- a relative ``Path("fleet_inventory.yaml")`` or ``Path(".hatchery...")``;
- an ``Inventory(...)`` built without ``state_dir=`` (the default is the relative
  ``.hatchery``, which resolves in whatever the working directory is);
- a subprocess run with ``cwd=`` the checkout (the default inventory is ./fleet_inventory.yaml).

conftest.py also runs every test in an empty working directory, as a second net.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FORBIDDEN = ("fleet_inventory.yaml", ".hatchery")
REPO_NAMES = {"PROJECT_ROOT"}           # hatchery.core.assets' name for the checkout


def _mentions(node, names: set) -> bool:
    """The expression uses ``__file__`` or one of ``names`` (paths computed from them)."""
    return any(isinstance(n, ast.Name) and (n.id == "__file__" or n.id in names)
               for n in ast.walk(node))


def _derived_names(tree) -> set:
    """Every name assigned a path computed from ``__file__`` (ROOT, REPO, HERE, ...)."""
    names = set(REPO_NAMES)
    assignments = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))]
    grew = True
    while grew:
        grew = False
        for node in assignments:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and _mentions(node.value, names):
                for target in targets:
                    for name in (n.id for n in ast.walk(target) if isinstance(n, ast.Name)):
                        grew |= name not in names
                        names.add(name)
    return names


def _forbidden(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) \
        and node.value.strip("/").split("/")[0] in FORBIDDEN


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def findings(source: str, filename: str = "<test>") -> list:
    """``file:line: what`` for every use of the checkout's own inventory or state dir."""
    tree = ast.parse(source, filename)
    derived = _derived_names(tree)
    found = []

    def report(node, what):
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _forbidden(node.right) \
                and _mentions(node.left, derived):
            report(node, f"{node.right.value!r} under the checkout")
        elif isinstance(node, ast.Call):
            name, args = _call_name(node), node.args
            if name in ("Path", "PurePath", "PosixPath") and len(args) == 1 and _forbidden(args[0]):
                report(node, f"relative Path({args[0].value!r}): the working directory's")
            if name == "join" and args and _mentions(args[0], derived) and any(map(_forbidden, args[1:])):
                report(node, "os.path.join into the checkout's inventory or state dir")
            if name == "Inventory" and not any(k.arg == "state_dir" for k in node.keywords):
                report(node, "Inventory(...) without state_dir= (defaults to the relative .hatchery)")
            for keyword in node.keywords:
                if keyword.arg == "cwd" and _mentions(keyword.value, derived):
                    report(node, "a subprocess run in the checkout (its ./fleet_inventory.yaml)")
    return found


def test_no_test_module_uses_the_checkouts_inventory_or_state_dir():
    modules = sorted(TESTS.rglob("*.py"))
    assert len(modules) > 50
    found = [f for path in modules for f in findings(path.read_text(encoding="utf-8"),
                                                     str(path.relative_to(TESTS)))]
    assert found == []


@pytest.mark.parametrize("line, what", [
    ('ROOT = Path(__file__).resolve().parents[1]\ninv = load_inventory(ROOT / "fleet_inventory.yaml")',
     "'fleet_inventory.yaml' under the checkout"),
    ('REPO = Path(__file__).parent.parent\nsecrets = REPO / ".hatchery" / "secrets"', "'.hatchery'"),
    ('HERE = Path(__file__).parent\nTOP = HERE.parent\nx = TOP / ".hatchery/broker"', "'.hatchery/broker'"),
    ('from hatchery.core.assets import PROJECT_ROOT\np = PROJECT_ROOT / "fleet_inventory.yaml"', "under"),
    ('p = Path("fleet_inventory.yaml")', "relative Path"),
    ('p = Path(".hatchery/agents")', "relative Path"),
    ('R = os.path.dirname(__file__)\np = os.path.join(R, "..", ".hatchery")', "os.path.join"),
    ('inv = Inventory(Path("/x.yaml"), agents={})', "without state_dir"),
    ('ROOT = Path(__file__).parents[1]\nsubprocess.run(["invoke", "agent.stop"], cwd=ROOT)', "subprocess"),
])
def test_the_check_catches_each_way_in(line, what):
    [finding] = findings(line)
    assert what in finding


def test_the_check_leaves_hermetic_code_alone():
    good = ('ROOT = Path(__file__).resolve().parents[1]\n'
            'INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]\n'
            'path = tmp_path / "fleet_inventory.yaml"\nstate = tmp_path / ".hatchery"\n'
            'inv = Inventory(path, state_dir=tmp_path / ".hatchery")\n'
            'cases = ROOT / "tests" / "inventory_cases"\n'
            'subprocess.run(INVOKE + ["agent.list"], cwd=tmp_path)\n')
    assert findings(good) == []


def test_tests_run_outside_the_checkout():
    checkout = TESTS.parent
    assert checkout not in [Path.cwd().resolve(), *Path.cwd().resolve().parents]
