"""A fleet CA and a server certificate, served by a real Mosquitto TLS listener."""

from __future__ import annotations

import datetime as dt
import ssl
import stat

import pytest
from cryptography import x509

from hatchery.errors import UsageError
from hatchery.security import tls
from tests.security.secbroker import Probe, start_secure_broker


@pytest.fixture(scope="module")
def ca():
    return tls.make_ca("test fleet CA")


@pytest.fixture(scope="module")
def server(ca):
    return tls.make_server_cert(ca, "localhost", dns_names=["mqtt-broker"], ips=["127.0.0.1"])


def test_ca_is_a_ca_that_signs_only_leaf_certificates(ca):
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def test_server_cert_has_the_sans_and_is_issued_by_the_ca(ca, server):
    assert tls.cert_sans(server.cert_pem) == {"localhost", "mqtt-broker", "127.0.0.1"}
    assert tls.issued_by(server.cert, ca.cert)
    assert not tls.issued_by(server.cert, tls.make_ca("test fleet CA").cert)  # same name, other key


def test_sans_accept_ipv6_and_refuse_nonsense():
    entries = tls.san_entries("broker.lan", ips=["::1"])
    assert [type(e).__name__ for e in entries] == ["DNSName", "IPAddress"]
    with pytest.raises(UsageError):
        tls.san_entries("bad..name")


@pytest.mark.parametrize("change, reason", [
    (dict(host="other"), "names changed"),
    (dict(now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=380)), "expires within"),
])
def test_renewal_reason(ca, server, change, reason):
    args = {"host": "localhost", "dns_names": ["mqtt-broker"], "ips": ["127.0.0.1"], **change}
    host = args.pop("host")
    assert reason in tls.renewal_reason(server, ca, host, **args)


def test_renewal_reason_empty_when_current_and_set_when_missing(ca, server):
    assert tls.renewal_reason(server, ca, "localhost", dns_names=["mqtt-broker"],
                              ips=["127.0.0.1"]) == ""
    assert tls.renewal_reason(None, ca, "localhost") == "no certificate yet"
    assert tls.renewal_reason(server, tls.make_ca(), "localhost", dns_names=["mqtt-broker"],
                              ips=["127.0.0.1"]) == "not issued by the fleet CA"


def test_write_pair_keeps_the_key_private(tmp_path, server):
    tls.write_pair(server, tmp_path / "server.crt", tmp_path / "server.key")
    assert stat.S_IMODE((tmp_path / "server.key").stat().st_mode) == 0o600
    assert tls.read_pair(tmp_path / "server.crt", tmp_path / "server.key") == server
    assert tls.read_pair(tmp_path / "none.crt", tmp_path / "none.key") is None


# --- a real TLS listener -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory, ca, server):
    tmp = tmp_path_factory.mktemp("tls")
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    tls.write_pair(server, tmp / "server.crt", tmp / "server.key")
    broker = start_secure_broker(tmp / "broker", anonymous=True, tls={
        "cafile": tmp / "ca.crt", "certfile": tmp / "server.crt", "keyfile": tmp / "server.key"})
    yield broker
    broker.stop()


def _context(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_client_verifies_the_broker_against_the_fleet_ca(tls_broker, ca, host):
    probe = Probe(tls_broker, tls_context=_context(ca.cert_pem), host=host)
    assert not probe.connect().is_failure
    probe.subscribe("fleet/t/heartbeat")
    probe.publish("fleet/t/heartbeat", b"over tls")
    assert probe.receive() == ("fleet/t/heartbeat", b"over tls")
    probe.close()


def test_client_refuses_a_broker_signed_by_another_ca(tls_broker):
    probe = Probe(tls_broker, tls_context=_context(tls.make_ca("test fleet CA").cert_pem))
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        probe.connect()


def test_client_refuses_a_name_missing_from_the_sans(tmp_path, ca):
    # signed by the right CA, but for another name: 127.0.0.1 is not among its SANs
    other = tls.make_server_cert(ca, "mqtt-broker")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    tls.write_pair(other, tmp_path / "server.crt", tmp_path / "server.key")
    broker = start_secure_broker(tmp_path / "broker", anonymous=True, tls={
        "cafile": tmp_path / "ca.crt", "certfile": tmp_path / "server.crt",
        "keyfile": tmp_path / "server.key"})
    try:
        probe = Probe(broker, tls_context=_context(ca.cert_pem), host="127.0.0.1")
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            probe.connect()
    finally:
        broker.stop()


def test_plain_mqtt_is_refused_on_the_tls_listener(tls_broker):
    probe = Probe(tls_broker)
    with pytest.raises((TimeoutError, OSError)):
        probe.connect(timeout=2)
