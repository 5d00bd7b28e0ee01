"""The fleet's credential plan (hatchery.credentials) and its inventory switches."""

from __future__ import annotations

import stat
from dataclasses import replace

import pytest

from hatchery.core.plan import apply_plan
from hatchery.errors import UsageError
from hatchery.inventory.load import load_inventory
from hatchery.inventory.model import DOCKER, AgentSpec, BrokerSpec, Inventory
from hatchery.provision import credentials as cr
from hatchery.provision.operations import agent_conf, broker_conf
from hatchery.security import passwords as pw


@pytest.fixture
def inv(tmp_path):
    agents = {n: AgentSpec(n) for n in ("alpha", "beta")}
    return Inventory(tmp_path / "fleet_inventory.yaml", agents=agents, state_dir=tmp_path / ".hatchery")


def _apply(auth):
    assert apply_plan("credentials", [auth.change()]).ok


def test_plan_issues_every_user_then_is_idempotent(inv):
    auth = cr.plan_auth(inv)
    assert {c.user for c in auth.changes} == {"zephyr", "alpha", "beta", "monitor", "exporter", "recorder"}
    assert set(auth.new_keys) == {"alpha", "beta", cr.BROADCAST_KEY}
    assert not cr.secrets_dir(inv).exists()                  # planning wrote nothing
    _apply(auth)
    again = cr.plan_auth(inv)
    assert not again.needed and again.password_text() == auth.password_text()
    hashes = pw.read_password_file(cr.password_file(inv))
    for user, secret in auth.secrets.items():
        assert pw.verify_password(secret, hashes[user])
        # what the state directory holds is what the broker's hash accepts
        assert pw.read_secret(cr.secrets_dir(inv), user) == secret
    names = {p.name for p in cr.secrets_dir(inv).iterdir()}
    assert {"passwd", "alpha.password", "beta.password", "zephyr.password",
            "alpha.sigkey", "_broadcast.sigkey"} <= names
    for path in cr.secrets_dir(inv).iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(cr.secrets_dir(inv).stat().st_mode) == 0o700
    # applying the unchanged plan again touches nothing
    files = {p.name: p.read_bytes() for p in cr.secrets_dir(inv).iterdir()}
    assert again.change().action == "none"
    _apply(again)
    assert {p.name: p.read_bytes() for p in cr.secrets_dir(inv).iterdir()} == files


def test_a_rewritten_file_is_private_even_over_a_loose_one(inv):
    _apply(cr.plan_auth(inv))
    secret_file = cr.secrets_dir(inv) / "alpha.password"
    secret_file.chmod(0o644)                       # someone loosened it
    _apply(cr.plan_auth(inv, rotate=["alpha"]))
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert not list(cr.secrets_dir(inv).glob("*.tmp"))


def test_the_change_never_shows_secrets_or_keys(inv):
    auth = cr.plan_auth(inv)
    change = auth.change()
    shown = change.reason + change.diff
    assert all(secret not in shown for secret in auth.secrets.values())
    assert all(key not in shown for key in auth.keys.values())


def test_rotate_changes_one_agent_only(inv):
    _apply(cr.plan_auth(inv))
    before = cr.plan_auth(inv)
    rotated = cr.plan_auth(inv, rotate=["alpha"])
    assert [(c.user, c.action) for c in rotated.changes] == [("alpha", pw.ROTATE)]
    assert rotated.fingerprint("alpha") != before.fingerprint("alpha")
    assert rotated.fingerprint("beta") == before.fingerprint("beta")
    assert rotated.keys["alpha"] != before.keys["alpha"]


def test_retired_agent_stays_revoked_until_hatched_again(inv):
    _apply(cr.plan_auth(inv))
    retire = cr.plan_auth(inv, revoke=["beta"])
    assert [(c.user, c.action) for c in retire.changes] == [("beta", pw.REVOKE)]
    assert retire.change().action == "update" and "revoke beta" in retire.change().reason
    _apply(retire)
    assert "beta" not in pw.read_password_file(cr.password_file(inv))
    assert not (cr.secrets_dir(inv) / "beta.password").exists()      # the secret is gone
    assert not cr.key_path(inv, "beta").exists()                     # and its signing key
    assert not cr.plan_auth(inv).needed                       # broker.deploy leaves it revoked
    assert "user beta" not in cr.plan_auth(inv).acl_text()
    with pytest.raises(UsageError, match="retired"):
        cr.plan_auth(inv).agent_files("beta")
    back = cr.plan_auth(inv, restore=["beta"])
    assert [(c.user, c.action) for c in back.changes] == [("beta", pw.ADD)]
    _apply(back)
    assert not cr.retired_marker(inv, "beta").exists()


def test_agent_config_names_files_never_secrets(inv):
    auth = cr.plan_auth(inv)
    _apply(auth)
    local = agent_conf(inv, inv.agents["alpha"], auth)
    assert local["username"] == "alpha" and local["password_file"].endswith("secrets/alpha.password")
    assert auth.secrets["alpha"] not in str(local)
    docked = agent_conf(inv, replace(inv.agents["alpha"], runtime=DOCKER), auth)
    assert docked["password_file"] == "/run/secrets/hatchery/password"
    phase1 = agent_conf(replace(inv, broker=BrokerSpec(auth=False)), inv.agents["alpha"])
    assert "username" not in phase1


def test_conf_renders_auth_by_default_and_anonymous_in_phase_1(inv):
    conf = broker_conf(inv)
    assert "allow_anonymous false" in conf and f"password_file {inv.state_dir}/broker/passwd" in conf
    open_conf = broker_conf(replace(inv, broker=BrokerSpec(auth=False)))
    assert "allow_anonymous true" in open_conf and "password_file" not in open_conf
    tls_conf = broker_conf(replace(inv, broker=BrokerSpec(tls=True, tls_port=18883)))
    assert "listener 18883 127.0.0.1" in tls_conf and "certfile" in tls_conf
    # the docker runtime has TLS too: the container's listener, the mounted fleet CA and cert
    docker_tls = broker_conf(replace(inv, broker=BrokerSpec(runtime=DOCKER, tls=True)))
    assert "listener 8883" in docker_tls and "cafile /mosquitto/config/tls/ca.crt" in docker_tls
    assert "keyfile /mosquitto/config/tls/server.key" in docker_tls


def test_loader_reads_auth_tls_and_remote_dir(tmp_path):
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text("broker:\n  runtime: docker\n  auth: false\n  tls: true\n  tls_port: 9883\n"
                    "  remote_dir: /srv/hatchery\n  container_prefix: x-\nagents: {}\n")
    broker = load_inventory(path, env={}).broker
    assert (broker.auth, broker.tls, broker.tls_port, broker.remote_dir, broker.container_prefix) \
        == (False, True, 9883, "/srv/hatchery", "x-")
    path.write_text("broker:\n  auth: 'no'\nagents: {}\n")
    with pytest.raises(Exception, match="true or false"):
        load_inventory(path, env={})


def test_bus_for_without_issued_credentials_is_refused_with_the_fix(inv, tmp_path):
    from hatchery.bus.connection import bus_for
    from hatchery.errors import BusError
    from tests.security.secbroker import start_secure_broker
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    broker = start_secure_broker(tmp_path / "b", password_file=passwd)
    try:
        there = replace(inv, broker=BrokerSpec(host=broker.host, port=broker.port))
        with pytest.raises(BusError) as caught:
            with bus_for(there, connect_timeout=3):
                pass
        assert "broker.deploy" in caught.value.fix
    finally:
        broker.stop()
