"""A fleet deployed before names were per fleet keeps them; another fleet never takes them.

The old defaults (``hatchery-broker``, network ``hatchery``) are fixed names an
operator's real fleet may carry on this engine, so this module patches them to
names unique to the run (``OLD_DEFAULTS``, which the runtime reads) and makes
its "old" fleet with the command line under those names, as the code before
per-fleet names did. Then, in this process: the same inventory without names
finds its containers and keeps them (a deploy changes nothing and says so); a
second fleet with default names takes per-fleet ones; the documented step
(docs/operations.md, "Names on a shared engine") moves the old fleet over.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from dockerhelpers import client  # noqa: F401 (fixture)

from hatchery.core.plan import Action, apply_plan
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import DOCKER, OLD_DEFAULTS
from hatchery.provision.operations import deploy_plan
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import forget_connections, forget_names, old_names_kept, resolved_names

pytestmark = pytest.mark.docker
HATCHERY = Path(sys.executable).with_name("hatchery")
RUN = secrets.token_hex(3)
OLD = {"container_prefix": f"old{RUN}-", "container": f"old{RUN}-broker", "network": f"old{RUN}",
       "image": "hatchery/mosquitto:2.0.11"}
AGENT = f"o{RUN}-a"


def _inventory(root: Path, names_given: bool) -> Path:
    root.mkdir(exist_ok=True)
    port = (root / "port").read_text() if (root / "port").exists() else str(free_port())
    (root / "port").write_text(port)
    given = "".join(f"  {k}: {v}\n" for k, v in OLD.items()) if names_given else ""
    path = root / "fleet_inventory.yaml"
    path.write_text(f"broker:\n  runtime: docker\n  port: {port}\n{given}"
                    f"agents:\n  {AGENT}: {{runtime: docker, version_command: echo old}}\n")
    return path


def hatchery(path: Path, *args: str) -> str:
    done = subprocess.run([str(HATCHERY), *args, "-i", str(path)], capture_output=True, text=True,
                          timeout=600, cwd=path.parent)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def old_fleet(client, tmp_path_factory):
    """A fleet made under the (patched) old default names, then its inventory without names."""
    root = tmp_path_factory.mktemp("old-fleet")
    path = _inventory(root / "old", names_given=True)
    hatchery(path, "broker.deploy")
    hatchery(path, "agent.hatch")
    _inventory(root / "old", names_given=False)
    patch = pytest.MonkeyPatch()
    for key, value in OLD.items():
        patch.setitem(OLD_DEFAULTS, key, value)
    forget_names()
    yield path
    for inv_path in (path, root / "new" / "fleet_inventory.yaml"):
        if inv_path.exists():
            for_runtime(DOCKER).remove_fleet(load_inventory(inv_path))
    for_runtime(DOCKER).remove_fleet(load_inventory(_inventory(root / "old", names_given=True)))
    for image in client.images.list(name=f"hatchery/agent-{AGENT}"):
        client.images.remove(image.id, force=True)
    patch.undo()
    forget_names()
    forget_connections()


def test_the_old_fleet_keeps_its_names_and_a_deploy_changes_nothing_but_says_so(old_fleet, client):
    inv = load_inventory(old_fleet)
    assert inv.broker.container != OLD["container"]             # what the inventory alone would give
    kept = resolved_names(inv).broker
    assert (kept.container, kept.network, kept.container_prefix) == \
        (OLD["container"], OLD["network"], OLD["container_prefix"])
    report = apply_plan("broker.deploy", deploy_plan(inv))
    assert report.ok and not report.changed, [(r.item, r.action, r.reason) for r in report.changed]
    said = {r.item: r.reason for r in report.results}
    assert "kept from before names were per fleet" in said["docker names"]
    status = for_runtime(DOCKER).broker_status(inv)
    assert status["running"] and status["container"] == OLD["container"] and "kept" in status["names"]
    assert [s.detail["container"] for s in for_runtime(DOCKER).agent_list(inv)] == [f"{OLD['container_prefix']}agent-{AGENT}"]


def test_another_fleet_with_default_names_never_takes_the_old_ones(old_fleet, tmp_path):
    other = load_inventory(_inventory(old_fleet.parent.parent / "new", names_given=False))
    assert not old_names_kept(other)
    assert resolved_names(other).broker.container == other.broker.container != OLD["container"]


def test_the_documented_step_moves_the_old_fleet_to_per_fleet_names(old_fleet, client):
    # docs/operations.md: remove the old containers and network, forget the record, deploy again
    for container in client.containers.list(all=True, filters={"label": f"io.hatchery.fleet={OLD['container']}"}):
        container.remove(force=True)
    client.networks.get(OLD["network"]).remove()
    (old_fleet.parent / ".hatchery" / "docker-names.json").unlink(missing_ok=True)
    forget_names()
    inv = load_inventory(old_fleet)
    assert not old_names_kept(inv)
    assert apply_plan("broker.deploy", deploy_plan(inv)).ok
    assert client.containers.get(inv.broker.container).status == "running"
    assert (old_fleet.parent / ".hatchery" / "docker-names.json").exists()
