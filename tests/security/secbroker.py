"""A real Mosquitto with our own full config (no anonymous), a small paho probe, and the
hostile neighbour's idle-socket flood.

tests/conftest.py's broker allows anonymous clients; the security tests need
the whole config to be theirs, so they write it here and run /usr/sbin/mosquitto
themselves. Each broker gets a free port and its own directory, and is killed
by the fixture that started it.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import paho.mqtt.client as mqtt

from hatchery.core.ports import free_port
from hatchery.provision.credentials import stored_secret

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class SecureBroker:
    port: int
    conf: Path
    log: Path
    proc: subprocess.Popen
    host: str = "127.0.0.1"

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_fleet_broker(workdir: Path, manager: str, agents: list, extra: tuple = ()) -> tuple:
    """A broker enforcing a fresh password file and the fleet ACL: (broker, {user: secret});
    ``extra``: more config lines."""
    from hatchery.security import acl
    from hatchery.security import passwords as pw
    secrets = {u: pw.new_secret() for u in acl.fleet_users(manager, agents)}
    passwd, acl_file = workdir / "passwd", workdir / "acl"
    pw.write_private(passwd, pw.render_password_file(
        {u: pw.hash_password(s) for u, s in secrets.items()}))
    pw.write_private(acl_file, acl.render_acl(acl.fleet_grants(manager, agents)))
    broker = start_secure_broker(workdir / "broker", password_file=passwd, acl_file=acl_file,
                                 extra=extra)
    return broker, secrets


def start_secure_broker(workdir: Path, *, password_file: Optional[Path] = None,
                        acl_file: Optional[Path] = None, tls: Optional[dict] = None,
                        anonymous: bool = False, extra: tuple = ()) -> SecureBroker:
    """Mosquitto on 127.0.0.1:<free port>; ``tls`` = {cafile, certfile, keyfile}."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    lines = ["per_listener_settings false", f"listener {port} 127.0.0.1",
             f"allow_anonymous {'true' if anonymous else 'false'}",
             "set_tcp_nodelay true", "max_packet_size 65536", f"user {user}",
             "log_dest stdout", "log_type all"]
    if password_file:
        lines.append(f"password_file {password_file}")
    if acl_file:
        lines.append(f"acl_file {acl_file}")
    for key, value in (tls or {}).items():
        lines.append(f"{key} {value}")
    lines += list(extra)
    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = workdir / "mosquitto.log"
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    broker = SecureBroker(port, conf, log, proc)
    _wait_port(broker)
    return broker


def _wait_port(broker: SecureBroker, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {broker.log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", broker.port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"mosquitto not listening on {broker.port}")


class Probe:
    """One paho client (VERSION2, MQTT v5, TCP_NODELAY) that remembers what it receives."""

    def __init__(self, broker: SecureBroker, username: Optional[str] = None,
                 password: Optional[str] = None, *, tls_context=None, host: Optional[str] = None,
                 client_id: Optional[str] = None):
        self.host = host or broker.host
        self.port = broker.port
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_context is not None:
            self.client.tls_set_context(tls_context)
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.connack = threading.Event()
        self.reason = None
        self.subacks: dict = {}
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.inbox.put((msg.topic, msg.payload))
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        self.connack.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subacks[mid] = reason_codes

    def connect(self, timeout: float = 5.0):
        """Connect; return the CONNACK reason code (a failure does not raise)."""
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self.connack.wait(timeout):
            raise TimeoutError("no CONNACK")
        if self.reason.is_failure:
            self.client.loop_stop()
        return self.reason

    def subscribe(self, topic_filter: str, timeout: float = 5.0) -> list:
        _, mid = self.client.subscribe(topic_filter, qos=1)
        deadline = time.monotonic() + timeout
        while mid not in self.subacks:
            if time.monotonic() > deadline:
                raise TimeoutError("no SUBACK")
            time.sleep(0.002)
        return self.subacks.pop(mid)

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0, retain: bool = False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        return info

    def receive(self, timeout: float = 5.0) -> tuple:
        return self.inbox.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def tcp_login(inv, user: str) -> bool:
    """Can ``user`` (raw paho, TCP to 127.0.0.1, its stored secret) log in to ``inv``'s broker now?"""
    probe = Probe(inv.broker, user, stored_secret(inv, user), host="127.0.0.1")
    try:
        return not probe.connect(timeout=2).is_failure
    except (TimeoutError, OSError):
        return False
    finally:
        probe.client.loop_stop()
        probe.client.disconnect()


def flood(port: int, count: int, settle: float = 0.3) -> list:
    """``count`` idle TCP connections to 127.0.0.1:``port`` that never send CONNECT (the hostile
    neighbour), after ``settle`` seconds: the broker accepts (and refuses) them in its own time."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=2) for _ in range(count)]
    time.sleep(settle)
    return socks
