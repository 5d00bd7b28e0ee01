"""DNS providers against a real hosts file and a REAL dnsmasq on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from conftest import free_port

from hatchery.core.plan import apply_plan
from hatchery.errors import DnsError, UsageError
from hatchery.provision.dns_providers import (
    BEGIN,
    END,
    make_provider,
    read_block,
    write_block,
)

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def test_block_is_added_kept_and_dropped_around_hand_written_lines():
    text = "127.0.0.1 localhost\n"
    added = write_block(text, {"mqtt-broker": "10.0.0.5"})
    assert added == f"127.0.0.1 localhost\n{BEGIN}\n10.0.0.5 mqtt-broker\n{END}\n"
    assert read_block(added) == {"mqtt-broker": "10.0.0.5"}
    assert write_block(added + "::1 ip6-localhost\n", {}) == "127.0.0.1 localhost\n::1 ip6-localhost\n"


def test_hosts_provider_register_is_idempotent_and_unregister_removes(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    provider = make_provider("hosts", hosts_file=str(hosts), address="ignored-here")
    first = provider.plan_register("mqtt-broker", "192.0.2.10")
    assert first.action == "create" and "+192.0.2.10 mqtt-broker" in first.diff
    assert apply_plan("dns", [first]).ok
    assert provider.lookup("mqtt-broker") == "192.0.2.10"
    assert provider.plan_register("mqtt-broker", "192.0.2.10").action == "none"
    moved = provider.plan_register("mqtt-broker", "192.0.2.11")
    assert moved.action == "update"
    apply_plan("dns", [moved, provider.plan_unregister("mqtt-broker")])
    assert provider.lookup("mqtt-broker") is None
    assert hosts.read_text() == "127.0.0.1 localhost\n"


def test_a_bad_address_or_provider_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not an IP address"):
        make_provider("hosts", hosts_file=str(tmp_path / "h")).plan_register("mqtt-broker", "broker.lan")
    with pytest.raises(UsageError, match="unknown DNS provider"):
        make_provider("route53")


@pytest.fixture
def dnsmasq(tmp_path):
    if not os.path.exists(DNSMASQ):
        pytest.fail("dnsmasq is not installed: apt-get install -y dnsmasq-base")
    port = free_port()
    addn, pid = tmp_path / "addn-hosts", tmp_path / "dnsmasq.pid"
    addn.write_text("")
    proc = subprocess.Popen([DNSMASQ, "--keep-in-foreground", f"--port={port}", "--listen-address=127.0.0.1",
                             "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={addn}",
                             f"--pid-file={pid}", "--user=root", "--group=root", "--log-facility=-"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    provider = make_provider("dnsmasq", addn_hosts=str(addn), pid_file=str(pid), port=port, timeout=1.0)
    _wait_for_pid(pid, proc)
    yield provider
    proc.terminate()
    proc.wait(5)


def _wait_for_pid(pid_file, proc, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file.exists() and pid_file.read_text().strip():
            return
        assert proc.poll() is None, "dnsmasq exited at start"
        time.sleep(0.02)
    raise TimeoutError("dnsmasq wrote no pid file")


def _eventually(probe, want, timeout=3.0):
    # SIGHUP is asynchronous: dnsmasq re-reads the file on its next loop turn.
    deadline = time.monotonic() + timeout
    while (got := probe()) != want and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def test_dnsmasq_register_resolve_unregister(dnsmasq):
    name = "mqtt-broker.fleet.test"
    assert dnsmasq.lookup(name) is None
    report = apply_plan("dns", [dnsmasq.plan_register(name, "10.20.30.40")])
    assert report.ok and "reloaded" in report.results[0].detail
    assert _eventually(lambda: dnsmasq.lookup(name), "10.20.30.40") == "10.20.30.40"
    again = dnsmasq.plan_register(name, "10.20.30.40")
    assert again.action == "none"
    apply_plan("dns", [dnsmasq.plan_unregister(name)])
    assert _eventually(lambda: dnsmasq.lookup(name), None) is None


def test_dnsmasq_reload_without_a_running_dnsmasq_fails_with_a_fix(tmp_path):
    provider = make_provider("dnsmasq", addn_hosts=str(tmp_path / "addn"), pid_file=str(tmp_path / "none.pid"))
    report = apply_plan("dns", [provider.plan_register("mqtt-broker", "10.0.0.1")])
    assert not report.ok and "no dnsmasq pid" in report.results[0].error


@pytest.mark.parametrize("content", ["0", "-1", "1", "other-program"])
def test_dnsmasq_reload_signals_nothing_but_a_running_dnsmasq(tmp_path, monkeypatch, content):
    # 0 = our own process group, -1 = every process (as root), 1 = init,
    # and a stale pid file naming a live, unrelated program
    signalled = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: signalled.append((pid, sig)))
    other = subprocess.Popen(["sleep", "30"]) if content == "other-program" else None
    try:
        pid_file = tmp_path / "dnsmasq.pid"
        pid_file.write_text(f"{other.pid if other else content}\n")
        addn = tmp_path / "addn"
        provider = make_provider("dnsmasq", addn_hosts=str(addn), pid_file=str(pid_file))
        report = apply_plan("dns", [provider.plan_register("mqtt-broker", "10.0.0.1")])
        assert not report.ok and "not a running dnsmasq" in report.results[0].error
        assert signalled == []
        assert not addn.exists()      # nothing half-done: the next run retries the whole change
    finally:
        monkeypatch.undo()           # Popen.kill goes through os.kill
        if other:
            other.kill()
            other.wait(5)


def test_lookup_against_a_silent_server_raises_dns_error():
    provider = make_provider("dnsmasq", addn_hosts="/nonexistent", port=free_port(), timeout=0.3)
    with pytest.raises(DnsError, match="no answer"):
        provider.lookup("mqtt-broker")
