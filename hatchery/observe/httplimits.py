"""Limits for a small threaded HTTP server facing a hostile neighbour (fleet.dashboard).

The standard library's ``ThreadingHTTPServer`` gives every socket a thread, waits
forever for a request, and checks a password as fast as it is asked. Measured
on the dashboard before these limits: 32 event streams from one local client
locked every viewer out, their slots stayed taken 2-11 s after it left, an
idle socket held its thread forever, and password guesses ran at 850-1,400 a
second. Here, per client address (an IPv6 address counts by its /64):

- ``Admission``: at most so many open connections (and threads) in all and
  per address, and so many event streams in all and per address, so that one
  address cannot take every slot;
- ``DeadlineReader``: a request (line and headers) must arrive whole within a
  deadline, and an idle keep-alive connection is closed after it, so a
  slowloris that never finishes its request is dropped within seconds;
- ``GuessThrottle``: after a few wrong passwords an address waits, twice as
  long after each further one; while it waits its requests are refused
  without checking the password, and every other address logs in as before.

Pure logic over sockets and clocks: no HTTP here (``observe.dashboard`` uses it).
"""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from typing import Callable

MAX_CONNECTIONS = 256           # open sockets (one thread each), all addresses together
CONNECTIONS_PER_ADDRESS = 16
STREAMS_PER_ADDRESS = 8         # of the dashboard's MAX_STREAMS
REQUEST_DEADLINE = 5.0          # seconds to send a whole request; also the keep-alive idle limit
WRITE_TIMEOUT = 10.0            # a viewer that stops reading is dropped after this
FAILURES_ALLOWED = 5            # wrong passwords from one address before it must wait
FIRST_WAIT, LONGEST_WAIT = 1.0, 300.0
FORGET_AFTER = 900.0            # seconds without a failure: the address starts afresh
TRACKED_ADDRESSES = 4096        # addresses the throttle remembers (the oldest go first)


def address_key(host: str) -> str:
    """The unit the limits count by: an IPv4 address, or an IPv6 /64 (one host's share)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Admission:
    """Connections and event streams per address, and in all; thread-safe."""

    def __init__(self, max_streams: int, *, max_connections: int = MAX_CONNECTIONS,
                 per_address: int = CONNECTIONS_PER_ADDRESS,
                 streams_per_address: int = STREAMS_PER_ADDRESS):
        self.max_connections, self.per_address = max_connections, per_address
        self.max_streams, self.streams_per_address = max_streams, streams_per_address
        self._lock = threading.Lock()
        self._connections: dict = {}
        self._streams: dict = {}

    def connect(self, key: str) -> bool:
        """Admit one more connection from ``key``; False if a limit is reached."""
        with self._lock:
            return _take(self._connections, key, self.max_connections, self.per_address)

    def disconnect(self, key: str) -> None:
        with self._lock:
            _give_back(self._connections, key)

    def start_stream(self, key: str) -> str:
        """'' if ``key`` may open one more stream, else why not (for the 503)."""
        with self._lock:
            if sum(self._streams.values()) >= self.max_streams:
                return "too many viewers"
            if not _take(self._streams, key, self.max_streams, self.streams_per_address):
                return "too many viewers from your address"
            return ""

    def end_stream(self, key: str) -> None:
        with self._lock:
            _give_back(self._streams, key)

    def counts(self) -> dict:
        """{"connections": n, "streams": n} in all (for tests and figures)."""
        with self._lock:
            return {"connections": sum(self._connections.values()),
                    "streams": sum(self._streams.values())}


def _take(table: dict, key: str, total: int, each: int) -> bool:
    if sum(table.values()) >= total or table.get(key, 0) >= each:
        return False
    table[key] = table.get(key, 0) + 1
    return True


def _give_back(table: dict, key: str) -> None:
    left = table.get(key, 0) - 1
    if left > 0:
        table[key] = left
    else:
        table.pop(key, None)


class GuessThrottle:
    """Wrong passwords per address, with a doubling wait once past FAILURES_ALLOWED."""

    def __init__(self, *, allowed: int = FAILURES_ALLOWED, first: float = FIRST_WAIT,
                 longest: float = LONGEST_WAIT, tracked: int = TRACKED_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic):
        self.allowed, self.first, self.longest, self.tracked = allowed, first, longest, tracked
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict = OrderedDict()     # key -> (count, time of the last)

    def wait(self, key: str) -> float:
        """Seconds before ``key`` may try a password again (0.0: now)."""
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
            return max(0.0, last + self._backoff(count) - self.clock()) if count else 0.0

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            count, last = self._failures.pop(key, (0, now))
            if now - last > FORGET_AFTER:
                count = 0
            self._failures[key] = (count + 1, now)
            while len(self._failures) > self.tracked:
                self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _backoff(self, count: int) -> float:
        if count < self.allowed:
            return 0.0
        return min(self.longest, self.first * 2 ** (count - self.allowed))


class DeadlineReader(io.RawIOBase):
    """A socket's input that ends (TimeoutError) at a deadline the owner moves forward:
    a socket timeout alone restarts with every byte, so a client that sends one
    byte a second would hold its connection forever."""

    def __init__(self, sock: socket.socket, seconds: float = REQUEST_DEADLINE):
        self.sock, self.seconds = sock, seconds
        self.deadline = time.monotonic() + seconds

    def restart(self) -> None:
        """A new request begins: it has ``seconds`` to arrive whole."""
        self.deadline = time.monotonic() + self.seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def peer_gone(sock: socket.socket) -> bool:
    """True when the peer closed the connection, or sent anything (an event-stream
    client sends nothing after its request). Never blocks."""
    try:
        timeout = sock.gettimeout()
        sock.settimeout(0.0)    # with a timeout set, recv would first wait that long
        try:
            sock.recv(1, socket.MSG_PEEK)
        finally:
            sock.settimeout(timeout)
    except (BlockingIOError, InterruptedError):
        return False            # nothing to read: still there
    except OSError:
        return True
    return True                 # end of file, or bytes a viewer never sends
