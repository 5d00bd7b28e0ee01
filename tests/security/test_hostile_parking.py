"""Attack 9 of the threat model: one agent's login parks data in the broker.

Measured on 2.0.11 with the config as rendered before (bench/parking_bench.py):
30 QoS 2 publishes of 60 KB that are never released (no PUBREL) kept 1.2-1.5 MB
per client id in RAM and in mosquitto.db; offline sessions subscribed at QoS 1
to the agent's own selftest topic took 4 MiB each (max_queued_bytes); client
ids were unlimited and the sessions never expired. Controls: ``max_qos 1`` on
every listener, an agent reads no topic it can write, and
``persistent_client_expiration``. The attacker is a raw socket speaking MQTT
by hand (tests/security/rawmqtt.py) with an agent's password.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent_kit import contract
from agent_kit.config import AgentConfig
from agent_kit.selftest import round_trip
from agent_kit.bus import BusError
from hatchery.configs import broker as broker_conf
from hatchery.core.paths import StatePaths
from hatchery.core.plan import apply_plan
from hatchery.core.process import read_pid
from hatchery.core.state import forget_socket_dir, ready_socket_dir
from hatchery.inventory.load import load_inventory
from hatchery.provision import credentials as cr
from hatchery.provision import operations
from hatchery.provision.operations import stop_broker_plan
from hatchery.security import acl
from hatchery.security import passwords as pw
from tests.conftest import wait_for
from tests.security import rawmqtt as raw
from tests.security.hostilefleet import deployed_fleet, local_inventory
from tests.security.secbroker import start_secure_broker

PAYLOAD = 60 * 1024
AGENT = "alpha"


@pytest.fixture
def fleet(tmp_path):
    yield from deployed_fleet(tmp_path, agents=(AGENT,))


def _login(inv, client_id: str, user: str = AGENT, **options) -> raw.RawClient:
    client = raw.RawClient("127.0.0.1", inv.broker.port)
    assert client.login(client_id, user, cr.stored_secret(inv, user), **options) == 0
    return client


def _saved_db_bytes(inv) -> int:
    """mosquitto.db's size once the broker has written it (SIGUSR1) now."""
    paths = StatePaths(inv.state_dir)
    db = Path(paths.broker_data) / "mosquitto.db"
    before = db.stat().st_mtime_ns if db.exists() else 0
    os.kill(read_pid(paths.broker_pid), signal.SIGUSR1)
    assert wait_for(lambda: db.exists() and db.stat().st_mtime_ns != before, timeout=5)
    time.sleep(0.2)
    return db.stat().st_size


def _acks(client: raw.RawClient, kind: int) -> tuple:
    """(reason codes of the ``kind`` acks that arrived in a quiet 0.5 s, True if hung up)."""
    codes = []
    try:
        while True:
            packet = client.read(timeout=0.5)
            if packet is None:
                return codes, True
            if packet[0] == kind:      # SUBACK: id, properties, codes; PUBACK/PUBREC: id, code
                body = packet[2]
                codes.append(body[3] if kind == raw.SUBACK else (body[2] if len(body) > 2 else 0))
    except (TimeoutError, OSError):
        return codes, False


def test_every_listener_refuses_qos_2_and_sessions_expire(tmp_path):
    lines = operations.broker_conf(load_inventory(local_inventory(tmp_path, (AGENT,)))).splitlines()
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    assert len(listeners) == 2
    for index in listeners:
        block = lines[index:lines.index("", index)]
        assert "max_qos 1" in block, lines[index]
    assert f"persistent_client_expiration {broker_conf.SESSION_EXPIRATION}" in lines


def test_unreleased_qos_2_publishes_park_nothing(fleet):
    topic = contract.topic(AGENT, "status")
    honest = _login(fleet, "honest", clean=True, session_expiry=0)
    honest.send(raw.publish_packet(topic, os.urandom(PAYLOAD), qos=1))
    codes, hung_up = _acks(honest, raw.PUBACK)          # the same message at QoS 1 is fine
    assert len(codes) == 1 and codes[0] < 0x80 and not hung_up
    honest.drop()
    start = _saved_db_bytes(fleet)
    for index in range(5):
        attacker = _login(fleet, f"parker-{index}")          # persistent, never expires
        for mid in range(1, 31):
            try:
                attacker.send(raw.publish_packet(topic, os.urandom(PAYLOAD), qos=2, mid=mid))
            except OSError:
                break                                         # the broker hung up: good
        pubrecs, hung_up = _acks(attacker, raw.PUBREC)
        assert pubrecs == [] and hung_up
        attacker.drop()
    assert _saved_db_bytes(fleet) - start < 16 * 1024        # was 1.2-1.5 MB per client id


def test_an_agent_cannot_fill_its_own_parked_sessions(fleet):
    grants = acl.agent_grants(AGENT, fleet.manager)
    readable = [g.topic for g in grants if "read" in g.access]
    writable = [g.topic for g in grants if "write" in g.access]
    assert readable and not set(readable) & set(writable)
    parked = _login(fleet, "parked")
    for mid, topic in enumerate([*readable, acl.selftest_topic(AGENT)], start=1):
        parked.send(raw.subscribe_packet(topic, qos=1, mid=mid))
    subacks, _ = _acks(parked, raw.SUBACK)
    # 2.0.11 grants the selftest subscription too, and checks read access per message
    assert subacks == [1] * (len(readable) + 1)
    parked.drop()
    start = _saved_db_bytes(fleet)
    filler = _login(fleet, "filler", clean=True, session_expiry=0)
    for mid in range(1, 71):                                  # 4 MiB on everything it may write
        filler.send(raw.publish_packet(writable[mid % len(writable)], os.urandom(PAYLOAD),
                                       qos=1, mid=mid))
    assert not _acks(filler, raw.PUBACK)[1]
    filler.drop()
    assert _saved_db_bytes(fleet) - start < 16 * 1024        # was 4 MiB per parked session
    # the session is parked all the same: what the manager sends it is kept for it
    manager = _login(fleet, "manager-1", user=fleet.manager, clean=True, session_expiry=0)
    manager.send(raw.publish_packet(contract.topic(AGENT, "command"), b"{}", qos=1))
    assert _acks(manager, raw.PUBACK)[0]
    back = raw.RawClient("127.0.0.1", fleet.broker.port)
    back.send(raw.connect_packet("parked", AGENT, cr.stored_secret(fleet, AGENT)))
    assert back.read(timeout=5)[2][0] & 1                     # session present
    kind, _, body = back.read(timeout=5)
    assert kind == raw.PUBLISH and body.endswith(b"{}")


SESSIONS = 1000


def _broker_rss_kb(inv) -> int:
    status = Path(f"/proc/{read_pid(StatePaths(inv.state_dir).broker_pid)}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def _park(inv, client_id: str, topics: list) -> None:
    """One persistent session (expiry "never") subscribed at QoS 1 to ``topics``, then gone."""
    client = raw.RawClient("127.0.0.1", inv.broker.port)
    client.send(raw.connect_packet(client_id, AGENT, cr.stored_secret(inv, AGENT)) + b"".join(
        raw.subscribe_packet(topic, qos=1, mid=mid) for mid, topic in enumerate(topics, start=1)))
    kinds = [client.read(timeout=5)[0] for _ in range(1 + len(topics))]
    assert kinds == [raw.CONNACK] + [raw.SUBACK] * len(topics)
    client.drop()


def test_many_client_ids_of_one_login_cost_a_bounded_few_hundred_bytes_each(fleet):
    """2.0.11 cannot bind client ids to a username: the bound is what each session costs,
    for an hour (persistent_client_expiration), and what can be queued in it (only what the
    manager sends the agent, which expires with the command)."""
    readable = [g.topic for g in acl.agent_grants(AGENT, fleet.manager) if "read" in g.access]
    db_before, rss_before = _saved_db_bytes(fleet), _broker_rss_kb(fleet)
    for index in range(SESSIONS):
        _park(fleet, f"many-{index}", readable)
    db_grew = _saved_db_bytes(fleet) - db_before
    rss_grew = (_broker_rss_kb(fleet) - rss_before) * 1024
    assert db_grew < 400 * SESSIONS, db_grew                 # measured: ~150 B a session
    assert rss_grew < 4096 * SESSIONS, rss_grew              # measured: ~1.5 KB a session
    # the manager's command is queued in every one of them, and expires with the command
    manager = _login(fleet, "manager-1", user=fleet.manager, clean=True, session_expiry=0)
    manager.send(raw.publish_packet(contract.topic(AGENT, "command"), b"{}", qos=1, expiry=1))
    assert _acks(manager, raw.PUBACK)[0]
    time.sleep(2.5)
    back = raw.RawClient("127.0.0.1", fleet.broker.port)
    back.send(raw.connect_packet(f"many-{SESSIONS - 1}", AGENT, cr.stored_secret(fleet, AGENT)))
    assert back.read(timeout=5)[2][0] & 1                     # the session is there
    with pytest.raises(TimeoutError):
        back.read(timeout=1)                                  # but the expired command is not
    back.drop()


def _faketime_library() -> str:
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        pytest.fail("libfaketime is missing: apt-get install -y faketime (scripts/setup.sh --test)")
    return found[0]


def test_a_parked_session_expires_after_an_hour(fleet):
    """The broker's wall clock runs 120 times fast (libfaketime), so its hour takes 30 s."""
    paths = StatePaths(fleet.state_dir)
    apply_plan("stop", stop_broker_plan(fleet))
    env = {**os.environ, "LD_PRELOAD": _faketime_library(), "FAKETIME": "+0 x120",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}
    ready_socket_dir(broker_conf.control_socket(fleet), fleet.state_dir)
    broker = subprocess.Popen(["mosquitto", "-c", str(paths.broker_conf)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: _connects(fleet), timeout=5)
        for name in ("early", "late"):
            parked = _login(fleet, name)
            parked.send(raw.subscribe_packet(contract.topic(AGENT, "command")))
            assert _acks(parked, raw.SUBACK)[0] == [1]
            parked.drop()
        time.sleep(3)                                          # six minutes of the broker's time
        assert _session_present(fleet, "early")
        log = Path(paths.broker_log)
        assert wait_for(lambda: "Expiring client late" in log.read_text(), timeout=45)
        assert not _session_present(fleet, "late")
    finally:
        broker.terminate()
        broker.wait(10)
        forget_socket_dir(broker_conf.control_socket(fleet), fleet.state_dir)


def _connects(inv) -> bool:
    try:
        raw.RawClient("127.0.0.1", inv.broker.port, timeout=0.5).drop()
        return True
    except OSError:
        return False


def _session_present(inv, client_id: str) -> bool:
    client = raw.RawClient("127.0.0.1", inv.broker.port)
    client.send(raw.connect_packet(client_id, AGENT, cr.stored_secret(inv, AGENT)))
    kind, _, body = client.read(timeout=5)
    client.drop()
    assert kind == raw.CONNACK and body[1] == 0
    return bool(body[0] & 1)


def _agent_config(tmp_path, broker, secret: str) -> AgentConfig:
    secret_file = tmp_path / "alpha.password"
    secret_file.write_text(secret + "\n")
    return AgentConfig(name=AGENT, broker_port=broker.port, username=AGENT,
                       password_file=str(secret_file))


def _broker_with(tmp_path, agent_grants: list):
    secrets = {AGENT: pw.new_secret()}
    passwd, acl_file = tmp_path / "passwd", tmp_path / "acl"
    pw.write_private(passwd, pw.render_password_file({AGENT: pw.hash_password(secrets[AGENT])}))
    pw.write_private(acl_file, acl.render_acl({AGENT: agent_grants}))
    return start_secure_broker(tmp_path / "broker", password_file=passwd, acl_file=acl_file), \
        secrets[AGENT]


def test_the_selftest_checks_the_acl_from_inside(tmp_path):
    broker, secret = _broker_with(tmp_path, acl.agent_grants(AGENT, "zephyr"))
    try:
        assert round_trip(_agent_config(tmp_path, broker, secret), timeout=5) == b"ping"
    finally:
        broker.stop()


def test_the_selftest_fails_where_the_acl_is_too_wide(tmp_path):
    loose = [acl.Grant("readwrite", f"{acl.VERIFY_PREFIX}/{AGENT}/#")]
    broker, secret = _broker_with(tmp_path, loose)
    try:
        with pytest.raises(BusError, match="ACL is not enforced"):
            round_trip(_agent_config(tmp_path, broker, secret), timeout=5)
    finally:
        broker.stop()
