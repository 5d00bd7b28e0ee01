"""The one connection value (hatchery.bus.connection): built from the inventory and the state dir."""

from __future__ import annotations

import ssl
from dataclasses import replace

import pytest

from hatchery.bus.connection import bus_for, connection_for, connection_target
from hatchery.core.plan import apply_plan
from hatchery.errors import BusError
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory
from hatchery.provision import credentials as cr
from hatchery.security import acl


@pytest.fixture
def inv(tmp_path):
    """An auth fleet whose credentials were issued, as broker.deploy would."""
    agents = {n: AgentSpec(n) for n in ("alpha", "beta")}
    fleet = Inventory(tmp_path / "fleet_inventory.yaml", agents=agents, state_dir=tmp_path / ".hatchery")
    assert apply_plan("credentials", [cr.plan_auth(fleet).change()]).ok
    return fleet


def test_the_manager_logs_in_with_its_stored_secret_and_signs_with_the_agents_keys(inv):
    conn = connection_for(inv)
    assert (conn.host, conn.port, conn.user, conn.username) == ("127.0.0.1", 1883, "zephyr", "zephyr")
    assert conn.password == cr.user_secret(inv, "zephyr")
    assert conn.signing_keys("alpha") == bytes.fromhex(cr.read_key(inv, "alpha"))
    assert conn.signing_keys(None) == bytes.fromhex(cr.read_key(inv, cr.BROADCAST_KEY))
    assert conn.tls is None and conn.cafile is None


def test_a_control_side_role_logs_in_as_itself_and_signs_nothing(inv):
    for role in (*acl.READ_ONLY_ROLES, *acl.RECORDER_ROLES):
        conn = connection_for(inv, role=role)
        assert (conn.username, conn.password) == (role, cr.user_secret(inv, role))
        assert conn.signing_keys is None


def test_secrets_never_show_in_the_value(inv):
    conn = connection_for(inv)
    assert conn.password not in repr(conn) and "signing_keys" not in repr(conn)
    assert conn.password not in str(conn.__dict__.get("user"))


def test_given_credentials_win_and_no_auth_means_no_login(inv):
    given = connection_for(inv, username="alpha", password="pw")
    assert (given.username, given.password) == ("alpha", "pw")
    open_fleet = connection_for(replace(inv, broker=BrokerSpec(auth=False)))
    assert (open_fleet.username, open_fleet.password, open_fleet.signing_keys) == (None, None, None)


def test_each_client_gets_its_own_id_so_two_of_one_role_do_not_kick_each_other(inv):
    conn = connection_for(inv, role="monitor")
    first, second = conn.client(), conn.client()
    assert first.client_id != second.client_id
    assert first.client_id.startswith("monitor-") and second.client_id.startswith("monitor-")


def test_tls_uses_the_tls_listener_and_a_missing_ca_names_the_fix(inv):
    tls_fleet = replace(inv, broker=BrokerSpec(tls=True, tls_port=18883))
    with pytest.raises(BusError) as caught:
        connection_for(tls_fleet)
    assert "broker.deploy" in caught.value.fix
    own = ssl.create_default_context()
    assert connection_target(tls_fleet, own) == ("127.0.0.1", 1883, own)   # a given context: as given


def test_bus_for_logs_in_to_a_real_broker_as_the_role(inv, tmp_path):
    from tests.security.secbroker import start_secure_broker
    broker = start_secure_broker(tmp_path / "b", password_file=cr.password_file(inv),
                                 acl_file=_acl(inv, tmp_path))
    try:
        there = replace(inv, broker=BrokerSpec(host=broker.host, port=broker.port))
        with bus_for(there, role="monitor", connect_timeout=5) as monitor:
            assert monitor.ping(timeout=5) >= 0
        with pytest.raises(BusError):
            with bus_for(there, username="monitor", password="wrong", connect_timeout=5):
                pass
    finally:
        broker.stop()


def _acl(inv, tmp_path):
    path = tmp_path / "acl"
    path.write_text(acl.render_fleet_acl(inv))
    return path
