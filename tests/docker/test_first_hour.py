"""A new operator's first hour on a real engine with no registry: two fleets from nothing.

Both fleets use the defaults for every name (derived from each fleet's
identity) and the same agent name, on the one local engine. Their images are
hatchery's own under a tag unique to this run (``hatchery/mosquitto:2.0.11-<run>``,
``hatchery/agent-base:bookworm-<run>``: the recipes build a suffixed tag the
same way), so the engine lacks them as an empty engine would, and no image
another test or the operator uses is touched. Everything runs through the
command line, as the operator would; the finalizer removes both fleets and
the run's images.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port
from dockerhelpers import client  # noqa: F401 (fixture)

from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import DOCKER
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import forget_connections

pytestmark = pytest.mark.docker
HATCHERY = Path(sys.executable).with_name("hatchery")
RUN = secrets.token_hex(3)
BROKER_IMAGE = f"hatchery/mosquitto:2.0.11-t{RUN}"
BASE_IMAGE = f"hatchery/agent-base:bookworm-t{RUN}"
AGENT = f"f{RUN}-a"                 # the same agent name in both fleets
TIMES: dict = {}


def _write(root: Path) -> Path:
    root.mkdir()
    path = root / "fleet_inventory.yaml"
    path.write_text(f"broker:\n  runtime: docker\n  port: {free_port()}\n  image: {BROKER_IMAGE}\n"
                    f"agents:\n  {AGENT}:\n    runtime: docker\n    image: {BASE_IMAGE}\n"
                    f"    version_command: echo {root.name}\n")
    return path


@pytest.fixture(scope="module")
def fleets(client, tmp_path_factory):
    root = tmp_path_factory.mktemp("first-hour")
    paths = {name: _write(root / name) for name in ("one", "two")}
    yield paths
    for path in paths.values():
        for_runtime(DOCKER).remove_fleet(load_inventory(path))
    for repo in (f"hatchery/agent-{AGENT}", BASE_IMAGE, BROKER_IMAGE):     # children before parents
        for image in client.images.list(name=repo):
            client.images.remove(image.id, force=True)
    forget_connections()
    print(" ".join(f"{k}={v}s" for k, v in TIMES.items()))


def hatchery(path: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(HATCHERY), *args, "-i", str(path)], capture_output=True, text=True,
                          timeout=timeout, cwd=path.parent)


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_deploy_on_an_engine_without_the_broker_image_builds_it_and_says_so(fleets):
    started = time.monotonic()
    done = hatchery(fleets["one"], "broker.deploy")
    TIMES["deploy cold"] = round(time.monotonic() - started, 1)
    out = _ok(done)
    assert f"{BROKER_IMAGE}: not on the Docker engine; asking the registry" in done.stderr
    assert "no registry gave it" in done.stderr and "building hatchery's offline image" in done.stderr
    assert f"{BROKER_IMAGE} built offline in" in out


def test_a_second_fleet_finds_the_image_and_takes_names_of_its_own(fleets, client):
    out = _ok(hatchery(fleets["two"], "broker.deploy"))
    assert "built offline" not in out and "changed      broker" in out
    one, two = (load_inventory(p).broker for p in fleets.values())
    assert one.container != two.container and one.network != two.network
    assert {c.name for c in client.containers.list(filters={"label": "io.hatchery.role=broker"})} \
        >= {one.container, two.container}


def test_two_hatches_at_once_build_the_base_image_once(fleets):
    started = time.monotonic()
    runs = [subprocess.Popen([str(HATCHERY), "agent.hatch", "-i", str(p)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=p.parent) for p in fleets.values()]
    outs = [run.communicate(timeout=900) for run in runs]
    TIMES["two hatches cold"] = round(time.monotonic() - started, 1)
    for run, (out, err) in zip(runs, outs):
        assert run.returncode == 0, f"{out}\n{err}"
    built = [out for out, _ in outs if f"{BASE_IMAGE} built offline in" in out]
    found = [out for out, _ in outs if f"{BASE_IMAGE} found (another run made it meanwhile)" in out]
    assert (len(built), len(found)) == (1, 1), outs
    # and one agent image for both (same name, same context): built once, under the same lock
    assert sum("found (another run built it meanwhile)" in out for out, _ in outs) == 1, outs


def test_both_fleets_verify_with_the_same_agent_name(fleets, client):
    for name, path in fleets.items():
        out = _ok(hatchery(path, "verify"))
        assert "7/7 checks passed" in out, out
        answer = json.loads(_ok(hatchery(path, "fleet.version-report", "--json")))
        assert answer["items"][0]["result"]["version"] == name        # its own fleet's agent
    listed = [json.loads(_ok(hatchery(p, "agent.list", "--json")))["items"][0] for p in fleets.values()]
    assert listed[0]["container"] != listed[1]["container"]
    assert all(row["container"].endswith(f"-agent-{AGENT}") and row["running"] for row in listed)


def test_removing_one_fleet_leaves_the_other(fleets, client):
    two = load_inventory(fleets["two"])
    before = {c.name: c.attrs["State"]["StartedAt"] for c in _containers(client, two)}
    retired = _ok(hatchery(fleets["one"], "agent.retire", "--name", AGENT))
    assert "kept 1 image another fleet's container runs" in retired
    _ok(hatchery(fleets["one"], "broker.stop"))
    assert not _containers(client, load_inventory(fleets["one"]))
    assert {c.name: c.attrs["State"]["StartedAt"] for c in _containers(client, two)} == before
    assert "7/7 checks passed" in _ok(hatchery(fleets["two"], "verify"))


def _containers(client, inv) -> list:
    return client.containers.list(all=True, filters={"label": f"io.hatchery.fleet={inv.broker.container}"})
