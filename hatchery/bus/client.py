"""The manager's connection to the bus: one MQTT link, request/reply on top.

``BusClient`` owns ONE connection (``bus.link``: MQTT v5 or 3.1.1, TCP with
TCP_NODELAY, TLS or a unix socket, reconnecting with a 1..5 s backoff) whose
I/O thread decodes what arrives in batches (``bus.wire``). Everything else
is built from two primitives: ``listen`` (route messages matching some
filters to a callback) and ``publish``. Callbacks never block: they record
what arrived under a Condition and wake the waiting caller.

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

from agent_kit import contract, signing
from hatchery.bus import PROBE_PREFIX, wire
from hatchery.bus.dial import Endpoint, LinkError, Login
from hatchery.bus.link import Link
from hatchery.bus.messages import Message
from hatchery.bus.requests import Pending, Route, checked_name, status_filters
from hatchery.bus.standing import StatusBoard
from hatchery.core.collector import collector_paused
from hatchery.errors import BusError, UsageError

FIX_BROKER = "is the broker running? invoke broker.deploy / broker.status"
# Wildcard filters that carry every agent's status topic, the standing one first.
STATUS_COVERS = (StatusBoard.FILTER, f"{contract.FLEET_PREFIX}/+/+", f"{contract.FLEET_PREFIX}/#")
__all__ = ["BusClient", "Message", "FIX_BROKER"]


class BusClient:
    """Context manager over one MQTT connection to the broker."""

    def __init__(self, host: str, port: int, *, client_id: Optional[str] = None,
                 username: Optional[str] = None, password: Optional[str] = None,
                 tls: "ssl.SSLContext | bool | None" = None, connect_timeout: float = 5,
                 signing_keys: Optional[Callable[[Optional[str]], Optional[bytes]]] = None,
                 protocol: int = wire.MQTTv5, unix_socket: Optional[str] = None):
        """``signing_keys(agent)`` gives the key to sign a command to ``agent`` with
        (``signing_keys(None)``: the broadcast key); None or a None key: unsigned.
        ``protocol``: MQTT v5 (``wire.MQTTv5``, the default: commands carry a
        message expiry) or 3.1.1 (``wire.MQTTv311``). ``unix_socket``: connect to
        the broker's control listener at that path instead of host:port
        (hatchery.configs.broker.control_socket)."""
        if protocol not in (wire.MQTTv311, wire.MQTTv5):
            raise UsageError(f"unknown MQTT protocol level {protocol!r}", "use 4 (3.1.1) or 5")
        self.host, self.port = host, port
        self.unix_socket = unix_socket
        self._signing_keys = signing_keys
        self.client_id = client_id or f"hatchery-{secrets.token_hex(6)}"
        self.protocol = protocol
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._routes: tuple = ()              # Route, one per listen() block
        self._filters: dict = {}              # filter -> (refcount, qos)
        self._board: Optional[StatusBoard] = None
        self.callback_errors = 0              # callbacks that raised (counted, never fatal)
        context = tls if isinstance(tls, ssl.SSLContext) else (
            ssl.create_default_context() if tls else None)
        self._link = Link(Endpoint(host, port, unix_socket, context),
                          Login(self.client_id, username, password, protocol),
                          on_messages=self._dispatch, on_reconnect=self._resubscribe)
        self._refused_fix = ("check the username/password and the broker's ACL" if username else
                             "the broker requires credentials: run invoke broker.deploy to issue them")

    # --- connection -------------------------------------------------------------

    def __enter__(self) -> "BusClient":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and wait for CONNACK; BusError (with the fix) on any failure."""
        try:
            self._link.open(self.connect_timeout)
        except LinkError as exc:   # the one place the link's error becomes ours
            self.close()
            raise BusError(str(exc), self._refused_fix if exc.refused else FIX_BROKER) from None

    @property
    def address(self) -> str:
        return self.unix_socket or f"{self.host}:{self.port}"

    @property
    def received(self) -> int:
        """Messages received so far (every one, whichever listener took it)."""
        return self._link.received

    @property
    def dropped(self) -> int:
        """Messages from the broker dropped as malformed (``bus.wire``), so far."""
        return self._link.dropped

    def close(self) -> None:
        self._link.close()

    def _resubscribe(self) -> None:
        """After a reconnect the broker forgot our subscriptions (clean start)."""
        if self._board is not None:
            self._board.forget()      # the retained states come again with the SUBSCRIBE
        with self._lock:
            wanted = [(f, qos) for f, (_, qos) in self._filters.items()]
        if wanted:
            self._link.subscribe(wanted)

    # --- routing ----------------------------------------------------------------

    def _dispatch(self, messages: list) -> None:
        routes = self._routes          # a tuple replaced on change: no lock, no copy
        for message in messages:
            topic = message.topic
            for route in routes:
                if topic in route.exact or (route.wild is not None and route.wild(topic)):
                    try:
                        route.callback(message)
                    except Exception:     # one bad callback must not stop the bus thread
                        self.callback_errors += 1

    @contextlib.contextmanager
    def listen(self, filters: Iterable[str], callback: Callable[[Message], None], *,
               qos: int = 1, timeout: float = 5.0, replay: bool = True):
        """Route messages matching ``filters`` to ``callback`` while inside the block.

        Subscribes (one SUBSCRIBE packet) and waits for the SUBACK before
        yielding, so a command published inside the block cannot be answered
        before we listen. ``replay=False``: filters this client already holds
        (``standing_status``) are not subscribed again, so the broker does not
        send their retained messages again. ``callback`` runs on the network
        thread: keep it short.
        """
        filters = tuple(filters)
        route = self._hold(filters, callback, qos, timeout, replay)
        try:
            yield self
        finally:
            self._release(route, filters)

    def _hold(self, filters: tuple, callback, qos: int, timeout: float, replay: bool) -> Route:
        route = Route(filters, callback)
        with self._lock:
            self._routes = (*self._routes, route)
            fresh = [f for f in filters if replay or self._filters.get(f, (0, -1))[1] < qos]
            for f in filters:
                count, old_qos = self._filters.get(f, (0, qos))
                self._filters[f] = (count + 1, max(qos, old_qos))
        try:
            if fresh:
                self._subscribe(tuple(fresh), qos, timeout)
        except BaseException:
            self._release(route, filters)
            raise
        return route

    def _release(self, route: Route, filters: tuple) -> None:
        with self._lock:
            self._routes = tuple(r for r in self._routes if r is not route)
        self._unsubscribe(filters)

    def _subscribe(self, filters: tuple, qos: int, timeout: float) -> None:
        # Re-sending a SUBSCRIBE for a filter we already hold is harmless and
        # makes the broker deliver its retained messages again: wanted for snapshots.
        try:
            ticket = self._link.subscribe([(f, qos) for f in filters])
            if not self._link.wait(ticket, timeout):
                raise BusError(f"no SUBACK from the broker within {timeout}s", FIX_BROKER)
        except LinkError as exc:
            raise BusError(f"subscribe failed: {exc}", FIX_BROKER) from None
        refused = [f for f, code in zip(filters, ticket.codes) if code >= 0x80]
        if refused:
            raise BusError(f"the broker refused the subscription to {', '.join(refused)}",
                           "check the manager's ACL on the broker")

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
        if gone and self._link.connected:
            with contextlib.suppress(LinkError):
                self._link.unsubscribe(gone)

    # --- publishing ---------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout: float = 5.0, expiry: Optional[float] = None) -> None:
        """Publish and, for QoS > 0, wait until the broker has acknowledged it."""
        ticket = self._send(topic, payload, qos=qos, retain=retain, expiry=expiry)
        if ticket is None:
            return
        try:
            acknowledged = self._link.wait(ticket, timeout)
        except LinkError as exc:
            raise BusError(f"publish to {topic} failed: {exc}", FIX_BROKER) from None
        if not acknowledged:
            raise BusError(f"the broker did not acknowledge {topic} within {timeout}s", FIX_BROKER)

    def _send(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
              expiry: Optional[float] = None):
        """Queue a publish without waiting; raise if it cannot be sent. A Ticket for QoS 1."""
        seconds = max(1, math.ceil(expiry)) if expiry and self.protocol == wire.MQTTv5 else 0
        try:
            return self._link.publish(topic, payload, qos=min(qos, 1), retain=retain,
                                      expiry=seconds)
        except (LinkError, ValueError) as exc:
            raise BusError(f"publish to {topic} failed: {exc}", FIX_BROKER) from None

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
        got: list = []
        done = threading.Event()

        def on_message(message: Message) -> None:
            if message.retain and not done.is_set():
                got.append(message)

        # QoS 0 both ways: a QoS 1 retained backlog could be held behind the
        # broker's inflight window while a QoS 0 marker overtakes it.
        with collector_paused(), self.listen(topics, on_message, qos=0, timeout=timeout):
            self._await_marker(done, timeout)
        return got

    def _await_marker(self, done: threading.Event, timeout: float) -> None:
        """Publish a private marker and wait for it: what the broker queued before is in."""
        marker = f"{PROBE_PREFIX}/{self.client_id}/{secrets.token_hex(4)}"
        with self.listen([marker], lambda message: done.set(), qos=0, timeout=timeout):
            self._send(marker, b"", qos=0)
            if not done.wait(timeout):
                raise BusError(f"snapshot marker did not come back within {timeout}s",
                               FIX_BROKER)

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

    # --- the standing status subscription ------------------------------------------

    @contextlib.contextmanager
    def standing_status(self, *, timeout: float = 5.0):
        """Keep ``fleet/+/status`` subscribed for the block; yields the StatusBoard.

        For long-running roles (heal --watch, the dashboard, the exporter): each
        ``request`` inside the block reuses this subscription, so it reads one
        message per agent (its reply) instead of two (the retained state the
        broker re-sends on every SUBSCRIBE, then the reply), and waits for no
        SUBACK. The board knows who is offline from the retained states read
        once at the start and the live stream after it.
        """
        board = StatusBoard()
        done = threading.Event()
        route = self._hold((board.FILTER,), board.on_message, 0, timeout, True)
        try:
            self._await_marker(done, timeout)
            previous, self._board = self._board, board
            try:
                yield board
            finally:
                self._board = previous
        finally:
            self._release(route, (board.FILTER,))

    # --- request/reply ------------------------------------------------------------

    def request(self, names: list, verb: str, *, timeout: float,
                broadcast_manager: Optional[str] = None, instances: Optional[dict] = None,
                answers_only: bool = False) -> list:
        """Send ``verb`` to each agent (or once on the broadcast topic) and collect replies.

        Returns one Reply per name, in the order given. Waits until every agent
        has answered or is known offline (its Last Will is retained), or until
        ``timeout`` expires. ``instances`` ({agent: instance}, from the runtime):
        only a reply or Will naming that instance settles the agent; other
        replies to its command id are kept in ``Reply.others``. ``answers_only``:
        a retained or live offline state does not settle anyone (a check that
        must hear the agent itself, which anyone with its password could fake).
        """
        if verb not in contract.VERBS:
            raise UsageError(f"unknown verb {verb!r}",
                             f"use one of: {', '.join(contract.VERBS)}")
        names = list(dict.fromkeys(checked_name(n) for n in names))
        if not names:
            return []
        with collector_paused():        # a reply and its retained state per agent stay alive
            return self._request(names, verb, timeout, broadcast_manager, instances, answers_only)

    def _request(self, names: list, verb: str, timeout: float, broadcast_manager: Optional[str],
                 instances: Optional[dict], answers_only: bool) -> list:
        pending = Pending(names, verb, instances, answers_only)
        board = self._board
        # The retained states a fresh SUBSCRIBE brings are read only to settle agents known
        # offline: with a board (standing_status) they are known already, and a request
        # that only takes answers has no use for them. Either way, a status subscription
        # this client already holds carries the replies: no SUBSCRIBE, no retained burst.
        held = self._held_status(names) if board is not None or answers_only else None
        filters, qos = held or status_filters(names, broadcast_manager)
        with self.listen(filters, pending.on_message, qos=qos, timeout=timeout,
                         replay=held is None):
            if board is not None:
                pending.seed(board.states)
            if broadcast_manager:
                self._send_command(contract.broadcast_topic(broadcast_manager), verb,
                                   pending.expect(names), timeout, self._key(None))
            else:
                for name in names:
                    self._send_command(contract.topic(name, "command"), verb,
                                       pending.expect([name]), timeout, self._key(name))
            pending.wait(timeout)
        return pending.replies()

    def _held_status(self, names: list) -> Optional[tuple]:
        """(filters, qos) of a status subscription this client holds that carries the status
        topic of every one of ``names`` (``standing_status``, fleet.heal's live ``fleet/+/+``,
        the rollout gate's per-agent topics), or None.

        Never a second, overlapping filter: under MQTT v5 Mosquitto sends a message once per
        matching subscription (measured on 2.0.11: ``fleet/+/status`` and ``fleet/a/status``
        held together brought each reply twice), which would undo the saving."""
        with self._lock:
            held = dict(self._filters)
        for wildcard in STATUS_COVERS:
            if wildcard in held:
                return (wildcard,), held[wildcard][1]
        topics = tuple(contract.topic(name, "status") for name in names)
        if all(topic in held for topic in topics):
            return topics, min(held[topic][1] for topic in topics)
        return None

    def _key(self, name: Optional[str]) -> Optional[bytes]:
        return self._signing_keys(name) if self._signing_keys else None

    def _send_command(self, topic: str, verb: str, command_id: str, timeout: float,
                      key: Optional[bytes] = None) -> None:
        # Expiry: a command stuck in a queue must not run long after we stopped waiting
        command = contract.make_command(verb, command_id)
        if key:
            command = signing.sign_command(command, key)
        self._send(topic, contract.encode(command), qos=1, expiry=timeout)
