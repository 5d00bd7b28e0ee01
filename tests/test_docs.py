"""The documentation cannot rot: it is checked against the code and run.

- README.md is a front page: at most 200 lines; its quick start's two commands
  are the scripts, and .ci/run runs the test one.
- Every relative link in README.md and docs/*.md names a file that exists, and
  an anchor names a heading of it.
- docs/inventory.md documents every key the loader takes, each with the default
  the loader fills in and the runtimes that read it; and nothing else.
- The getting-started page's runnable parts (between ``<!-- docs-test: NAME -->``
  and ``<!-- /docs-test -->``) run here: each ``yaml fleet_inventory.yaml`` block
  is written to an empty directory (its port replaced by a free one) and each
  ``$ command`` of a ``console`` block runs there, through the installed
  ``hatchery``. Its output must be the page's, line for line, in the stable parts:
  a plan line's status, item and action; a check's name; tables and messages with
  numbers, hex ids, times and health words masked (and so a counted noun's plural:
  ``0 restarts`` is ``1 restart``). Progress lines (``  … ``, which
  depend on what the engine already holds) are left out on both sides.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from hatchery.core.plan import Action
from hatchery.inventory.fields import FLEET_FIELDS, GROUP_KEYS, HOST_FIELDS
from hatchery.inventory.keys import Schemas
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import DOCKER, fleet_tag
from hatchery.inventory.runtimes import DECLARED
from hatchery.inventory.runtimes import takers

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
MAX_README_LINES = 200


def _pages() -> list:
    return [README, *sorted(DOCS.glob("*.md"))]


# --- the front page and the links --------------------------------------------------------------

def test_the_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move the detail to docs/"


def test_the_readme_quick_start_commands_are_the_scripts_and_ci_runs_the_test_one():
    quick = re.search(r"## Quick start\n(.*?)\n## ", README.read_text(), flags=re.S).group(1)
    commands = re.findall(r"^(scripts/\S+)", re.search(r"```sh\n(.*?)```", quick, flags=re.S).group(1), flags=re.M)
    assert commands == ["scripts/quickstart", "scripts/test"], commands
    for command in commands:
        assert os.access(ROOT / command, os.X_OK), f"{command} is not an executable file"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert ci == ["scripts/test"], f".ci/run must run the README's test command, not {ci}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_every_relative_link_names_a_file_and_heading_that_exist(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue                    # http(s), mailto: not checked here
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, broken


# --- the inventory reference ---------------------------------------------------------------------

ROW_RE = re.compile(r"^\| `([a-z_.<>]+)` \| (.*?) \| (.*?) \| .* \|$", re.M)


def _documented() -> dict:
    return {key: (default.strip(), runtimes.strip())
            for key, default, runtimes in ROW_RE.findall((DOCS / "inventory.md").read_text())}


def _schema_keys() -> dict:
    """Every key the loader takes -> the runtimes that read it ('all' when every one does)."""
    schemas = Schemas.now()

    def who(key, broker=False):
        return ", ".join(takers(key, broker=broker)) or "all"
    keys = {f"fleet.{k}": "all" for k in FLEET_FIELDS}
    keys.update({f"broker.{k}": who(k, broker=True) for k in schemas.broker})
    keys.update({f"agents.<name>.{k}": who(k) for k in schemas.agent})
    keys.update({f"groups.<group>.{k}": "all" for k in GROUP_KEYS})
    keys.update({f"hosts.<host>.{k}": DOCKER for k in HOST_FIELDS})
    for section in schemas.sections:
        keys[f"{section}"] = ", ".join(n for n, d in DECLARED.items() if section in d.sections)
    return keys


def test_the_inventory_reference_documents_every_key_and_only_those():
    documented, schema = _documented(), _schema_keys()
    assert sorted(set(schema) - set(documented)) == [], "keys the loader takes but docs/inventory.md lacks"
    assert sorted(set(documented) - set(schema)) == [], "keys docs/inventory.md names but the loader refuses"
    wrong = {k: (documented[k][1], who) for k, who in schema.items() if documented[k][1] != who}
    assert not wrong, "the runtime column disagrees with the runtimes' declarations"


def _shown(value, inv) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (tuple, list)):
        value = list(value)
    text = str(value)
    tag = fleet_tag(inv.manager, inv.state_dir)
    return text.replace(tag, f"{inv.manager}-<hash>").replace(f"-{inv.manager}-", "-<manager>-")


def test_the_inventory_reference_gives_the_defaults_the_loader_fills_in(tmp_path):
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text("broker: {runtime: docker}\nagents:\n  a: {runtime: docker}\n  b: {}\n")
    inv = load_inventory(path)
    actual = {f"fleet.manager": inv.manager, "fleet.state_dir": ".hatchery",
              **{f"broker.{k}": getattr(inv.broker, k, inv.broker.options.get(k)) for k in Schemas.now().broker},
              **{f"agents.<name>.{k}": getattr(inv.agents["a"], k, inv.agents["a"].options.get(k))
                 for k in Schemas.now().agent if k != "runtime"},
              "agents.<name>.runtime": inv.agents["b"].runtime, "broker.runtime": "local"}
    wrong = {}
    for key, value in actual.items():
        cell = _documented()[key][0]
        literal = re.match(r"`([^`]*)`", cell)
        shown = _shown(value, inv)
        if (literal.group(1) if literal else cell.split()[0]) != shown:
            wrong[key] = (cell, shown)
    assert not wrong, "docs/inventory.md's default (left) is not what the loader fills in (right)"


# --- the getting-started page, run ---------------------------------------------------------------

SECTION_RE = re.compile(r"<!-- docs-test: ([\w-]+) -->(.*?)<!-- /docs-test -->", re.S)
BLOCK_RE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)
STATUSES = ("ok", "changed", "would change", "failed")
ACTIONS = {a.value for a in Action}


def sections(page: Path) -> dict:
    return {name: body for name, body in SECTION_RE.findall(page.read_text())}


def steps(body: str) -> list:
    """[("file", name, text) | ("run", command, expected output lines)] in page order."""
    found = []
    for kind, info, text in BLOCK_RE.findall(body):
        if kind == "yaml" and info.strip():
            found.append(("file", info.strip(), text))
        elif kind == "console":
            for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
                command, _, output = chunk.partition("\n")
                found.append(("run", command, output.splitlines()))
    return found


def stable(lines: list) -> list:
    """The lines' stable parts (see the module's docstring); progress lines dropped."""
    kept = []
    for line in lines:
        if line.startswith("  … ") or not line.strip():
            continue
        parts = re.split(r"\s{2,}", line.strip())
        if parts[0] in STATUSES and len(parts) > 1:
            action = parts[2] if parts[0] != "ok" and len(parts) > 2 and parts[2] in ACTIONS else ""
            line = f"{parts[0]} {parts[1]} {action}"
        elif line.lstrip().startswith(("✓", "✗")):
            line = line.split(" — ")[0]
        if not re.match(r"ok=\d+", line):
            line = re.sub(r"\b(?=[0-9a-f]*\d)[0-9a-f]{6,}\b", "#", line)
            line = re.sub(r"\d+", "0", re.sub(r"\b(starting|healthy|unhealthy)\b", "health", line))
            line = re.sub(r"\b(0 [a-z]+?)(?:e?s)?\b", r"\1", line)     # '1 restart' is '0 restarts'
        kept.append(" ".join(line.split()))
    return kept


def run_section(body: str, workdir: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    port = free_port()
    for kind, what, content in steps(body):
        if kind == "file":
            (workdir / what).write_text(re.sub(r"\bport: \d+", f"port: {port}", content))
            continue
        done = subprocess.run(["bash", "-c", f"exec 2>&1; {what}"], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=900)
        got = done.stdout.splitlines()
        assert "exit $?" in what or done.returncode == 0, f"$ {what}: exit {done.returncode}\n{done.stdout}"
        assert stable(got) == stable(content), f"$ {what}: the page says\n" + "\n".join(content) + \
            "\n\nbut it printed\n" + "\n".join(got)


def test_the_stable_parts_mask_what_changes_between_runs():
    page = ["  changed      agent scout              create   no container; built hatchery/agent-scout:82dac0ad181b18a1 in 5.4s",
            "  … hatchery/agent-base:bookworm: not on the Docker engine; asking the registry",
            "  ✓ agent scout: the bus agrees with the Docker API (running (starting), 0 restarts) — both say up  (23.86 ms)",
            "scout   answered  15.83   Python 3.11.2", "ok=0  changed=2  failed=0"]
    run = ["  changed      agent scout              create   network exists; container 3545227deb4d started",
           "  ✓ agent scout: the bus agrees with the Docker API (running (healthy), 1 restart) — both say up  (2.1 ms)",
           "scout  answered  9.1  Python 3.11.7", "ok=0  changed=2  failed=0"]
    assert stable(page) == stable(run)
    assert stable(["ok=0  changed=2  failed=0"]) != stable(["ok=1  changed=1  failed=0"])
    assert stable(["  changed      agent scout              create   x"]) != \
        stable(["  changed      agent scout              recreate   x"])


def test_a_local_fleet_runs_as_the_getting_started_page_says(tmp_path):
    run_section(sections(DOCS / "getting-started.md")["local"], tmp_path)


@pytest.fixture
def docker_fleet_dir(tmp_path):
    """The docker walkthrough's directory; its fleet and agent images removed afterwards."""
    from hatchery.core.plan import apply_plan
    from hatchery.runtime import for_runtime
    from hatchery.runtime.docker import bootstrap_images, engine, forget_connections
    client = engine(None)
    assert apply_plan("images", bootstrap_images(client)).ok     # the default images, as on a used engine
    yield tmp_path
    inv = load_inventory(tmp_path / "fleet_inventory.yaml")
    for_runtime(DOCKER).remove_fleet(inv)
    in_use = {c.attrs.get("ImageID") for c in client.containers.list(all=True, sparse=True)}
    for name in inv.agents:
        for image in client.images.list(name=f"hatchery/agent-{name}"):
            if image.id not in in_use:     # another run's fleet may share the agent's image
                for tag in image.tags:
                    client.images.remove(tag)
    forget_connections()


@pytest.mark.docker
def test_a_docker_fleet_runs_as_the_getting_started_page_says(docker_fleet_dir):
    run_section(sections(DOCS / "getting-started.md")["docker"], docker_fleet_dir)
