"""TLS in the docker runtime on the local engine: generated CA or the user's own; the
manager verifies the broker; the key is readable by the broker's user only."""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port

sys.path.insert(0, str(Path(__file__).parent.parent / "docker"))
from dockerhelpers import client, remove_fleet, wait_mqtt  # noqa: E402,F401 (fixture)

from hatchery.bus.connection import bus_for  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.errors import HatcheryError  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.provision.operations import deploy_plan  # noqa: E402
from hatchery.security import tls  # noqa: E402

pytestmark = pytest.mark.docker


def _inventory(root: Path, extra: str = "") -> Path:
    tag = secrets.token_hex(3)
    path = root / "fleet_inventory.yaml"
    path.write_text(textwrap.dedent(f"""\
        broker:
          runtime: docker
          port: {free_port()}
          tls: true
          tls_port: {free_port()}
          image: hatchery/mosquitto:2.0.11
          network: hty-{tag}-net
          container: hty-{tag}-broker
          container_prefix: hty-{tag}-
        """) + extra)
    return path


def _deploy(inv):
    report = apply_plan("broker.deploy", deploy_plan(inv))
    assert report.ok, [(r.item, r.error) for r in report.failed]
    wait_mqtt(inv)      # the published port answers before Mosquitto inside does
    return report


def test_generated_ca_tls_listener_verified_and_key_private(client, tmp_path):
    inv = load_inventory(_inventory(tmp_path), env={})
    try:
        _deploy(inv)
        # the TLS listener itself (the manager on this machine would take the control socket)
        with bus_for(inv, connect_timeout=10, control=False) as bus:    # TLS, verified against the fleet CA
            assert bus.port == inv.broker.tls_port and bus.ping(timeout=5) < 1000
        key = inv.state_dir / "broker" / "config" / "tls" / "server.key"
        assert oct(key.stat().st_mode & 0o777) == "0o600" and key.stat().st_uid != 0
        again = apply_plan("broker.deploy", deploy_plan(inv))
        assert not again.changed, [(r.item, r.reason) for r in again.changed]
        # a client that does not trust the fleet CA is refused
        with pytest.raises(HatcheryError):
            with bus_for(inv, connect_timeout=5, tls=ssl.create_default_context(), control=False):
                pass
    finally:
        remove_fleet(inv)


def test_user_supplied_ca_and_certificate(client, tmp_path):
    ca = tls.make_ca()
    server = tls.make_server_cert(ca, "127.0.0.1", dns_names=["mqtt-broker"])
    own = tmp_path / "own"
    own.mkdir()
    tls.write_pair(ca, own / "ca.crt", own / "ca.key")
    tls.write_pair(server, own / "server.crt", own / "server.key")
    extra = f"  tls_ca: {own}/ca.crt\n  tls_cert: {own}/server.crt\n  tls_key: {own}/server.key\n"
    inv = load_inventory(_inventory(tmp_path, extra), env={})
    try:
        _deploy(inv)
        mounted = inv.state_dir / "broker" / "config" / "tls" / "server.crt"
        assert mounted.read_text() == (own / "server.crt").read_text()
        assert not (inv.state_dir / "tls").exists()        # nothing generated
        with bus_for(inv, connect_timeout=10) as bus:
            assert bus.ping(timeout=5) < 1000
        # mosquitto_sub with the user's CA, through the published TLS port, as a raw client
        secret = (inv.state_dir / "secrets" / f"{inv.manager}.password")
        assert secret.exists() and os.stat(secret).st_mode & 0o077 == 0
        code = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(inv.broker.tls_port),
                               "-t", "x", "-C", "1", "-W", "2"], capture_output=True).returncode
        assert code != 0      # no CA, no credentials: refused
    finally:
        remove_fleet(inv)
