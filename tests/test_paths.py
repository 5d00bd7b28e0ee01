"""core.paths is the one module that spells out the state directory's layout."""

from __future__ import annotations

import ast
from pathlib import Path, PurePosixPath

from hatchery.configs.broker import auth_paths
from hatchery.runtime import for_runtime
from hatchery.core.paths import StatePaths, remote_root, state_paths
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory
from hatchery.provision import credentials

ROOT = Path(__file__).resolve().parents[1]
# Path pieces of the layout: `x / "<one of these>"` anywhere but core/paths.py spells it out again.
LAYOUT = {"broker", "agents", "secrets", "build", "tls", "config", ".lock", "passwd", "mosquitto.conf",
          "mosquitto.pid", "mosquitto.log", "mosquitto.stdout", "data", "agent.json", "handler.pid",
          "handler.log", "collect.log", "audit.log", ".hatchery", "ca.key", "ca.crt", "server.crt",
          "server.key"}
SUFFIXES = (".password", ".sigkey", ".retired")
# security/ is pure code that takes a directory: secret_path(secrets_dir, user) names the file in it.
KNOWN = {("hatchery/security/passwords.py", ".password")}


def _spelled_out(path: Path) -> set:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                and isinstance(node.right, ast.Constant) and node.right.value in LAYOUT:
            found.add(node.right.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(SUFFIXES):
            found.add(node.value)
    return found


def test_no_module_but_core_paths_spells_out_the_layout():
    spelled = {(p.relative_to(ROOT).as_posix(), piece)
               for p in (ROOT / "hatchery").rglob("*.py") if p.name != "paths.py" or p.parent.name != "core"
               for piece in _spelled_out(p)}
    assert spelled <= KNOWN, spelled - KNOWN


def test_the_layout_under_a_root_and_relative_to_it():
    paths, rel = StatePaths(Path("/s")), StatePaths.relative()
    assert str(paths.broker_conf) == "/s/broker/mosquitto.conf"
    assert str(rel.mounted_broker_conf) == "broker/config/mosquitto.conf"
    assert str(rel.mounted_agent_config("alpha")) == "agents/alpha/config/agent.json"
    assert str(rel.agent_secrets_dir("alpha")) == "agents/alpha/secrets"
    assert str(paths.lock) == "/s/.lock" and str(paths.build_dir("alpha")) == "/s/build/alpha"
    assert str(remote_root(PurePosixPath("/home/ops"), "f-broker")) == "/home/ops/.hatchery/f-broker"


def test_every_caller_asks_core_paths(tmp_path):
    inv = Inventory(path=tmp_path / "fleet_inventory.yaml", state_dir=tmp_path / ".hatchery",
                    broker=BrokerSpec(tls=True), agents={"alpha": AgentSpec("alpha")})
    paths = state_paths(inv)
    assert credentials.password_file(inv) == paths.password_file
    assert credentials.key_path(inv, "alpha") == paths.key_file("alpha")
    assert credentials.retired_marker(inv, "alpha") == paths.retired_marker("alpha")
    assert credentials.secret_path(inv, "alpha") == paths.secret_file("alpha")
    layout = for_runtime(inv.broker.runtime).broker_layout(inv)
    assert auth_paths(inv, layout)["acl_file"] == str(paths.broker_dir / "acl")
    assert layout.tls_files == {k: str(v) for k, v in paths.tls_files.items()}
