"""A fleet on three hosts: three Docker engines, each in its own network namespace with
its own address and sshd; the control side (this process) reaches them over SSH only.

The broker runs on h1 with TLS; agents run on h2 and h3 and reach it by its DNS name
(mapped to h1's address) over TLS, verifying the fleet CA, with their own credentials.
Then h3's engine stops: its agent is reported, and h2's keeps answering.
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

from hatchery.bus.commands import run_command
from hatchery.core.hosts import apply_per_host
from hatchery.core.plan import apply_plan
from hatchery.inventory.load import load_inventory
from hatchery.observe.verify import verify
from hatchery.provision.operations import deploy_plan, hatch_plans
from hatchery.runtime.docker import bootstrap_images, engine

sys.path.insert(0, str(Path(__file__).parent))
from answering import wait_answering  # noqa: E402
from netns import MultiHost  # noqa: E402

pytestmark = pytest.mark.docker
FIGURES: dict = {}


AGENT_IMAGE = "hatchery/agent-base:bookworm-clients"   # python3 + mosquitto-clients, built offline


@pytest.fixture(scope="module")
def hosts():
    # The hosts have no registry and no Debian mirror: the image is built here (kept across
    # runs) and reaches them by docker save | load over SSH.
    report = apply_plan("images", bootstrap_images(engine(None), which=("broker", "agent-clients")))
    assert report.ok, [r.error for r in report.failed]
    multi = MultiHost(count=3)
    try:
        multi.start()
        with multi.control_side():
            yield multi
    finally:
        multi.close()


def fleet_yaml(multi: MultiHost, tag: str) -> str:
    h1, h2, h3 = multi.hosts
    host = lambda h: f"  {h.name}: {{docker_host: \"{h.docker_host}\", remote_dir: \"{h.remote_dir}\", labels: {{n: {h.name}}}}}\n"  # noqa: E731
    return ("hosts:\n" + host(h1) + host(h2) + host(h3) + textwrap.dedent(f"""\
        fleet: {{manager: zephyr, state_dir: .hatchery}}
        broker:
          on_host: h1
          bind: 0.0.0.0
          tls: true
          image: hatchery/mosquitto:2.0.11
          network: hty-{tag}-net
          container: hty-{tag}-broker
          container_prefix: hty-{tag}-
        groups:
          far: {{agents: [a3], vars: {{host: h3}}}}
        agents:
          a2: {{host: h2, version_command: "echo two", heartbeat_interval: 30, image: {AGENT_IMAGE}}}
          a3: {{version_command: "echo three", heartbeat_interval: 30, image: {AGENT_IMAGE}}}
        """))


@pytest.fixture(scope="module")
def fleet(hosts, tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    path = root / "fleet_inventory.yaml"
    path.write_text(fleet_yaml(hosts, hosts.tag))
    return load_inventory(path, env={})


def _apply(title: str, changes: list):
    report = apply_plan(title, changes)
    assert report.ok, [(r.item, r.error) for r in report.failed]
    return report


def _hatch(fleet):
    common, per_host = hatch_plans(fleet, list(fleet.agents.values()))
    return apply_per_host("agent.hatch", common, per_host)


def test_broker_on_h1_agents_on_h2_and_h3_over_tls(hosts, fleet):
    started = time.monotonic()
    _apply("broker.deploy", deploy_plan(fleet))
    FIGURES["broker deploy on h1, cold (s)"] = round(time.monotonic() - started, 1)
    report = _hatch(fleet)
    assert report.ok, [(r.item, r.error) for r in report.failed]
    assert set(report.hosts) == {"h2", "h3"}
    for host, summary in report.hosts.items():
        assert summary["changed"] == 1 and summary["failed"] == 0, (host, summary)
        FIGURES[f"hatch {host}, cold (s)"] = summary["seconds"]
    details = " ".join(r.detail for r in report.results)
    assert "(save | load)" in details          # the base image reached each host without a registry
    warm = _hatch(fleet)
    assert warm.ok and not warm.changed, [(r.item, r.action, r.reason) for r in warm.changed]
    for host, summary in warm.hosts.items():
        FIGURES[f"hatch {host}, warm (s)"] = summary["seconds"]

    wait_answering(fleet, ["a2", "a3"], within=30)    # the handlers connect after the hatch
    result = verify(fleet, timeout=10)
    failed = [(c.name, c.detail) for c in result.checks if not c.ok]
    assert result.ok, failed
    names = [c.name for c in result.checks]
    assert any(n.startswith("TLS listener") for n in names)
    for agent, host in (("a2", "h2"), ("a3", "h3")):
        assert f"agent {agent} on {host}: mqtt-broker resolves in the container" in names
        assert f"agent {agent} on {host}: its ACL, checked in the container (own credentials)" in names
    answers = run_command(fleet, "version-report", timeout=10)
    assert {r.agent: (r.state, r.result.get("version")) for r in answers.replies} == {
        "a2": ("answered", "two"), "a3": ("answered", "three")}


def test_the_agents_connect_over_tls_only(hosts, fleet):
    """The agent's own config: the DNS name, the published TLS port, the fleet CA."""
    remote = Path(hosts.hosts[1].remote_dir)
    config = json.loads(next(remote.rglob("a2/config/agent.json")).read_text())
    assert config["broker"] == {"host": "mqtt-broker", "port": 8883, "ca_file": "/etc/hatchery/ca.crt"}
    # plain MQTT is not published beyond h1's loopback: the control side is refused
    code = subprocess.run(["mosquitto_sub", "-h", hosts.hosts[0].address, "-p", "1883", "-t", "x",
                           "-C", "1", "-W", "2"], capture_output=True).returncode
    assert code != 0


INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(Path(__file__).parents[2])]


def cli(fleet, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "FLEET_INVENTORY": str(fleet.path), "NO_COLOR": "1"}
    return subprocess.run([*INVOKE, *args], capture_output=True, text=True, env=env, timeout=120)


def test_host_flag_and_agent_list_from_the_command_line(hosts, fleet):
    listed = cli(fleet, "agent.list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {row["agent"]: (row["host"], row["running"]) for row in json.loads(listed.stdout)["items"]} == {
        "a2": ("h2", True), "a3": ("h3", True)}
    one = cli(fleet, "fleet.version-report", "--host", "h2", "--json")
    assert one.returncode == 0, one.stdout + one.stderr
    assert [r["agent"] for r in json.loads(one.stdout)["items"]] == ["a2"]
    hatch = cli(fleet, "agent.hatch", "--host", "h3")
    assert hatch.returncode == 0, hatch.stdout + hatch.stderr
    assert "agent a3" in hatch.stdout and "agent a2" not in hatch.stdout
    assert "host h3" in hatch.stdout and "(no changes)" in hatch.stdout
    unknown = cli(fleet, "agent.hatch", "--host", "h9")
    assert unknown.returncode == 2 and "h9" in unknown.stderr + unknown.stdout


def test_a_host_down_is_reported_and_the_others_go_on(hosts, fleet):
    h3 = hosts.hosts[2]
    hosts.stop_dockerd(h3)          # its containers stop with it: the handler says offline
    hosts.stop_sshd(h3)             # and the host cannot even be reached
    answers = run_command(fleet, "version-report", timeout=5)
    states = {r.agent: r.state for r in answers.replies}
    assert states["a2"] == "answered"
    assert states["a3"] in ("offline", "silent"), states
    report = _hatch(fleet)
    assert report.hosts["h2"]["failed"] == 0
    assert report.hosts["h3"]["failed"] == 1 and report.hosts["h3"]["error"]
    assert [r.item for r in report.failed] == ["host h3"]
    result = verify(fleet, timeout=10)
    bad = [c.name for c in result.checks if not c.ok]
    assert any("a3" in n or "h3" in n for n in bad), bad
    assert not [(c.name, c.detail) for c in result.checks if not c.ok and "a2" in c.name]
    listed = cli(fleet, "agent.list", "--json")
    rows = {row["agent"]: row for row in json.loads(listed.stdout)["items"]}
    assert rows["a2"]["running"] is True and rows["a3"]["status"] == "host unreachable"
    print(FIGURES)


def _host_down_envelope(run: subprocess.CompletedProcess, address: str, hosts=("h2", "h3")) -> dict:
    """A task with h3 down: exit 1 (not 3), h3 one failed item, every other host reported."""
    assert run.returncode == 1, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert [i["item"] for i in out["items"] if i["status"] == "failed"] == ["host h3"], out["items"]
    assert set(out["hosts"]) == set(hosts)
    assert out["hosts"]["h3"]["failed"] == 1 and address in out["hosts"]["h3"]["error"]
    assert all(out["hosts"][h]["failed"] == 0 for h in hosts if h != "h3")
    return out


def test_plain_hatch_stop_and_retire_with_a_host_down(hosts, fleet):
    """No selector: the orphan scan asks every engine, in each host's own thread."""
    h3 = hosts.hosts[2]
    assert h3.sshd.poll() is not None and h3.dockerd.poll() is not None   # down since the test above
    hatch = _host_down_envelope(cli(fleet, "agent.hatch", "--json"), h3.address)
    assert hatch["hosts"]["h2"]["changed"] == 0
    before = fleet.path.read_text()
    _host_down_envelope(cli(fleet, "agent.retire", "--name", "a3", "--json"), h3.address, hosts=("h3",))
    assert fleet.path.read_text() == before             # nothing retired: run it again later
    stop = _host_down_envelope(cli(fleet, "agent.stop", "--json"), h3.address)
    assert [(i["item"], i["status"]) for i in stop["items"] if i["item"] == "agent a2"] == [
        ("agent a2", "changed")]
    assert stop["hosts"]["h2"]["changed"] == 1
