"""Attack 1 of the threat model: a name that ends in a newline once switched the ACL off.

"client-x\\n" passed ``^...$`` validation, rendered a stray ``/heartbeat`` line
into the ACL, and on SIGHUP Mosquitto 2.0.11 dropped the whole ACL while
broker.deploy exited 0. Controls: full-match validation everywhere a value
becomes a topic, username, file name or ACL line; the auth files checked by
our grammar and by a throw-away Mosquitto before they are installed; a
password file a bad run left behind is repaired by the next good one.
The attacker's view is a raw paho client holding one agent's credentials.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent_kit import contract
from hatchery.core.paths import StatePaths
from hatchery.core.plan import apply_plan
from hatchery.core.ports import free_port
from hatchery.errors import UsageError
from hatchery.inventory.load import load_inventory
from hatchery.provision import authcheck
from hatchery.provision import credentials as cr
from hatchery.provision.operations import deploy_plan, stop_broker_plan
from hatchery.security import acl
from hatchery.security import passwords as pw
from tests.security.secbroker import Probe

ROOT = Path(__file__).resolve().parents[2]
TAILS = ["\n", "\r\n", "\n/heartbeat", "\x00", " ", "\t", "\u2028", "\u0085"]


@pytest.mark.parametrize("tail", TAILS)
def test_no_name_or_id_passes_with_a_trailing_line(tail):
    with pytest.raises(contract.ContractError):
        contract.check_name("client-x" + tail)
    assert contract.name_problem("client-x" + tail)
    assert contract.parse_topic(f"fleet/client-x{tail}/heartbeat") is None
    command = contract.make_command("health-check", "abc")
    with pytest.raises(contract.ContractError):
        contract.validate_command({**command, "id": "abc" + tail})
    with pytest.raises(contract.ContractError):
        contract.parse_rfc3339(command["ts"] + tail)
    assert not contract.is_slug("ok" + tail)
    with pytest.raises(contract.ContractError):
        contract.check_scalar("key" + tail, 1)
    with pytest.raises(contract.ContractError):
        contract.make_alert("client-x", "boom", digest="0123abcd" + tail)


def test_timestamps_take_ascii_digits_only():
    with pytest.raises(contract.ContractError):
        contract.parse_rfc3339("２０２６-03-18T21:30:00Z")   # fullwidth digits


@pytest.mark.parametrize("name", ["client-x\n", "client-x\r", "a\nuser b"])
def test_usernames_with_a_line_break_never_reach_a_file(name):
    with pytest.raises(UsageError):
        acl.fleet_grants("zephyr", [name])
    with pytest.raises(UsageError):
        pw.render_password_file({name: pw.hash_password("x")})


def _files(agents=("alpha", "beta")) -> dict:
    grants = acl.fleet_grants("zephyr", list(agents))
    return {"passwd": pw.render_password_file({u: pw.hash_password("s") for u in grants}),
            "acl": acl.render_acl(grants)}


@pytest.mark.parametrize("stray", ["/heartbeat\n", "topic read a b\n", "user\n", "topic rw x\n",
                                   "pattern read fleet/%u/#\n", "topic  read #\n"])
def test_the_acl_grammar_refuses_any_line_we_do_not_write(stray):
    files = _files()
    files["acl"] += stray
    assert authcheck.grammar_problems(files)
    with pytest.raises(UsageError, match="acl: line"):
        authcheck.check_auth_files(files)


def test_a_topic_line_before_the_first_user_is_refused():
    assert acl.acl_problems("topic read #\nuser a\n")
    assert acl.acl_problems("user a\ntopic read fleet/+x/#\n")
    assert acl.acl_problems("user a\ntopic read fleet/#/x\n")
    assert not acl.acl_problems(_files()["acl"])


@pytest.mark.parametrize("stray", [":$7$101$AAAA$BBBB\n", "client-x\n", "a:plain\n",
                                   "b:$7$101$!!$??\n", "Upper:$7$101$AAAA$BBBB\n"])
def test_the_password_grammar_refuses_what_mosquitto_would_drop(stray):
    files = _files()
    files["passwd"] += stray
    assert authcheck.grammar_problems(files)


def test_mosquitto_itself_rejects_what_our_grammar_rejects():
    """The second opinion: a throw-away Mosquitto loads the candidate files."""
    good = _files()
    assert authcheck.mosquitto_problems(good) == []
    bad_acl = {**good, "acl": good["acl"] + "/heartbeat\n"}
    assert any("Invalid line in acl_file" in p for p in authcheck.mosquitto_problems(bad_acl))
    bad_pw = {**good, "passwd": good["passwd"] + ":$7$101$AAAA$BBBB\n"}
    assert any("password file" in p for p in authcheck.mosquitto_problems(bad_pw))


# --- the whole attack against a real local broker ---------------------------------

def _write_inventory(directory: Path, port: int, agents) -> Path:
    """The inventory as YAML; agent names in JSON quoting so that a "\\n" survives."""
    lines = ["fleet:", "  manager: zephyr", "broker:", "  runtime: local", "  host: 127.0.0.1",
             "  bind: 127.0.0.1", f"  port: {port}", "agents:"]
    lines += [f"  {json.dumps(name)}: {{}}" for name in agents]
    path = directory / "fleet_inventory.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fleet(tmp_path):
    path = _write_inventory(tmp_path, free_port(), ["alpha", "beta"])
    inv = load_inventory(path)
    yield inv
    apply_plan("stop", stop_broker_plan(inv))


def _reads_other_agent(inv) -> bool:
    """Does alpha (raw paho, its own credentials, subscribed to '#') see beta's heartbeat?"""
    class Addr:
        host, port = "127.0.0.1", inv.broker.port

    def connect(user):
        probe = Probe(Addr, user, cr.stored_secret(inv, user))
        assert not probe.connect().is_failure, user
        return probe
    spy, beta, manager = connect("alpha"), connect("beta"), connect("zephyr")
    try:
        spy.subscribe("#")
        beta.publish("fleet/beta/heartbeat", b"{}")
        # a sentinel the spy may read: once it arrives, beta's message would have too
        manager.publish("fleet/alpha/command", b"sentinel")
        seen = [spy.receive()[0]]
        while not spy.inbox.empty():
            seen.append(spy.inbox.get_nowait()[0])
        assert "fleet/alpha/command" in seen
        return "fleet/beta/heartbeat" in seen
    finally:
        for probe in (spy, beta, manager):
            probe.close()


def test_a_newline_name_in_the_inventory_is_refused_with_exit_2(tmp_path):
    path = _write_inventory(tmp_path, free_port(), ["client-x\n"])
    proc = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "broker.deploy"],
                          capture_output=True, text=True, timeout=60,
                          env={"FLEET_INVENTORY": str(path), "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "client-x" in proc.stdout + proc.stderr
    assert not (tmp_path / ".hatchery" / "broker" / "acl").exists()


def test_an_invalid_acl_is_never_installed_nor_signalled(fleet, monkeypatch):
    assert apply_plan("deploy", deploy_plan(fleet)).ok
    acl_path = StatePaths(fleet.state_dir).broker_dir / "acl"
    before = acl_path.read_text()
    assert not _reads_other_agent(fleet)
    # A renderer bug (or a hostile name that got past the loader) emits a stray line.
    original = acl.render_acl
    monkeypatch.setattr(acl, "render_acl", lambda grants: original(grants) + "/heartbeat\n")
    with pytest.raises(UsageError, match="line .*heartbeat"):
        deploy_plan(fleet)
    assert acl_path.read_text() == before
    assert not _reads_other_agent(fleet)   # the ACL still holds


def test_a_good_inventory_repairs_what_a_bad_run_left_behind(fleet):
    """The old bug left ``client-x\\n:hash`` in the password file; no hand edits needed now."""
    assert apply_plan("deploy", deploy_plan(fleet)).ok
    passwd = cr.password_file(fleet)
    poisoned = passwd.read_text() + "client-x\n:" + pw.hash_password("x") + "\n"
    pw.write_private(passwd, poisoned)
    report = apply_plan("deploy", deploy_plan(fleet))
    assert report.ok
    assert "client-x" not in passwd.read_text()
    broker_passwd = StatePaths(fleet.state_dir).broker_dir / "passwd"
    assert pw.password_file_problems(broker_passwd.read_text()) == []
    assert not _reads_other_agent(fleet)

