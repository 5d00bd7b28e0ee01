"""End to end: the real CLI drives a local fleet (native mosquitto + agent handlers).

Each test module gets its own inventory, port and state directory under tmp,
and everything is stopped afterwards, even when a test fails.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port
from fleetcli import INVOKE, env_for
from fleetcli import run as cli_run


def write_inventory(directory: Path, port: int, agents=("alpha", "beta")) -> Path:
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
             "  host: 127.0.0.1", "  bind: 127.0.0.1", f"  port: {port}", "agents:"]
    for name in agents:
        lines += [f"  {name}:", "    version_command: 'echo {}-1.2.3'".format(name),
                  "    heartbeat_interval: 30"]
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


run = functools.partial(cli_run, timeout=60)      # every call here is a quick one


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fleet")
    inventory = write_inventory(directory, free_port())
    yield inventory
    run("agent.stop", inventory=inventory)
    run("broker.stop", inventory=inventory)


def test_check_mode_changes_nothing(fleet):
    out = run("broker.deploy", "--check", inventory=fleet, check=0).stdout
    assert "would change" in out and "broker" in out
    assert not (fleet.parent / ".hatchery" / "broker" / "mosquitto.conf").exists()


def test_deploy_then_unchanged(fleet):
    first = run("broker.deploy", inventory=fleet, check=0).stdout
    assert "changed=2" in first and "add alpha, add beta" in first   # credentials + broker
    second = run("broker.deploy", inventory=fleet, check=0).stdout
    assert "changed=0" in second and "(no changes)" in second


def test_hatch_then_unchanged(fleet):
    first = run("agent.hatch", inventory=fleet, check=0).stdout
    assert "changed=2" in first
    pids = {n: (fleet.parent / ".hatchery/agents" / n / "handler.pid").read_text() for n in ("alpha", "beta")}
    second = run("agent.hatch", inventory=fleet, check=0).stdout
    # unchanged means untouched: the same handler processes still run (how fast is bench/'s business)
    assert "changed=0" in second
    assert pids == {n: (fleet.parent / ".hatchery/agents" / n / "handler.pid").read_text() for n in pids}


def test_version_report_lists_both(fleet):
    out = run("fleet.version-report", "--json", inventory=fleet, check=0).stdout
    replies = {r["agent"]: r for r in json.loads(out)["items"]}
    assert replies["alpha"]["result"]["version"] == "alpha-1.2.3"
    assert replies["beta"]["result"]["version"] == "beta-1.2.3"
    assert all(r["rtt_ms"] < 1000 for r in replies.values())


def test_verify_passes(fleet):
    report = json.loads(run("verify", "--json", inventory=fleet, check=0).stdout)
    names = [c["check"] for c in report["items"]]
    assert report["task"] == "verify" and report["ok"] and any("retained" in n for n in names)
    assert sum("answers a health-check" in n for n in names) == 2


def test_killed_agent_is_reported_offline(fleet):
    pid_file = fleet.parent / ".hatchery" / "agents" / "beta" / "handler.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    time.sleep(0.5)
    proc = run("fleet.version-report", "--timeout", "2", inventory=fleet, check=1)
    assert "beta" in proc.stderr and "offline" in proc.stderr
    states = {r["agent"]: r["state"] for r in json.loads(
        run("fleet.version-report", "--json", "--timeout", "2", inventory=fleet, check=1).stdout)["items"]}
    assert states == {"alpha": "answered", "beta": "offline"}
    # hatch brings it back, and only it
    out = run("agent.hatch", inventory=fleet, check=0).stdout
    assert "changed=1" in out and "beta" in out


def test_one_agent_by_name(fleet):
    out = json.loads(run("fleet.health-check", "--name", "alpha", "--json", inventory=fleet, check=0).stdout)
    assert [r["agent"] for r in out["items"]] == ["alpha"]


def test_bad_inventory_changes_nothing(tmp_path):
    bad = tmp_path / "fleet_inventory.yaml"
    bad.write_text("broker:\n  port: 99999\nagents:\n  Bad.Name: {}\n")
    proc = run("broker.deploy", inventory=bad, check=2)
    assert "fleet_inventory.yaml:2" in proc.stderr and "fleet_inventory.yaml:4" in proc.stderr
    assert not (tmp_path / ".hatchery").exists()


def test_unknown_agent_name_is_a_usage_error(fleet):
    proc = run("fleet.health-check", "--name", "nobody", inventory=fleet, check=2)
    assert "nobody" in proc.stderr and "alpha" in proc.stderr


# --- security: credentials, ACL and signed commands through the real product -------------

from types import SimpleNamespace  # noqa: E402

from agent_kit import contract, signing  # noqa: E402
from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from tests.security.secbroker import Probe  # noqa: E402


def _inv(fleet):
    return load_inventory(fleet, env={})


def _secret(fleet, user):
    return (fleet.parent / ".hatchery" / "secrets" / f"{user}.password").read_text().strip()


def _probe(fleet, user=None, password=None):
    inv = _inv(fleet)
    return Probe(SimpleNamespace(host=inv.broker.host, port=inv.broker.port), user, password)


def test_broker_config_has_auth_and_files_are_private(fleet):
    state = fleet.parent / ".hatchery"
    conf = (state / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "password_file" in conf and "acl_file" in conf
    for path in [state / "broker" / "passwd", state / "secrets" / "alpha.password",
                 state / "secrets" / "alpha.sigkey"]:
        assert oct(path.stat().st_mode)[-3:] == "600", path
    agent_json = json.loads((state / "agents" / "alpha" / "agent.json").read_text())
    assert agent_json["username"] == "alpha" and _secret(fleet, "alpha") not in json.dumps(agent_json)


def test_anonymous_and_wrong_password_are_refused(fleet):
    for user, password in ((None, None), ("alpha", "wrong"), ("nobody", "x")):
        probe = _probe(fleet, user, password)
        assert probe.connect().is_failure, user
        probe.close()


def test_an_agent_cannot_read_others_telemetry_nor_publish_on_their_topics(fleet):
    run("fleet.health-check", inventory=fleet, check=0)       # fresh retained heartbeats
    alpha = _probe(fleet, "alpha", _secret(fleet, "alpha"))
    assert not alpha.connect().is_failure
    watcher = _probe(fleet, "monitor", _secret(fleet, "monitor"))
    assert not watcher.connect().is_failure
    try:
        watcher.subscribe("fleet/beta/#")
        while True:                                           # drop beta's retained messages
            try:
                watcher.receive(timeout=0.3)
            except Exception:  # noqa: BLE001 - queue.Empty: drained
                break
        alpha.subscribe("fleet/#")
        alpha.subscribe("#")
        for kind in ("heartbeat", "status", "command"):
            alpha.publish(f"fleet/beta/{kind}", b'{"forged":1}')
        alpha.publish("zephyr/broadcast", b'{"forged":1}')
        time.sleep(0.5)
        seen = []
        while not alpha.inbox.empty():
            seen.append(alpha.inbox.get()[0])
        assert not [t for t in seen if "beta" in t], seen
        assert watcher.inbox.empty()                          # nothing forged arrived
    finally:
        alpha.close()
        watcher.close()


def _status_dropped(fleet, name):
    out = json.loads(run("fleet.status-report", "--name", name, "--json", inventory=fleet, check=0).stdout)
    return out["items"][0]["result"]["counters"]["dropped"]


def test_forged_tampered_stale_and_replayed_commands_are_dropped_and_alerted(fleet):
    inv = _inv(fleet)
    key = bytes.fromhex((fleet.parent / ".hatchery" / "secrets" / "alpha.sigkey").read_text().strip())
    before = _status_dropped(fleet, "alpha")
    alerts: list = []

    def command(**overrides):
        return {**contract.make_command("health-check", os.urandom(8).hex()), **overrides}
    valid = signing.sign_command(command(), key)
    forged = signing.sign_command(command(), b"not-the-key")
    tampered = {**signing.sign_command(command(), key), "verb": "version-report"}
    stale = signing.sign_command(command(ts="2020-01-01T00:00:00Z"), key)
    sent = [command(), forged, tampered, stale, valid, valid]   # unsigned first, replay last
    with bus_for(inv) as manager:
        with manager.listen(["fleet/alpha/alert"], lambda m: alerts.append(json.loads(m.payload))):
            for payload in sent:
                manager.publish("fleet/alpha/command", contract.encode(payload))
            deadline = time.monotonic() + 5
            while not alerts and time.monotonic() < deadline:
                time.sleep(0.05)
    after = _status_dropped(fleet, "alpha")
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert grew == {"bad-signature": 3, "stale": 1, "replayed": 1}, grew
    assert alerts and alerts[0]["code"] == "dropped-message"
    assert alerts[0]["reason"] in ("bad-signature", "stale", "replayed")


def test_rotate_credentials_keeps_the_other_agent_answering(fleet):
    old = _secret(fleet, "alpha")
    beta_pid = (fleet.parent / ".hatchery" / "agents" / "beta" / "handler.pid").read_text()
    assert "would change" in run("agent.rotate-credentials", "--name", "alpha", "--check",
                                 inventory=fleet, check=0).stdout
    assert _secret(fleet, "alpha") == old                     # --check changed nothing
    out = run("agent.rotate-credentials", "--name", "alpha", inventory=fleet, check=0).stdout
    assert "rotate alpha" in out and "SIGHUP" in out and old not in out
    assert _secret(fleet, "alpha") != old
    probe = _probe(fleet, "alpha", old)
    assert probe.connect().is_failure                          # the old secret is dead
    probe.close()
    replies = json.loads(run("fleet.version-report", "--json", inventory=fleet, check=0).stdout)["items"]
    assert {r["agent"]: r["state"] for r in replies} == {"alpha": "answered", "beta": "answered"}
    assert (fleet.parent / ".hatchery" / "agents" / "beta" / "handler.pid").read_text() == beta_pid


def test_bus_record_then_audit_clean_and_planted(fleet, tmp_path):
    clean = tmp_path / "clean.jsonl"
    run("bus.record", "--duration", "0.5", "--out", str(clean), inventory=fleet, check=0)
    proc = run("bus.audit", "--record", str(clean), inventory=fleet, check=0)
    assert "0 findings" in proc.stdout and clean.stat().st_size > 0     # retained states seen
    planted = tmp_path / "planted.jsonl"
    recorder = subprocess.Popen([*INVOKE, "bus.record", "--duration", "3", "--out", str(planted)],
                                env=env_for(fleet), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10     # subscribed once the retained states are written
        while time.monotonic() < deadline and not (planted.exists() and planted.stat().st_size):
            time.sleep(0.05)
        with bus_for(_inv(fleet)) as manager:   # the manager leaks personal data in a command
            manager.publish("fleet/alpha/command", b'{"v":1,"id":"x1","verb":"health-check",'
                            b'"ts":"2026-01-01T00:00:00Z","note":"mail jane.roe@example.org"}')
    finally:
        out, err = recorder.communicate(timeout=20)
    assert recorder.returncode == 0, err
    proc = run("bus.audit", "--record", str(planted), inventory=fleet, check=1)
    assert "email" in proc.stdout and "schema" in proc.stdout
    assert "jane.roe@example.org" not in proc.stdout
    report = json.loads(run("bus.audit", "--record", str(planted), "--json", inventory=fleet, check=1).stdout)
    assert report["counts"]["email"] == 1 and not report["ok"]
    assert {f["rule"] for f in report["items"]} >= {"email", "schema"}


def test_zz_retired_agent_cannot_connect_and_stays_retired(fleet):
    secret = _secret(fleet, "beta")
    run("agent.retire", "--name", "beta", "--check", inventory=fleet, check=0)
    assert _secret(fleet, "beta") == secret
    out = run("agent.retire", "--name", "beta", inventory=fleet, check=0).stdout
    assert "revoke beta" in out
    probe = _probe(fleet, "beta", secret)
    assert probe.connect().is_failure
    probe.close()
    assert "changed=0" in run("broker.deploy", inventory=fleet, check=0).stdout   # not re-issued
    state = json.loads(run("fleet.health-check", "--name", "alpha", "--json", inventory=fleet, check=0).stdout)
    assert state["ok"]


def test_tls_listener_is_verified_against_the_fleet_ca(tmp_path):
    inventory = write_inventory(tmp_path, free_port(), agents=("gamma",))
    tls_port = free_port()
    inventory.write_text(inventory.read_text().replace(
        "agents:", f"  tls: true\n  tls_port: {tls_port}\nagents:"))
    try:
        out = run("broker.deploy", inventory=inventory, check=0).stdout
        assert "broker TLS" in out and "issued" in out
        key = tmp_path / ".hatchery" / "tls" / "server.key"
        assert oct(key.stat().st_mode)[-3:] == "600"
        run("agent.hatch", inventory=inventory, check=0)
        report = json.loads(run("verify", "--json", inventory=inventory, check=0).stdout)
        names = [c["check"] for c in report["items"]]
        assert report["ok"] and any(f"TLS listener 127.0.0.1:{tls_port}" in n for n in names)
        assert "changed=0" in run("broker.deploy", inventory=inventory, check=0).stdout
    finally:
        run("agent.stop", inventory=inventory)
        run("broker.stop", inventory=inventory)
