"""The runtime interface: every runtime implements all of ``runtime.base.Runtime``,
nothing outside ``hatchery/runtime`` reaches into a runtime, and the docker
package stays split by job. The local runtime's methods run against a real
broker and handler.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port

from agent_kit import contract
from hatchery.bus.connection import bus_for
from hatchery.core.plan import apply_plan
from hatchery.errors import RuntimeFailure
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import RUNTIMES
from hatchery.provision.operations import deploy_plan, hatch_plan
from hatchery.runtime import docker as docker_face
from hatchery.runtime import for_runtime
from hatchery.runtime import local as local_face
from hatchery.runtime import swarm as swarm_face
from hatchery.runtime.base import (
    INSTANCE_ENV,
    RUNTIME_CAPABILITIES,
    RUNTIME_METHODS,
    AgentState,
    Provenance,
    Runtime,
)

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIR = ROOT / "hatchery" / "runtime"
# What code outside hatchery/runtime may import from it: the interface and the packages' faces.
PUBLIC = {"hatchery.runtime", "hatchery.runtime.base", "hatchery.runtime.docker", "hatchery.runtime.local",
          "hatchery.runtime.swarm"}
FACES = {"hatchery.runtime.docker": docker_face, "hatchery.runtime.local": local_face,
         "hatchery.runtime.swarm": swarm_face}


def _shape(signature: inspect.Signature) -> list:
    # Annotations are strings under `from __future__ import annotations`: compare the call shape.
    return [(p.name, p.kind, p.default) for p in signature.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", RUNTIMES)
def test_each_runtime_implements_every_method_with_the_same_signature(name):
    runtime = for_runtime(name)
    assert isinstance(runtime, Runtime) and runtime.name == name
    assert len(RUNTIME_METHODS) >= 14
    for method in RUNTIME_METHODS:
        wanted = inspect.signature(getattr(Runtime, method))
        got = inspect.signature(getattr(runtime, method))
        assert _shape(got) == _shape(wanted), f"{name}.{method}{got} != Runtime.{method}{wanted}"


@pytest.mark.parametrize("name", RUNTIMES)
def test_each_runtime_declares_every_capability(name):
    """Callers read the flags, never the name: every runtime must say each one."""
    runtime = for_runtime(name)
    assert set(RUNTIME_CAPABILITIES) == {"restarts_crashed", "builds_images", "inspectable", "reschedules"}
    for flag in RUNTIME_CAPABILITIES:
        assert isinstance(vars(type(runtime)).get(flag), bool), f"{name} does not declare {flag}"


def test_an_unknown_runtime_is_a_usage_error():
    with pytest.raises(Exception, match="unknown runtime 'podman'") as caught:
        for_runtime("podman")
    assert caught.value.fix.startswith("use one of")


def _imports(path: Path) -> set:
    """Every module ``path`` imports, and ``module:name`` for each name it takes from one."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}:{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _reaches_in(imported: str) -> bool:
    module, _, name = imported.partition(":")
    if module in FACES and name:
        return name not in FACES[module].__all__        # only the documented face
    if module == "hatchery.runtime" and name:
        return name not in ("for_runtime", "Runtime", "docker", "local", "swarm")
    return module.startswith("hatchery.runtime.") and module not in PUBLIC


def test_nothing_outside_the_runtimes_reaches_into_them():
    outside = [p for folder in ("hatchery", "tests", "bench") for p in (ROOT / folder).rglob("*.py")
               if RUNTIME_DIR not in p.parents]
    reaching = {str(p.relative_to(ROOT)): sorted(i for i in _imports(p) if _reaches_in(i))
                for p in outside}
    assert not {k: v for k, v in reaching.items() if v}
    assert _reaches_in("hatchery.runtime.docker.engine") and _reaches_in("hatchery.runtime.local:agents")
    assert _reaches_in("hatchery.runtime.local.decide")


def _docker_modules() -> dict:
    return {f"hatchery.runtime.docker.{p.stem}": p for p in (RUNTIME_DIR / "docker").glob("*.py")
            if p.stem != "__init__"}


def test_the_docker_package_is_split_by_job_with_no_cycle():
    modules = _docker_modules()
    assert {"engine", "containers", "broker", "agents", "build", "bootstrap", "remote"} <= \
        {name.rsplit(".", 1)[1] for name in modules}
    too_long = {n: len(p.read_text().splitlines()) for n, p in modules.items()
                if len(p.read_text().splitlines()) >= 400}
    assert not too_long, too_long
    graph = {}
    for name, path in modules.items():
        imported = _imports(path)
        # `from hatchery.runtime.docker import build` imports the module build.py
        graph[name] = {m for m in imported if m in modules} | {
            f"hatchery.runtime.docker.{i.partition(':')[2]}" for i in imported
            if i.startswith("hatchery.runtime.docker:")}
        assert not graph[name] - set(modules), f"{name} imports the package face, not a module"
    _assert_acyclic(graph)


def _assert_acyclic(graph: dict) -> None:
    done, visiting = set(), []

    def visit(node):
        assert node not in visiting, f"import cycle: {' -> '.join(visiting + [node])}"
        if node in done:
            return
        visiting.append(node)
        for target in graph.get(node, ()):
            visit(target)
        visiting.pop()
        done.add(node)
    for node in graph:
        visit(node)


# --- the local runtime's newer methods, against a real broker and handler ----------------------

@pytest.fixture
def local_fleet(tmp_path):
    (tmp_path / "fleet_inventory.yaml").write_text(
        "fleet:\n  manager: zephyr\nbroker:\n  runtime: local\n  host: 127.0.0.1\n"
        f"  bind: 127.0.0.1\n  port: {free_port()}\nagents:\n  alpha:\n    heartbeat_interval: 30\n")
    inv = load_inventory(tmp_path / "fleet_inventory.yaml", env={})
    runtime = for_runtime("local")
    try:
        yield inv, runtime
    finally:
        runtime.remove_fleet(inv)


def test_local_status_inspect_exec_and_remove_fleet(local_fleet):
    inv, runtime = local_fleet
    alpha = inv.agent("alpha")
    assert runtime.agent_inspect(inv, alpha) is None                 # never started
    with pytest.raises(RuntimeFailure, match="not running"):
        runtime.exec_in_agent(inv, alpha, ["true"], timeout=2)
    assert apply_plan("deploy", deploy_plan(inv)).ok
    assert apply_plan("hatch", hatch_plan(inv, [alpha])).ok
    state = runtime.agent_state(inv, alpha)
    assert isinstance(state, AgentState) and state == runtime.agent_list(inv)[0]
    assert state.running and state.pid and state.status == "running" and state.host == "local"
    assert runtime.agent_inspect(inv, alpha)["pid"] == state.pid
    assert state.as_row()["agent"] == "alpha" and state.as_row()["log"].endswith("handler.log")
    # The handler's environment: agent_kit importable, the operator's HATCHERY_* not passed on.
    code, out = runtime.exec_in_agent(inv, alpha, [sys.executable, "-c", "import agent_kit; print('ok')"], 10)
    assert (code, out.strip()) == (0, "ok")
    code, _ = runtime.exec_in_agent(inv, alpha, ["sleep", "5"], timeout=0.3)
    assert code == 124
    assert runtime.verify_in_agent(inv, alpha) == [] and runtime.write_build_files(inv, [alpha]) == []
    runtime.remove_fleet(inv)
    assert runtime.agent_state(inv, alpha).running is False
    assert runtime.broker_status(inv)["running"] is False


def _retained_instance(inv, name: str, wanted: str, timeout: float = 10.0):
    """The instance in the agent's retained birth, once it is ``wanted`` (or the last seen)."""
    deadline, seen = time.monotonic() + timeout, None
    with bus_for(inv) as bus:
        while time.monotonic() < deadline:
            payload = bus.retained([contract.topic(name, "status")], timeout=2.0).get(contract.topic(name, "status"))
            seen = json.loads(payload).get("instance") if payload else None
            if seen == wanted:
                break
            time.sleep(0.2)
    return seen


def test_each_local_start_gets_an_instance_in_env_provenance_and_birth_never_in_argv(local_fleet):
    inv, runtime = local_fleet
    alpha = inv.agent("alpha")
    assert runtime.agent_provenance(inv, alpha) is None             # never started
    assert apply_plan("deploy", deploy_plan(inv)).ok
    assert apply_plan("hatch", hatch_plan(inv, [alpha])).ok
    state, record = runtime.agent_state(inv, alpha), runtime.agent_provenance(inv, alpha)
    assert isinstance(record, Provenance) and contract.INSTANCE_RE.fullmatch(state.instance)
    assert record.instance == state.instance and record.started == state.started_at
    assert abs(state.started_at - time.time()) < 60 and record.kit and record.config
    environ = Path(f"/proc/{state.pid}/environ").read_bytes().split(b"\0")
    assert f"{INSTANCE_ENV}={state.instance}".encode() in environ
    assert state.instance.encode() not in Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert state.instance not in (inv.state_dir / "agents" / "alpha" / "agent.json").read_text()
    assert _retained_instance(inv, "alpha", state.instance) == state.instance    # its birth says so
    # a restart is a new start: a new instance, and the config (and its hash) unchanged
    assert apply_plan("restart", runtime.agent_restart_plan(inv, alpha)).ok
    again = runtime.agent_state(inv, alpha)
    assert again.instance != state.instance and again.pid != state.pid
    assert runtime.agent_provenance(inv, alpha).config == record.config
    assert _retained_instance(inv, "alpha", again.instance) == again.instance
    assert hatch_plan(inv, [alpha])[-1].action == "none"             # an unchanged hatch changes nothing
    os.kill(again.pid, 9)
    deadline = time.monotonic() + 5
    while runtime.agent_state(inv, alpha).running and time.monotonic() < deadline:
        time.sleep(0.1)
    crashed = runtime.agent_state(inv, alpha)
    assert (crashed.running, crashed.status, crashed.instance, crashed.started_at) == (False, "exited", None, None)
