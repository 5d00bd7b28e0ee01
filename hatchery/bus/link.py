"""One MQTT connection for the manager: one I/O thread, flow control, keepalive and
reconnection, over TCP, TLS or a unix socket (reaching the broker and the
CONNECT/CONNACK handshake are ``bus.dial``).

Why not paho: its read path costs several ``recv`` calls and a few dozen
Python calls per message, three quarters of the manager's CPU in a
10,000-agent broadcast. Here one ``recv`` takes whatever the kernel holds
(often hundreds of messages), ``bus.wire.Reader`` decodes them, and the
QoS 1 acknowledgements of a whole read go back in one write.

Threads: callers queue bytes (``send``, ``publish``, ``subscribe``) under
one lock and wake the I/O thread through a socket pair; only the I/O thread
touches the broker's socket, so a TLS connection is never read and written
from two threads at once. Callbacks (``on_messages``) run on the I/O thread.
"""

from __future__ import annotations

import collections
import selectors
import socket
import ssl
import threading
import time
from typing import Callable, Optional

from hatchery.bus import encode, wire
from hatchery.bus.dial import RECV_SIZE, Endpoint, LinkError, Login, connect

DEFAULT_QUOTA = 20            # QoS 1 publishes in flight when the broker names no Receive Maximum
BACKOFF = (1.0, 5.0)          # reconnect delay, doubling from the first to the second: a watcher
                              # (heal --watch, monitor, dashboard) is back at most 5 s after a broker
                              # that moved or restarted accepts again (30 s would be half a failover)


class Ticket:
    """One packet awaiting its acknowledgement (PUBACK, SUBACK, UNSUBACK)."""

    __slots__ = ("done", "codes", "error")

    def __init__(self):
        self.done, self.codes, self.error = False, [], ""


class _Lost(Exception):
    """The connection is gone (read inside the I/O thread only)."""


class Link:
    """Context-free: ``open``, then ``publish``/``subscribe``/``unsubscribe``, then ``close``."""

    def __init__(self, endpoint: Endpoint, login: Login, *,
                 on_messages: Callable[[list], None], on_reconnect: Callable[[], None]):
        self.endpoint, self.login = endpoint, login
        self._on_messages, self._on_reconnect = on_messages, on_reconnect
        self._cond = threading.Condition()
        self._out = bytearray()                # bytes for the I/O thread to write
        self._tickets: dict = {}               # packet id -> Ticket
        self._queued: collections.deque = collections.deque()   # QoS 1 beyond the quota
        self._quota = self._inflight = self._last_id = 0
        self._max_out = wire.MAX_REMAINING
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[wire.Reader] = None
        self._connected = self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)    # a full pipe means a wake-up is pending: never block
        self._last_in = self._last_out = self._ping_at = 0.0
        self.reconnects = 0
        self.received = 0                      # PUBLISH packets decoded and handed on

    # --- opening and closing ----------------------------------------------------------

    def open(self, timeout: float) -> None:
        """Connect and wait for CONNACK, then start the I/O thread; LinkError on failure."""
        self._attach(*connect(self.endpoint, self.login, timeout))
        self._thread = threading.Thread(target=self._run, name=f"bus-{self.login.client_id}",
                                        daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Say DISCONNECT (when connected), flush, stop the I/O thread. Safe to call twice."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._fail_all("the connection was closed", keep_output=True)
            if self._connected:   # after what is queued, so that is still sent
                self._out += encode.disconnect(self.login.level)
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._drop_socket()
        for end in (self._wake_r, self._wake_w):
            end.close()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def dropped(self) -> int:
        """Packets from the broker dropped for what was inside them (see ``bus.wire``)."""
        return self._reader.dropped if self._reader else 0

    def _attach(self, sock: socket.socket, reader: wire.Reader, props: dict) -> None:
        sock.setblocking(False)
        with self._cond:
            self._sock, self._reader = sock, reader
            self._quota = props.get("ReceiveMaximum", DEFAULT_QUOTA)
            self._max_out = props.get("MaximumPacketSize", wire.MAX_REMAINING)
            self._inflight = 0
            self._connected = True
            self._last_in = self._last_out = time.monotonic()
            self._ping_at = 0.0

    def _drop_socket(self) -> None:
        with self._cond:
            sock, self._sock, self._connected = self._sock, None, False
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # --- what callers send ------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue bytes for the broker (a QoS 0 publish, a PINGREQ)."""
        with self._cond:
            self._require_connected()
            self._queue(data)

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
                expiry: int = 0) -> Optional[Ticket]:
        """Queue a PUBLISH; for QoS 1 the Ticket settles on its PUBACK."""
        level = self.login.level
        if not qos:
            data = encode.publish(level, topic, payload, retain=retain, expiry=expiry)
            self._check_size(data, topic)
            self.send(data)
            return None
        ticket = Ticket()
        with self._cond:
            self._require_connected()
            self._queued.append((topic, payload, retain, expiry, ticket))
            self._release()
        return ticket

    def subscribe(self, filters: list) -> Ticket:
        """Queue a SUBSCRIBE for [(filter, qos)]; the Ticket carries the SUBACK's codes."""
        return self._acknowledged(lambda pid: encode.subscribe(self.login.level, pid, filters))

    def unsubscribe(self, filters: list) -> Ticket:
        return self._acknowledged(lambda pid: encode.unsubscribe(self.login.level, pid, filters))

    def wait(self, ticket: Ticket, timeout: float) -> bool:
        """True once ``ticket`` is acknowledged; False on timeout. LinkError if the link broke."""
        with self._cond:
            self._cond.wait_for(lambda: ticket.done or ticket.error, timeout)
        if ticket.error:
            raise LinkError(ticket.error)
        return ticket.done

    def _acknowledged(self, build: Callable[[int], bytes]) -> Ticket:
        ticket = Ticket()
        with self._cond:
            self._require_connected()
            packet_id = self._packet_id()
            self._tickets[packet_id] = ticket
            self._queue(build(packet_id))
        return ticket

    def _release(self) -> None:
        """Move queued QoS 1 publishes into the outbox while the broker's quota allows (locked)."""
        while self._queued and self._inflight < self._quota:
            topic, payload, retain, expiry, ticket = self._queued.popleft()
            packet_id = self._packet_id()
            try:
                data = encode.publish(self.login.level, topic, payload, qos=1, retain=retain,
                                    packet_id=packet_id, expiry=expiry)
                self._check_size(data, topic)
            except (ValueError, LinkError) as exc:
                ticket.error = str(exc)
                continue
            self._tickets[packet_id] = ticket
            self._inflight += 1
            self._queue(data)

    def _check_size(self, data: bytes, topic: str) -> None:
        if len(data) > self._max_out:
            raise LinkError(f"a {len(data)}-byte message to {topic} exceeds the broker's "
                            f"maximum packet size ({self._max_out})")

    def _packet_id(self) -> int:
        for _ in range(65535):
            self._last_id = self._last_id % 65535 + 1
            if self._last_id not in self._tickets:
                return self._last_id
        raise LinkError("65535 packets await an acknowledgement")

    def _queue(self, data: bytes) -> None:
        was_empty = not self._out
        self._out += data
        if was_empty and threading.current_thread() is not self._thread:
            self._wake()

    def _require_connected(self) -> None:
        if not self._connected or self._closing:
            raise LinkError(f"not connected to the broker at {self.endpoint}")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass       # closed, or its buffer is full: a wake-up is pending either way

    # --- the I/O thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            try:
                self._serve()
            except _Lost as lost:
                self._lost(str(lost))
            except Exception as exc:    # a bug must not leave a dead thread behind a live link
                self._lost(f"the bus thread failed: {exc!r}")
        self._drop_socket()

    def _serve(self) -> None:
        """Read, dispatch, write and keep alive until the connection or the link ends."""
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        selector.register(self._sock, selectors.EVENT_READ)
        writing = False
        try:
            while True:
                for key, _ in selector.select(1.0):
                    if key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self._read()
                self._keepalive()
                pending = self._flush()
                if self._closing:
                    return
                if pending != writing:
                    writing = pending
                    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if pending else 0)
                    selector.modify(self._sock, events)
        finally:
            selector.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _read(self) -> None:
        sock, reader = self._sock, self._reader
        while True:
            try:
                data = sock.recv(RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:
                raise _Lost(f"reading from the broker failed: {exc}") from None
            if not data:
                raise _Lost("the broker closed the connection")
            self._last_in = time.monotonic()
            try:
                messages, acks, controls = reader.feed(data, time.time())
            except wire.Malformed as exc:
                raise _Lost(f"the broker sent a malformed packet: {exc}") from None
            if acks:
                with self._cond:
                    self._out += encode.puback(acks)
            if messages:
                self.received += len(messages)
                self._on_messages(messages)   # BusClient guards each callback
            for control in controls:
                self._control(*control)
            if len(data) < RECV_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        level = self.login.level
        if kind in (wire.PUBACK, wire.SUBACK, wire.UNSUBACK):
            try:
                packet_id, codes = wire.parse_ack(level, kind, body)
            except wire.Malformed as exc:
                raise _Lost(f"the broker sent a malformed acknowledgement: {exc}") from None
            self._settle(packet_id, codes, kind == wire.PUBACK)
        elif kind == wire.DISCONNECT:
            code, _ = wire.parse_disconnect(level, body)
            raise _Lost(f"the broker disconnected us (reason {code:#04x})")
        elif kind != wire.PINGRESP:
            raise _Lost(f"the broker sent an unexpected packet (type {kind})")

    def _settle(self, packet_id: int, codes: list, is_puback: bool) -> None:
        with self._cond:
            ticket = self._tickets.pop(packet_id, None)
            if ticket is None:
                return
            ticket.done, ticket.codes = True, codes
            if is_puback:
                self._inflight -= 1
                self._release()
            self._cond.notify_all()

    def _flush(self) -> bool:
        """Write what is queued; True if some is left for when the socket is writable."""
        with self._cond:
            if not self._out:
                return False
            try:
                sent = self._sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return True
            except OSError as exc:
                raise _Lost(f"writing to the broker failed: {exc}") from None
            del self._out[:sent]
            self._last_out = time.monotonic()
            return bool(self._out)

    def _keepalive(self) -> None:
        """PINGREQ when we have been quiet (or the broker has) for half the keepalive."""
        now, half = time.monotonic(), self.login.keepalive / 2
        if self._ping_at and self._last_in < self._ping_at and now - self._ping_at > half * 2:
            raise _Lost(f"no answer from the broker for {self.login.keepalive}s")
        if self._last_in >= self._ping_at:
            self._ping_at = 0.0
        if not self._ping_at and (now - self._last_out >= half or now - self._last_in >= half):
            self._ping_at = now
            with self._cond:
                self._out += encode.PINGREQ_PACKET

    # --- losing the connection and getting it back -------------------------------------

    def _lost(self, why: str) -> None:
        self._drop_socket()
        with self._cond:
            self._fail_all(why)
        delay = BACKOFF[0]
        while not self._closing:
            with self._cond:
                self._cond.wait_for(lambda: self._closing, delay)
            if self._closing:
                return
            try:
                self._attach(*connect(self.endpoint, self.login, max(5.0, delay)))
            except LinkError:
                delay = min(delay * 2, BACKOFF[1])
                continue
            self.reconnects += 1
            self._on_reconnect()
            return

    def _fail_all(self, why: str, keep_output: bool = False) -> None:
        """Every waiter learns the connection is gone (locked)."""
        for ticket in self._tickets.values():
            ticket.error = why
        for *_, ticket in self._queued:
            ticket.error = why
        self._tickets.clear()
        self._queued.clear()
        if not keep_output:
            self._out.clear()
        self._inflight = 0
        self._cond.notify_all()
