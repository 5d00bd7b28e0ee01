"""hatchery on a real three-node Docker Swarm: three dockerds in network namespaces
(tests/hosts/netns.py), reached over SSH like real hosts, one swarm shared by every
test of this module (forming one takes seconds, starting three engines more).

The tests run in order: the swarm is formed, then used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hatchery.core.plan import apply_plan
from hatchery.inventory.load import load_inventory
from hatchery.runtime.docker import bootstrap_images, engine, forget_connections

sys.path.insert(0, str(Path(__file__).parents[1] / "hosts"))
from netns import MultiHost  # noqa: E402

pytestmark = pytest.mark.docker
FIGURES: dict = {}
AGENT_IMAGE = "hatchery/agent-base:bookworm-clients"   # python3 + mosquitto-clients, built offline
BROKER_IMAGE = "hatchery/mosquitto:2.0.11"
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(Path(__file__).parents[2])]


@pytest.fixture(scope="module")
def hosts():
    report = apply_plan("images", bootstrap_images(engine(None), which=("broker", "agent-clients")))
    assert report.ok, [r.error for r in report.failed]
    multi = MultiHost(count=3, swarm=True)
    try:
        started = time.monotonic()
        multi.start()
        FIGURES["three engines started (s)"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        multi.load_images(AGENT_IMAGE, BROKER_IMAGE)
        FIGURES["images loaded on three nodes, in parallel (s)"] = round(time.monotonic() - started, 1)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in multi.env().items():
                patch.setenv(key, value)
            patch.delenv("SSH_AUTH_SOCK", raising=False)
            yield multi
            forget_connections()
    finally:
        multi.close()
        print(FIGURES)
    assert multi.leftovers() == []


def fleet_yaml(multi: MultiHost) -> str:
    tag = multi.tag
    zones = {"h1": "a", "h2": "b", "h3": "b"}
    hosts = "".join(f"  {h.name}: {{docker_host: \"{h.docker_host}\", remote_dir: \"{h.remote_dir}\", "
                    f"labels: {{zone: {zones[h.name]}}}}}\n" for h in multi.hosts)
    return "hosts:\n" + hosts + textwrap.dedent(f"""\
        swarm: {{managers: [h1, h2, h3]}}
        fleet: {{manager: zephyr, state_dir: .hatchery}}
        broker:
          runtime: swarm
          tls: true
          image: {BROKER_IMAGE}
          network: hty-{tag}-net
          container: hty-{tag}-broker
          container_prefix: hty-{tag}-
        agents: {{}}
        """)


@pytest.fixture(scope="module")
def fleet(hosts, tmp_path_factory):
    path = tmp_path_factory.mktemp("fleet") / "fleet_inventory.yaml"
    path.write_text(fleet_yaml(hosts))
    return load_inventory(path, env={})


def cli(fleet, *args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEET_INVENTORY": str(fleet.path), "NO_COLOR": "1"}
    return subprocess.run([*INVOKE, *args], capture_output=True, text=True, env=env, timeout=timeout)


def cli_json(fleet, *args, code=0) -> dict:
    run = cli(fleet, *args, "--json")
    assert run.returncode == code, run.stdout + run.stderr
    return json.loads(run.stdout)


def by_item(envelope: dict) -> dict:
    return {i["item"]: i for i in envelope["items"]}


def test_swarm_up_forms_the_swarm_and_a_second_run_changes_nothing(hosts, fleet):
    check = by_item(cli_json(fleet, "swarm.up", "--check"))
    assert check["node h1"]["action"] == "init" and check["node h1"]["status"] == "would change"
    assert [check[f"node {h}"]["action"] for h in ("h2", "h3")] == ["join", "join"]
    assert not hosts.docker(hosts.hosts[0], "info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() == "active"

    started = time.monotonic()
    up = cli_json(fleet, "swarm.up")
    FIGURES["swarm.up, 3 managers (s)"] = round(time.monotonic() - started, 1)
    assert up["ok"] and up["changed"] == 3, up["items"]

    again = cli_json(fleet, "swarm.up")
    assert again["changed"] == 0 and again["failed"] == 0, again["items"]

    status = cli_json(fleet, "swarm.status")
    rows = {r["host"]: r for r in status["items"]}
    assert set(rows) == {"h1", "h2", "h3"} and status["heartbeat_s"] == 2.0
    assert {(r["role"], r["state"], r["availability"]) for r in rows.values()} == {("manager", "ready", "active")}
    assert rows["h1"]["reachability"] == "reachable (leader)"
    assert rows["h2"]["address"] == hosts.hosts[1].address
    labels = hosts.docker(hosts.hosts[0], "node", "inspect", "-f", "{{json .Spec.Labels}}", "self").stdout
    assert json.loads(labels) == {"zone": "a", "hatchery.host": "h1"}


def test_labels_follow_the_inventory(hosts, fleet):
    h3 = hosts.hosts[2]
    node = hosts.docker(h3, "info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
    hosts.docker(h3, "node", "update", "--label-add", "by-hand=x", "--label-rm", "zone", node)
    diff = cli(fleet, "swarm.up", "--check", "--diff")
    assert diff.returncode == 0 and "-by-hand=x" in diff.stdout and "+zone=b" in diff.stdout, diff.stdout
    fixed = by_item(cli_json(fleet, "swarm.up"))
    assert fixed["node h3"]["action"] == "label" and fixed["node h3"]["status"] == "changed"
    labels = hosts.docker(h3, "node", "inspect", "-f", "{{json .Spec.Labels}}", "self").stdout
    assert json.loads(labels) == {"zone": "b", "hatchery.host": "h3"}
