"""The hosts: section and placement (pure loading; the multi-host run is test_multihost.py)."""

from __future__ import annotations

from tests.hosts.fleettext import load_text

INVENTORY = """
hosts:
  h1: {docker_host: "ssh://root@10.250.1.2", labels: {site: nas}}
  h2: {docker_host: "ssh://ops@h2.lan:2222", address: 10.250.2.2, remote_dir: /srv/hatchery}
broker:
  on_host: h1
  bind: 0.0.0.0
  tls: true
groups:
  edge:
    agents: [b, c]
    vars: {host: h2}
agents:
  a: {}
  b: {}
  c: {host: h1}
"""


def test_hosts_and_placement_per_agent_and_per_group(tmp_path):
    inv = load_text(tmp_path, INVENTORY)
    assert inv.hosts["h1"].address == "10.250.1.2"           # from docker_host when not given
    assert inv.hosts["h1"].labels == {"site": "nas"}
    assert inv.hosts["h2"].address == "10.250.2.2"
    # the broker runs on h1's engine; the manager connects to h1's address
    assert inv.broker.runtime == "docker"
    assert inv.broker.docker_host == "ssh://root@10.250.1.2" and inv.broker.host == "10.250.1.2"
    assert inv.agents["a"].host is None and inv.agents["a"].docker_host is None
    assert (inv.agents["b"].host, inv.agents["b"].docker_host) == ("h2", "ssh://ops@h2.lan:2222")
    assert inv.agents["b"].runtime == "docker"
    assert inv.agents["c"].host == "h1"                     # its own key beats the group's
    assert inv.host_by_engine("ssh://ops@h2.lan:2222").remote_dir == "/srv/hatchery"


def test_plain_mqtt_across_hosts_only_when_said_so(tmp_path):
    inv = load_text(tmp_path, INVENTORY.replace("  tls: true\n", "  allow_plain: true\n"))
    assert inv.broker.allow_plain and not inv.broker.tls
