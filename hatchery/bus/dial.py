"""Reaching the broker: the socket (TCP, TLS or a unix socket) and the handshake.

``bus.link`` calls ``connect`` once per connection (at ``open`` and after each
loss) and gets back a blocking socket that the broker has accepted, the
``wire.Reader`` that read its CONNACK and the CONNACK's properties. Nothing
here is on the per-packet path: the I/O thread in ``bus.link`` owns the socket
from then on. A refusal is told in words (``refusal``), with ``refused`` set so
callers can tell "it said no" from "it was not there".
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Optional

from hatchery.bus import encode, wire

RECV_SIZE = 1 << 18


class LinkError(Exception):
    """The broker could not be reached, refused us, or went away. ``refused``: it said no."""

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Endpoint:
    """Where the broker listens: host:port (with TLS when ``tls``), or a unix socket."""

    host: str
    port: int
    unix_socket: Optional[str] = None
    tls: Optional[ssl.SSLContext] = None

    def __str__(self) -> str:
        return self.unix_socket or f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Login:
    client_id: str
    username: Optional[str] = None
    password: Optional[str] = None
    level: int = wire.MQTTv5
    keepalive: int = 30
    max_packet: int = 1 << 20      # what we accept; MQTT 5 tells the broker so in CONNECT


def connect(endpoint: Endpoint, login: Login, timeout: float) -> tuple:
    """(socket, reader, CONNACK properties) once the broker accepted us; LinkError if not."""
    sock = dial(endpoint, timeout)
    try:
        return (sock, *handshake(sock, endpoint, login, timeout))
    except BaseException:
        sock.close()
        raise


def dial(where: Endpoint, timeout: float) -> socket.socket:
    """A connected socket to ``where`` (TLS-wrapped when it says so)."""
    try:
        if where.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(where.unix_socket)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((where.host, where.port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if where.tls is None:
            return sock
        try:
            return where.tls.wrap_socket(sock, server_hostname=where.host)
        except BaseException:
            sock.close()
            raise
    except (OSError, ValueError) as exc:        # ssl.SSLError is an OSError
        raise LinkError(f"cannot connect to the broker at {where}: {exc}") from None


def handshake(sock: socket.socket, where: Endpoint, login: Login, timeout: float) -> tuple:
    """Send CONNECT, read CONNACK: (reader, CONNACK properties)."""
    reader = wire.Reader(login.level, login.max_packet)
    deadline = time.monotonic() + timeout
    try:
        sock.settimeout(timeout)
        sock.sendall(encode.connect(login.level, login.client_id, login.keepalive,
                                  username=login.username, password=login.password,
                                  max_packet=login.max_packet))
        while True:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = sock.recv(RECV_SIZE)
            if not data:
                raise LinkError(f"the broker at {where} closed the connection "
                                "before accepting us")
            _, _, controls = reader.feed(data, time.time())
            if controls:
                break
    except socket.timeout:
        raise LinkError(f"the broker at {where} did not accept us: "
                        f"no CONNACK within {timeout:g}s") from None
    except (OSError, wire.Malformed) as exc:
        raise LinkError(f"cannot connect to the broker at {where}: {exc}") from None
    kind, _, body = controls[0]
    if kind != wire.CONNACK:
        raise LinkError(f"the broker at {where} answered CONNECT with packet type {kind}")
    code, props = wire.parse_connack(login.level, body)
    if code:
        raise LinkError(f"the broker at {where} refused us: "
                        f"{refusal(login.level, code)}", refused=True)
    return reader, props


V311_REFUSALS = {1: "unacceptable protocol version", 2: "client identifier rejected",
                 3: "server unavailable", 4: "bad user name or password", 5: "not authorised"}
V5_REFUSALS = {0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
               0x84: "unsupported protocol version", 0x85: "client identifier not valid",
               0x86: "bad user name or password", 0x87: "not authorised",
               0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
               0x95: "packet too large", 0x97: "quota exceeded",
               0x9F: "connection rate exceeded"}


def refusal(level: int, code: int) -> str:
    """The CONNACK reason in words."""
    table = V5_REFUSALS if level == wire.MQTTv5 else V311_REFUSALS
    return f"{table.get(code, 'refused')} (code {code:#04x})"
