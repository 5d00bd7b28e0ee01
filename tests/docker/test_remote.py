"""A remote Docker host over SSH: a REAL sshd on a loopback port, this host's dockerd behind it.

Hermetic: generated host and user keys under tmp; $HOME points at tmp (Fabric
and paramiko read ~/.ssh/config through it) and an ``ssh`` shim first on $PATH
gives the system ssh client (used by the Docker SDK) the same config with -F,
since OpenSSH takes ~ from the password database, not $HOME.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port, wait_port

from hatchery.core.plan import apply_plan
from hatchery.errors import DockerError, UsageError
from hatchery.inventory.model import DOCKER, BrokerSpec, Inventory
from hatchery.provision.credentials import plan_auth
from hatchery.provision.operations import auth_files, broker_conf
from hatchery.runtime import for_runtime
from hatchery.runtime.docker import engine, forget_connections, parse_ssh_url

pytestmark = pytest.mark.docker
rt = for_runtime(DOCKER)
SSHD = "/usr/sbin/sshd"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.fail("sshd is not installed: apt-get install -y openssh-server")
    root = tmp_path_factory.mktemp("ssh")
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    port = free_port()
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root}/host_key\n"
        f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd.pid\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "Subsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)     # sshd's privilege-separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=(root / "sshd.log").open("w"))
    wait_port(port)
    yield root, port
    proc.terminate()
    proc.wait(5)


@pytest.fixture
def ssh_env(ssh_host, monkeypatch, tmp_path):
    root, port = ssh_host
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host hty-remote\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {root}/user_key\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    shim = tmp_path / "bin" / "ssh"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {home}/.ssh/config \"$@\"\n")
    shim.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    yield home, port
    forget_connections()


def test_parse_ssh_url():
    assert parse_ssh_url("ssh://ops@nas.lan:2222") == ("ops", "nas.lan", 2222)
    assert parse_ssh_url("ssh://nas") == (None, "nas", None)
    with pytest.raises(UsageError, match="ssh://"):
        parse_ssh_url("tcp://nas:2375")


def test_an_unreachable_engine_is_a_docker_error_with_a_fix():
    with pytest.raises(DockerError, match="cannot talk to the Docker engine") as caught:
        engine(f"tcp://127.0.0.1:{free_port()}")
    assert "dockerd" in caught.value.fix


def test_broker_on_a_remote_engine_over_ssh(ssh_env, tmp_path):
    home, _ = ssh_env
    prefix = f"hty-{secrets.token_hex(3)}-"
    broker = BrokerSpec(runtime=DOCKER, port=free_port(), image="hatchery/mosquitto:2.0.11",
                        docker_host=f"ssh://root@hty-remote:{ssh_env[1]}", network=f"{prefix}net",
                        container=f"{prefix}broker", container_prefix=prefix,
                        remote_dir=str(home / "remote-state"))
    inv = Inventory(path=tmp_path / "fleet_inventory.yaml", broker=broker, state_dir=tmp_path / ".hatchery")
    engine(broker.docker_host)     # connect first: an unreachable engine fails here, not in the clean-up
    try:
        conf = broker_conf(inv)
        auth = plan_auth(inv)
        files = auth_files(auth)
        started = time.perf_counter()
        report = apply_plan("broker.deploy", [auth.change(), *rt.broker_plan(inv, conf_text=conf, auth_files=files)])
        assert report.ok, report.failed[0].error if report.failed else ""
        elapsed = time.perf_counter() - started
        wait_port(broker.port, timeout=10)
        # Fabric put the config under remote_dir on the ssh host and the container mounts it from there
        remote_conf = home / "remote-state" / "broker" / "config" / "mosquitto.conf"
        assert remote_conf.read_text() == conf
        assert not (inv.state_dir / "broker").exists()
        assert (home / "remote-state" / "broker" / "config" / "passwd").read_text() == files["passwd"]
        assert rt.broker_plan(inv, conf_text=conf, auth_files=files)[0].action == "none"
        assert rt.broker_status(inv)["running"] is True
        print(f"remote broker deploy over ssh: {elapsed:.2f}s")
    finally:
        rt.remove_fleet(inv)
