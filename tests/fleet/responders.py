"""Tiny agents for tests: real paho clients speaking the contract to the real broker.

Stand-ins for agent_kit's CommandHandler: birth ``online`` / Will ``offline``
(retained) on the status topic, a retained heartbeat, and replies to commands
on their own command topic and on the manager's broadcast topic.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from agent_kit import contract
from hatchery.core.ports import free_port  # noqa: F401  (re-exported for the tests)
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory


def start_broker(workdir, extra=""):
    """tests/conftest.py's start_broker, loaded by path: several conftest.py files
    exist, so ``import conftest`` could pick the wrong one."""
    import importlib.util
    import sys
    name = "hatchery_root_conftest"
    if name not in sys.modules:   # registered first: its dataclasses look themselves up
        path = Path(__file__).resolve().parents[1] / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name].start_broker(workdir, extra=extra)


def unique(prefix: str = "a") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def inventory(broker, names, *, manager=None, groups=None, interval=600.0) -> Inventory:
    """An anonymous fleet on ``broker``. Its state dir is new and empty (beside the broker's
    files, else in the temp dir): no secrets, no control socket, so the bus connects over
    TCP without a login -- never the checkout's .hatchery/ of the operator's own fleet."""
    agents = {n: AgentSpec(n, heartbeat_interval=interval) for n in names}
    home = Path(broker.conf).parent if hasattr(broker, "conf") else Path(tempfile.gettempdir())
    return Inventory(Path("/nonexistent/fleet_inventory.yaml"), manager=manager or unique("mgr"),
                     broker=BrokerSpec(host=broker.host, port=broker.port),
                     agents=agents, groups=groups or {},
                     state_dir=home / unique("state"))


class Responder:
    """One agent. ``mode``: 'ok', 'fail' (answers ok=false) or 'mute' (never answers)."""

    def __init__(self, broker, name, manager, *, mode="ok", version="1.2.3", heartbeat=True):
        self.name, self.manager, self.mode, self.version = name, manager, mode, version
        self.commands: list = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        self.client.on_socket_open = lambda c, u, s: s.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        status = contract.topic(name, "status")
        self.client.will_set(status, contract.encode(contract.make_state(name, "offline")),
                             qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert self.connected.wait(5), "responder did not connect"
        if heartbeat:
            self.heartbeat()

    def _on_connect(self, client, userdata, flags, rc, props):
        client.subscribe([(contract.topic(self.name, "command"), 1),
                          (contract.broadcast_topic(self.manager), 1)])
        client.publish(contract.topic(self.name, "status"),
                       contract.encode(contract.make_state(self.name, "online")), 1, True)
        self.connected.set()

    def heartbeat(self, **fields):
        beat = {"v": 1, "ts": contract.now_rfc3339(), "agent": self.name, "ok": True,
                "uptime": 12.5, "mem_kb": 2048, "cpu": 0.5, "errors": {"bad-json": 1},
                "interval": 600, "version": self.version, **fields}
        self.client.publish(contract.topic(self.name, "heartbeat"),
                            contract.encode(beat), 1, True).wait_for_publish(5)

    def _on_message(self, client, userdata, msg):
        command = contract.parse_command(msg.payload)
        self.commands.append((msg.topic, command))
        if self.mode == "mute":
            return
        if self.mode == "fail":
            reply = contract.make_reply(self.name, command, False, error="reload-failed")
        else:
            result = {"version": self.version} if command["verb"] == "version-report" else {}
            reply = contract.make_reply(self.name, command, True, result=result)
        client.publish(contract.topic(self.name, "status"), contract.encode(reply), 1)

    def stop(self):
        """Clean goodbye: publish offline, then disconnect (no Will)."""
        self.client.publish(contract.topic(self.name, "status"),
                            contract.encode(contract.make_state(self.name, "offline")),
                            1, True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    def crash(self):
        """Vanish without DISCONNECT: the broker publishes the Will."""
        # shutdown, not close: the loop thread sees EOF at once and exits
        self.client.socket().shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()


def clear_retained(broker, names):
    """Remove retained messages these agents left, so the shared broker stays clean."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect(broker.host, broker.port)
    c.loop_start()
    for n in names:
        for kind in ("status", "heartbeat"):
            c.publish(contract.topic(n, kind), b"", 1, True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@contextlib.contextmanager
def serving_exporter(inv, bus, port: int):
    """hatchery's exporter on ``port`` in a thread, for the block; stopped afterwards."""
    from hatchery.observe import exporter
    stop, ready = threading.Event(), threading.Event()
    worker = threading.Thread(target=exporter.serve, args=(inv, bus),
                              kwargs={"port": port, "stop": stop,
                                      "on_ready": lambda addr: ready.set()})
    worker.start()
    try:
        assert ready.wait(5), "the exporter did not start"
        yield
    finally:
        stop.set()
        worker.join(5)
