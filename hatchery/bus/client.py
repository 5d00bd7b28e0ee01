"""The manager's connection to the bus: one paho client, request/reply on top.

``BusClient`` owns ONE paho client (callback API v2, MQTT v5, TCP_NODELAY) with
its network loop on a background thread. Everything else is built from two
primitives: ``listen`` (route messages matching some filters to a callback)
and ``publish``. Callbacks never block: they record what arrived under a
Condition and wake the waiting caller.

Topics and payloads come from ``agent_kit.contract``; nothing here spells a
fleet topic by hand.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import ssl
import threading
import time
from typing import Callable, Iterable, Optional

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent_kit import bus, contract, signing
from hatchery.bus import PROBE_PREFIX
from hatchery.bus.messages import Message
from hatchery.bus.requests import Pending, Route, checked_name, status_filters
from hatchery.errors import BusError, UsageError

FIX_BROKER = "is the broker running? invoke broker.deploy / broker.status"

class BusClient:
    """Context manager over one MQTT connection to the broker."""

    def __init__(self, host: str, port: int, *, client_id: Optional[str] = None,
                 username: Optional[str] = None, password: Optional[str] = None,
                 tls: "ssl.SSLContext | bool | None" = None, connect_timeout: float = 5,
                 signing_keys: Optional[Callable[[Optional[str]], Optional[bytes]]] = None,
                 protocol: int = mqtt.MQTTv5, unix_socket: Optional[str] = None):
        """``signing_keys(agent)`` gives the key to sign a command to ``agent`` with
        (``signing_keys(None)``: the broadcast key); None or a None key: unsigned.
        ``protocol``: MQTT v5 (the default: commands carry a message expiry) or
        ``mqtt.MQTTv311`` (for measurements). ``unix_socket``: connect to the
        broker's control listener at that path instead of host:port
        (hatchery.configs.broker.control_socket)."""
        self.host, self.port = host, port
        self.unix_socket = unix_socket
        self._signing_keys = signing_keys
        self.client_id = client_id or f"hatchery-{secrets.token_hex(6)}"
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._routes: tuple = ()              # Route, one per listen() block
        self._filters: dict = {}              # filter -> (refcount, qos)
        self._subacks: dict = {}              # mid -> list of reason codes
        self._suback_cond = threading.Condition()
        self._client = self._make_client(username, password, tls, protocol)
        self._refused_fix = ("check the username/password and the broker's ACL" if username else
                             "the broker requires credentials: run invoke broker.deploy to issue them")

    # --- connection -------------------------------------------------------------

    def _make_client(self, username, password, tls, protocol) -> mqtt.Client:
        # THE paho factory (TCP_NODELAY on TCP sockets, reconnect backoff) is agent_kit's
        context = tls if isinstance(tls, ssl.SSLContext) else (
            ssl.create_default_context() if tls else None)
        client = bus.new_client(self.client_id, username=username, password=password,
                                tls_context=context, protocol=protocol,
                                transport="unix" if self.unix_socket else "tcp")
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def __enter__(self) -> "BusClient":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and wait for CONNACK; BusError (with the fix) on any failure."""
        try:
            bus.connect_and_wait(self._client, self.unix_socket or self.host, self.port,
                                 self.connect_timeout)
        except bus.BusError as exc:   # the one place the kit's error becomes ours
            self.close()
            raise BusError(str(exc), self._refused_fix if exc.refused else FIX_BROKER) from None

    @property
    def address(self) -> str:
        return self.unix_socket or f"{self.host}:{self.port}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            client.disconnect()   # do not retry with credentials that were refused
        else:
            self._resubscribe()

    def _resubscribe(self) -> None:
        """After a reconnect the broker forgot our subscriptions (clean start)."""
        with self._lock:
            wanted = [(f, qos) for f, (_, qos) in self._filters.items()]
        if wanted:
            self._client.subscribe(wanted)

    # --- routing ----------------------------------------------------------------

    def _on_message(self, client, userdata, msg) -> None:
        topic = msg.topic
        props = bus.received_properties(msg.properties)     # {} unless it carried any
        message = Message(topic, msg.payload, bool(msg.retain), time.time(), props or None,
                          not props or not contract.disallowed_properties(topic, props))
        levels = None
        for route in self._routes:     # a tuple replaced on change: no lock, no copy
            if topic in route.exact:
                route.callback(message)
            elif route.wild:
                levels = levels or topic.split("/")
                if route.matches_wild(levels):
                    route.callback(message)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._suback_cond:
            self._subacks[mid] = reason_codes
            self._suback_cond.notify_all()

    @contextlib.contextmanager
    def listen(self, filters: Iterable[str], callback: Callable[[Message], None], *,
               qos: int = 1, timeout: float = 5.0):
        """Route messages matching ``filters`` to ``callback`` while inside the block.

        Subscribes (one SUBSCRIBE packet) and waits for the SUBACK before
        yielding, so a command published inside the block cannot be answered
        before we listen. ``callback`` runs on the network thread: keep it short.
        """
        filters = tuple(filters)
        route = Route(filters, callback)
        with self._lock:
            self._routes = (*self._routes, route)
        try:
            self._subscribe(filters, qos, timeout)
            yield self
        finally:
            with self._lock:
                self._routes = tuple(r for r in self._routes if r is not route)
            self._unsubscribe(filters)

    def _subscribe(self, filters: tuple, qos: int, timeout: float) -> None:
        with self._lock:
            for f in filters:
                count, old_qos = self._filters.get(f, (0, qos))
                self._filters[f] = (count + 1, max(qos, old_qos))
        # Re-sending a SUBSCRIBE for a filter we already hold is harmless and
        # makes the broker deliver its retained messages again: wanted for snapshots.
        rc, mid = self._client.subscribe([(f, qos) for f in filters])
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise BusError(f"subscribe failed: {mqtt.error_string(rc)}", FIX_BROKER)
        codes = self._wait_suback(mid, timeout)
        refused = [f for f, code in zip(filters, codes) if code.is_failure]
        if refused:
            raise BusError(f"the broker refused the subscription to {', '.join(refused)}",
                           "check the manager's ACL on the broker")

    def _wait_suback(self, mid: int, timeout: float) -> list:
        with self._suback_cond:
            if not self._suback_cond.wait_for(lambda: mid in self._subacks, timeout):
                raise BusError(f"no SUBACK from the broker within {timeout}s", FIX_BROKER)
            return self._subacks.pop(mid)

    def _unsubscribe(self, filters: tuple) -> None:
        gone = []
        with self._lock:
            for f in filters:
                count, qos = self._filters.get(f, (1, 0))
                if count <= 1:
                    self._filters.pop(f, None)
                    gone.append(f)
                else:
                    self._filters[f] = (count - 1, qos)
        if gone and self._client.is_connected():
            self._client.unsubscribe(gone)

    # --- publishing ---------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout: float = 5.0, expiry: Optional[float] = None) -> None:
        """Publish and, for QoS > 0, wait until the broker has acknowledged it."""
        info = self._send(topic, payload, qos=qos, retain=retain, expiry=expiry)
        if qos > 0:
            try:
                info.wait_for_publish(timeout)
            except (ValueError, RuntimeError) as exc:
                raise BusError(f"publish to {topic} failed: {exc}", FIX_BROKER) from None
            if not info.is_published():
                raise BusError(f"the broker did not acknowledge {topic} within {timeout}s",
                               FIX_BROKER)

    def _send(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
              expiry: Optional[float] = None) -> mqtt.MQTTMessageInfo:
        """Queue a publish without waiting; raise if the client refused it."""
        properties = None
        if expiry and self.protocol == mqtt.MQTTv5:   # 3.1.1 has no message expiry
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(1, math.ceil(expiry))
        info = self._client.publish(topic, payload, qos=qos, retain=retain,
                                    properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_QUEUE_SIZE):
            raise BusError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}",
                           FIX_BROKER)
        return info

    # --- small helpers ------------------------------------------------------------

    def subscribe_collect(self, topics: Iterable[str], duration: float, *,
                          qos: int = 1) -> list:
        """Every message on ``topics`` during ``duration`` seconds, in arrival order."""
        got: list = []
        with self.listen(topics, got.append, qos=qos):
            time.sleep(duration)
        return list(got)

    def retained(self, topics: Iterable[str], *, timeout: float = 5.0) -> dict:
        """The retained messages on ``topics`` as {topic: payload}: a snapshot.

        No fixed settle time: after subscribing we publish a marker on a private
        topic. The broker queues the retained messages while handling our
        SUBSCRIBE, before it reads the marker, and everything is QoS 0 on one
        connection, so the marker comes back after the last retained message.
        """
        return {m.topic: m.payload for m in self.retained_messages(topics, timeout=timeout)}

    def retained_messages(self, topics: Iterable[str], *, timeout: float = 5.0) -> list:
        """Like ``retained`` but as Message objects (with arrival times)."""
        marker = f"{PROBE_PREFIX}/{self.client_id}/{secrets.token_hex(4)}"
        got: list = []
        done = threading.Event()

        def on_message(message: Message) -> None:
            if message.topic == marker:
                done.set()
            elif message.retain and not done.is_set():
                got.append(message)

        # QoS 0 both ways: a QoS 1 retained backlog could be held behind the
        # broker's inflight window while a QoS 0 marker overtakes it.
        with self.listen([*topics, marker], on_message, qos=0, timeout=timeout):
            self._send(marker, b"", qos=0)
            if not done.wait(timeout):
                raise BusError(f"snapshot marker did not come back within {timeout}s",
                               FIX_BROKER)
        return list(got)

    def ping(self, *, timeout: float = 5.0) -> float:
        """Milliseconds for a QoS 1 message to go to the broker and back to us."""
        arrived = threading.Event()
        token = secrets.token_hex(8).encode()

        def on_message(message: Message) -> None:
            if message.payload == token:
                arrived.set()

        topic = f"{PROBE_PREFIX}/{self.client_id}/ping"
        with self.listen([topic], on_message, qos=1, timeout=timeout):
            started = time.perf_counter()
            self._send(topic, token, qos=1)
            if not arrived.wait(timeout):
                raise BusError(f"ping did not come back within {timeout}s", FIX_BROKER)
            return (time.perf_counter() - started) * 1000

    # --- request/reply ------------------------------------------------------------

    def request(self, names: list, verb: str, *, timeout: float,
                broadcast_manager: Optional[str] = None) -> list:
        """Send ``verb`` to each agent (or once on the broadcast topic) and collect replies.

        Returns one Reply per name, in the order given. Waits until every agent
        has answered or is known offline (its Last Will is retained), or until
        ``timeout`` expires.
        """
        if verb not in contract.VERBS:
            raise UsageError(f"unknown verb {verb!r}",
                             f"use one of: {', '.join(contract.VERBS)}")
        names = list(dict.fromkeys(checked_name(n) for n in names))
        if not names:
            return []
        pending = Pending(names, verb)
        filters, qos = status_filters(names, broadcast_manager)
        with self.listen(filters, pending.on_message, qos=qos, timeout=timeout):
            if broadcast_manager:
                self._send_command(contract.broadcast_topic(broadcast_manager), verb,
                                   pending.expect(names), timeout, self._key(None))
            else:
                for name in names:
                    self._send_command(contract.topic(name, "command"), verb,
                                       pending.expect([name]), timeout, self._key(name))
            pending.wait(timeout)
        return pending.replies()

    def _key(self, name: Optional[str]) -> Optional[bytes]:
        return self._signing_keys(name) if self._signing_keys else None

    def _send_command(self, topic: str, verb: str, command_id: str, timeout: float,
                      key: Optional[bytes] = None) -> None:
        # Expiry: a command stuck in a queue must not run long after we stopped waiting
        command = contract.make_command(verb, command_id)
        if key:
            command = signing.sign_command(command, key)
        self._send(topic, contract.encode(command), qos=1, expiry=timeout)


