"""Attack 3b of the threat model: a neighbour that reopens idle sockets keeps agents out.

Mosquitto 2.0.11 closes a connection that never sends CONNECT after ~90 s,
but a neighbour that opens them again holds every slot of ``max_connections``
as long as it likes, and the agents stay locked out (bench/idle_flood_bench.py).
Control: per-address limits in front of the listener, rendered by
broker.deploy (``broker/broker.nft``, configs/firewall.py) for the operator
to install. Here the broker, the neighbour and an agent each live in a
network namespace of their own (tests/security/netlab.py) and the rules are
loaded into the broker's namespace only: the host's own firewall is never
touched. The same flood runs twice, without the rules (the agent is locked
out: the attack is real) and with them (the agent gets in).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hatchery.configs import broker as broker_conf
from hatchery.configs import firewall
from hatchery.core.paths import StatePaths
from hatchery.core.state import forget_socket_dir, ready_socket_dir
from hatchery.inventory.load import load_inventory
from hatchery.provision import credentials as cr
from hatchery.provision.firewall import firewall_change
from hatchery.provision import operations
from hatchery.provision.operations import auth_files
from tests.conftest import wait_for
from tests.security.netlab import Lan

LIMIT = 40              # the public listener's max_connections in this test
FLOOD = 150
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

# The neighbour: open FLOOD connections at once, never send a byte, report how many
# the broker kept, hold them until stdin closes.
NEIGHBOUR = """
import selectors, socket, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sel, socks = selectors.DefaultSelector(), []
for _ in range(count):
    s = socket.socket(); s.setblocking(False); s.connect_ex((host, port))
    sel.register(s, selectors.EVENT_WRITE); socks.append(s)
deadline, up = time.monotonic() + 2, set()
while time.monotonic() < deadline and len(up) < count:
    for key, _ in sel.select(0.1):
        sel.unregister(key.fileobj)
        if not key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            up.add(key.fileobj)
time.sleep(1.0)                    # the broker closes what is over its limit
held = 0
for s in up:
    try:
        held += s.recv(1, socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        held += 1
    except OSError:
        pass
print(held, flush=True)
sys.stdin.read()
"""

# An agent logging in with its password (raw paho): prints 1 or 0.
AGENT = """
import os, sys, threading, paho.mqtt.client as mqtt
done, ok = threading.Event(), []
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.username_pw_set("alpha", os.environ["AGENT_SECRET"])
c.on_connect = lambda c, u, f, reason, p: (ok.append(not reason.is_failure), done.set())
try:
    c.connect(sys.argv[1], int(sys.argv[2]), keepalive=10); c.loop_start(); done.wait(3)
except OSError:
    pass
print(1 if ok and ok[0] else 0)
"""


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test builds network namespaces: run it as root")
    if not shutil.which("nft"):
        pytest.fail("nft is missing: apt-get install -y nftables (scripts/setup.sh --test)")


@pytest.fixture
def lan():
    _require_tools()
    lan = Lan(("broker", "neighbour", "agent")).start()
    yield lan
    lan.close()
    if getattr(lan, "socket_dir", None):
        forget_socket_dir(*lan.socket_dir)


@pytest.fixture
def fleet(lan, tmp_path, monkeypatch):
    """A fleet whose broker listens on its namespace's address, with our rendered config."""
    monkeypatch.setattr(broker_conf, "PUBLIC_MAX_CONNECTIONS", LIMIT)
    monkeypatch.setattr(broker_conf, "AGENT_MARGIN", 0)
    address = lan.address("broker")
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text("\n".join(["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
                               f"  host: {address}", f"  bind: {address}", "  allow_plain: true",
                               "  port: 1883", "agents:", "  alpha: {}"]) + "\n")
    inv = load_inventory(path)
    paths = StatePaths(inv.state_dir)
    auth = cr.plan_auth(inv)
    auth.change().apply()
    Path(paths.broker_data).mkdir(parents=True)
    ready_socket_dir(broker_conf.control_socket(inv), inv.state_dir)
    lan.socket_dir = (broker_conf.control_socket(inv), inv.state_dir)
    for name, text in auth_files(auth).items():
        (Path(paths.broker_dir) / name).write_text(text)
    Path(paths.broker_conf).write_text(operations.broker_conf(inv))
    lan.broker = lan.spawn("broker", [MOSQUITTO, "-c", str(paths.broker_conf)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: _agent_gets_in(lan, inv), timeout=10), "the broker did not come up"
    return inv


def _agent_gets_in(lan, inv) -> bool:
    env = {**os.environ, "AGENT_SECRET": cr.stored_secret(inv, "alpha")}
    out = subprocess.run(["ip", "netns", "exec", lan.netns("agent"), sys.executable, "-c", AGENT,
                          inv.broker.host, str(inv.broker.port)],
                         capture_output=True, text=True, env=env, timeout=20)
    return out.stdout.strip() == "1"


class Flood:
    """The neighbour's idle sockets, held until the block ends."""

    def __init__(self, lan, inv):
        self.proc = lan.spawn("neighbour", [sys.executable, "-c", NEIGHBOUR, inv.broker.host,
                                            str(inv.broker.port), str(FLOOD)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self) -> int:
        return int(self.proc.stdout.readline())

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def _broker_fds(lan) -> int:
    return len(os.listdir(f"/proc/{lan.broker.pid}/fd"))


def test_per_address_limits_keep_a_neighbours_flood_off_the_agents(lan, fleet):
    with Flood(lan, fleet) as held:              # no rules yet: the attack works
        assert held >= LIMIT - 2
        assert not _agent_gets_in(lan, fleet), "the flood did not fill the listener"
    assert wait_for(lambda: _agent_gets_in(lan, fleet), timeout=10)

    [change] = firewall_change(fleet)            # what broker.deploy renders
    assert change.action == "create" and "not applied" in change.reason
    change.apply()
    rules = Path(StatePaths(fleet.state_dir).broker_firewall)
    lan.run("broker", "nft", "-f", str(rules))
    per_source = firewall.per_source_limit(fleet)

    with Flood(lan, fleet) as held:
        assert held <= per_source
        assert _agent_gets_in(lan, fleet)
        assert _broker_fds(lan) < per_source + 32
    listed = lan.run("broker", "nft", "list", "ruleset").stdout
    assert f"ct count over {per_source}" in listed


def test_loading_the_rules_twice_replaces_them(lan, fleet):
    [change] = firewall_change(fleet)
    change.apply()
    rules = str(StatePaths(fleet.state_dir).broker_firewall)
    lan.run("broker", "nft", "-f", rules)
    lan.run("broker", "nft", "-f", rules)        # an operator re-running the install
    listed = lan.run("broker", "nft", "list", "tables").stdout.split("\n")
    assert sum("hatchery_mqtt_1883" in line for line in listed) == 1
    assert firewall_change(fleet)[0].action == "none"
