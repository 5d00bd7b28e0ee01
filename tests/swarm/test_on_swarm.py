"""hatchery on a real three-node Docker Swarm: three dockerds in network namespaces
(tests/hosts/netns.py), reached over SSH like real hosts, one swarm shared by every
test of this module (forming one takes seconds, starting three engines more).

The tests run in order: the swarm is formed, then used.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hatchery.bus.connection import bus_for
from hatchery.core.plan import apply_plan
from hatchery.inventory.load import load_inventory
from hatchery.observe.fleetstate import FleetState, live_filters
from hatchery.runtime.docker import bootstrap_images, engine

sys.path.insert(0, str(Path(__file__).parents[1] / "hosts"))
from answering import wait_answering  # noqa: E402
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
        # The runtime copies a missing base image itself (save | load over SSH, measured by
        # bench/swarm_bench.py); loading it here from one archive in parallel is faster.
        started = time.monotonic()
        multi.load_images(AGENT_IMAGE, BROKER_IMAGE)
        FIGURES["images loaded on three nodes, in parallel (s)"] = round(time.monotonic() - started, 1)
        with multi.control_side():
            yield multi
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
        agents:
          a1: {{runtime: swarm, version_command: "echo one", heartbeat_interval: 30, image: {AGENT_IMAGE}}}
          a2: {{runtime: swarm, version_command: "echo two", heartbeat_interval: 30, image: {AGENT_IMAGE}}}
          a3:
            runtime: swarm
            version_command: "echo three"
            heartbeat_interval: 30
            image: {AGENT_IMAGE}
            placement: {{constraints: ["node.labels.zone==b"]}}
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
    assert check["node h1"]["status"] == "would change" and check["node h1"]["reason"].startswith("init:")
    assert [check[f"node {h}"]["reason"].split(":")[0] for h in ("h2", "h3")] == ["join", "join"]
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
    FIGURES["swarm.status text"] = cli(fleet, "swarm.status").stdout


def test_labels_follow_the_inventory(hosts, fleet):
    h3 = hosts.hosts[2]
    node = hosts.docker(h3, "info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
    hosts.docker(h3, "node", "update", "--label-add", "by-hand=x", "--label-rm", "zone", node)
    diff = cli(fleet, "swarm.up", "--check", "--diff")
    assert diff.returncode == 0 and "-by-hand=x" in diff.stdout and "+zone=b" in diff.stdout, diff.stdout
    fixed = by_item(cli_json(fleet, "swarm.up"))
    assert fixed["node h3"]["reason"].startswith("label:") and fixed["node h3"]["status"] == "changed"
    labels = hosts.docker(h3, "node", "inspect", "-f", "{{json .Spec.Labels}}", "self").stdout
    assert json.loads(labels) == {"zone": "b", "hatchery.host": "h3"}


def test_the_broker_runs_as_a_service_with_its_files_as_secrets_and_configs(hosts, fleet):
    started = time.monotonic()
    deploy = by_item(cli_json(fleet, "broker.deploy"))
    FIGURES["broker.deploy on swarm, cold (s)"] = round(time.monotonic() - started, 1)
    assert deploy["broker"]["action"] == "create" and "accepting on" in deploy["broker"]["detail"]
    started = time.monotonic()
    again = cli_json(fleet, "broker.deploy")
    FIGURES["broker.deploy on swarm, warm (s)"] = round(time.monotonic() - started, 1)
    assert again["changed"] == 0, again["items"]

    h1 = hosts.hosts[0]
    service = json.loads(hosts.docker(h1, "service", "inspect", fleet.broker.container).stdout)[0]["Spec"]
    assert service["Mode"]["Replicated"]["Replicas"] == 1
    assert service["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
    assert service["EndpointSpec"]["Mode"] == "dnsrr"
    assert [(p["PublishMode"], p["PublishedPort"]) for p in service["EndpointSpec"]["Ports"]] == [("host", 8883)]
    container = service["TaskTemplate"]["ContainerSpec"]
    secrets = {s["File"]["Name"]: s["SecretName"] for s in container["Secrets"]}
    configs = {c["File"]["Name"]: c["ConfigName"] for c in container["Configs"]}
    assert set(secrets) == {"/mosquitto/config/passwd", "/mosquitto/config/acl", "/mosquitto/config/tls/server.key"}
    assert set(configs) == {"/mosquitto/config/mosquitto.conf", "/mosquitto/config/tls/ca.crt",
                            "/mosquitto/config/tls/server.crt"}
    assert all(len(name.rsplit("-", 1)[1]) == 12 for name in [*secrets.values(), *configs.values()])
    network = json.loads(hosts.docker(h1, "network", "inspect", fleet.broker.network).stdout)[0]
    assert network["Driver"] == "overlay" and network["Attachable"] is True
    status = cli_json(fleet, "broker.status")["items"][0]
    assert status["running"] is True and status["node"] in ("h1", "h2", "h3")


AGENTS = ["a1", "a2", "a3"]


def test_agents_run_as_services_and_verify_checks_inside_each_task(hosts, fleet):
    started = time.monotonic()
    hatch = cli_json(fleet, "agent.hatch")
    FIGURES["hatch 3 agents on swarm, cold (s)"] = round(time.monotonic() - started, 1)
    assert [by_item(hatch)[f"agent {a}"]["action"] for a in AGENTS] == ["create"] * 3
    started = time.monotonic()
    warm = cli_json(fleet, "agent.hatch")
    FIGURES["hatch 3 agents on swarm, warm (s)"] = round(time.monotonic() - started, 1)
    assert warm["changed"] == 0, [(i["item"], i.get("reason")) for i in warm["items"] if i["status"] != "ok"]
    FIGURES["3 agents answering after the hatch (s)"] = round(wait_answering(fleet, AGENTS, within=60), 1)

    FIGURES["agent.list text"] = cli(fleet, "agent.list").stdout
    rows = {r["agent"]: r for r in cli_json(fleet, "agent.list")["items"]}
    assert {a: (r["runtime"], r["running"], r["status"] in ("starting", "running")) for a, r in rows.items()} == {
        a: ("swarm", True, True) for a in AGENTS}
    assert rows["a3"]["node"] in ("h2", "h3")          # placement: zone b
    assert all(len(r["instance"]) == 25 for r in rows.values())     # the task's id

    spec = json.loads(hosts.docker(hosts.hosts[0], "service", "inspect", f"{fleet.broker.container_prefix}agent-a1")
                      .stdout)[0]["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Hostname"] == "a1" and "HATCHERY_AGENT_INSTANCE={{.Task.ID}}" in container["Env"]
    assert {s["File"]["Name"] for s in container["Secrets"]} == {
        "/run/secrets/hatchery/password", "/run/secrets/hatchery/signing.key", "/run/secrets/hatchery/broadcast.key"}
    assert container["Healthcheck"]["Test"][0] == "CMD-SHELL"
    assert spec["UpdateConfig"]["Order"] == "stop-first" and spec["UpdateConfig"]["FailureAction"] == "rollback"

    answers = cli_json(fleet, "fleet.version-report")
    assert {r["agent"]: r["result"]["version"] for r in answers["items"]} == {"a1": "one", "a2": "two", "a3": "three"}
    result = cli_json(fleet, "verify")
    names = [c["check"] for c in result["items"]]
    for agent in AGENTS:
        node = rows[agent]["node"]
        assert f"agent {agent} on {node}: its ACL, checked in its task (own credentials)" in names
    logs = cli(fleet, "agent.logs", "--name", "a2", "--lines", "20")
    assert logs.returncode == 0 and "a2" in logs.stdout, logs.stderr


def nodes_of(fleet) -> dict:
    return {r["agent"]: r["node"] for r in cli_json(fleet, "agent.list")["items"]}


def wait_nodes_ready(fleet, within: float = 90) -> None:
    deadline = time.monotonic() + within
    while True:
        run = cli(fleet, "swarm.status", "--json")
        rows = json.loads(run.stdout)["items"] if run.stdout.startswith("{") else []
        if rows and all(r["state"] == "ready" for r in rows if r["host"] != "-"):
            return
        assert time.monotonic() < deadline, run.stdout + run.stderr
        time.sleep(1)


def test_a_lost_node_s_agents_answer_again_from_other_nodes(hosts, fleet):
    before = nodes_of(fleet)
    victim = next(h for h in hosts.hosts if h.name == before["a2"])
    lost = time.monotonic()
    hosts.lose(victim)
    seconds = wait_answering(fleet, AGENTS, within=60, since=lost)
    FIGURES[f"failover: {victim.name} lost, every agent answering (s)"] = round(seconds, 1)
    healed = cli_json(fleet, "fleet.heal")                  # Swarm did it: nothing for heal to restart
    assert not [a for a in healed["items"] if a["action"] in ("restarted", "failed")], healed["items"]
    after = nodes_of(fleet)
    moved = [a for a in AGENTS if before[a] == victim.name]
    assert moved and all(after[a] not in (victim.name, None) for a in moved), (before, after)
    status = cli(fleet, "swarm.status", "--json")
    assert status.returncode == 1 and f"host {victim.name}: node down" in status.stdout
    hosts.restore(victim)
    wait_nodes_ready(fleet)


def test_a_partition_leaves_two_handlers_taking_turns_seen_shown_as_one_and_ended(hosts, fleet):
    """The isolated node keeps its task; when the partition heals, its handler and the
    replacement take turns on one login until the left-over task is stopped."""
    where = nodes_of(fleet)
    broker = cli_json(fleet, "broker.status")["items"][0]["node"]
    agent = next(a for a in AGENTS if where[a] != broker)
    victim = next(h for h in hosts.hosts if h.name == where[agent])
    state = FleetState.for_inventory(fleet)
    with bus_for(fleet) as bus, bus.listen(live_filters(fleet.manager), state.observe):
        hosts.partition(victim)
        wait_answering(fleet, [agent], within=90)           # its replacement, on another node
        replacement = {r["agent"]: r for r in cli_json(fleet, "agent.list")["items"]}[agent]["instance"]
        state.confirm(agent, replacement)                   # what the runtime says runs it
        hosts.partition(victim, cut=False)
        healed, duel = time.monotonic(), ()
        while not duel and time.monotonic() - healed < 90:
            duel = state.facts(agent).duelling(time.time())
            time.sleep(0.5)
        FIGURES["partition healed -> duel seen (s)"] = round(time.monotonic() - healed, 1)
        assert replacement in duel and len(duel) == 2, list(state.facts(agent).births)
        assert state.facts(agent).instance == replacement   # the fleet state shows one instance
        listed = {r["agent"]: r for r in cli_json(fleet, "agent.list")["items"]}[agent]
        scan = cli_json(fleet, "agent.hatch")                # the orphan scan stops the left-over task
        stopped = [i for i in scan["items"] if i["item"].startswith(f"agent {agent} task ")]
        if not stopped and listed["problem"]:               # Swarm may have ended it between the two calls
            listed = {r["agent"]: r for r in cli_json(fleet, "agent.list")["items"]}[agent]
        assert stopped or not listed["problem"], (listed, scan["items"])
        time.sleep(3)
        settled = time.time()
        time.sleep(10)
        later = {instance for at, instance in state.facts(agent).births if at > settled}
        assert later <= {replacement}, later                 # no more turns: one handler left
        FIGURES["duel ended by"] = "the orphan scan" if stopped else "Swarm"
    wait_answering(fleet, AGENTS, within=60)


def _release(fleet, command: str) -> None:
    """Every agent's version_command becomes ``command`` (a new config: a new release)."""
    text = re.sub(r'version_command: "[^"]*"', f'version_command: "{command}"', fleet.path.read_text())
    fleet.path.write_text(text)


def versions(fleet) -> dict:
    answers = cli_json(fleet, "fleet.version-report")
    return {r["agent"]: (r.get("result") or {}).get("version") for r in answers["items"]}


def test_a_rollout_replaces_services_in_batches_and_a_bad_release_is_rolled_back(hosts, fleet):
    wait_answering(fleet, AGENTS, within=60)
    _release(fleet, "echo v2")
    started = time.monotonic()
    good = cli_json(fleet, "fleet.rollout", "--batch", "2", "--expect-version", "v2", "--timeout", "30")
    FIGURES["rollout of 3 agents, batch 2 (s)"] = round(time.monotonic() - started, 1)
    assert good["ok"] and good["batches"] == [["a1", "a2"], ["a3"]], good
    assert {r["agent"]: r["outcome"] for r in good["items"]} == {a: "updated" for a in AGENTS}
    assert versions(fleet) == {a: "v2" for a in AGENTS}

    _release(fleet, "exit 3")                               # a release whose version command fails
    bad = cli_json(fleet, "fleet.rollout", "--batch", "2", "--expect-version", "v3", "--timeout", "20", code=1)
    outcomes = {r["agent"]: r["outcome"] for r in bad["items"]}
    FIGURES["bad rollout"] = [{k: r[k] for k in ("agent", "batch", "outcome", "detail")} for r in bad["items"]]
    assert outcomes == {"a1": "rolled-back", "a2": "rolled-back", "a3": "untouched"}, bad["items"]
    wait_answering(fleet, AGENTS, within=60)
    assert versions(fleet) == {a: "v2" for a in AGENTS}         # every agent on its previous version
    _release(fleet, "echo v2")                              # the inventory back on the good release


def test_fleet_capacity_lists_each_node_with_the_agents_its_tasks_run(hosts, fleet):
    wait_answering(fleet, AGENTS, within=60)
    h1 = hosts.hosts[0]
    ids = hosts.docker(h1, "node", "ls", "-q").stdout.split()
    described = {n["Spec"]["Labels"]["hatchery.host"]: n["Description"]["Resources"]
                 for n in json.loads(hosts.docker(h1, "node", "inspect", *ids).stdout)}
    where = nodes_of(fleet)
    started = time.monotonic()
    envelope = cli_json(fleet, "fleet.capacity", "--headroom", "0%")     # a busy test machine is no failure
    FIGURES["fleet.capacity on swarm (s)"] = round(time.monotonic() - started, 1)
    rows = {r["host"]: r for r in envelope["items"]}
    assert set(rows) == {"h1", "h2", "h3"} and {r["kind"] for r in rows.values()} == {"node"}, rows
    for host, row in rows.items():
        assert row["mem_total_kb"] == described[host]["MemoryBytes"] // 1024, row
        assert row["cpus"] == described[host]["NanoCPUs"] / 1e9, row
        on_it = sorted(a for a, n in where.items() if n == host)
        assert row["agents"] == len(on_it) and [u["agent"] for u in row["agent_usage"]] == on_it, (host, row)
        assert all(u["source"] == "runtime: task container stats" and u["mem_kb"] > 0
                   for u in row["agent_usage"]), row["agent_usage"]
        if on_it:                                           # /proc read through a task of ours there
            assert "/proc through a task container" in row["source"] and row["mem_available_kb"] > 0, row
            assert row["cpu_busy"] is not None and row["fits"] is not None, row
        else:
            assert row["mem_available_kb"] is None and "no running agent task" in row["problem"], row
            assert row["fits"] is None and row["limited_by"] == "unknown", row      # not a guess by CPU
    text = cli(fleet, "fleet.capacity", "--headroom", "0%", "--agents")
    assert text.returncode == 0 and "(node)" in text.stdout, text.stdout + text.stderr
    FIGURES["fleet.capacity text"] = text.stdout
