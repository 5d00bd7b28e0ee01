"""Hand-written MQTT packets over a plain socket: an attacker that ignores the protocol's manners.

paho completes every QoS 2 flow and honours the broker's receive maximum; a
hostile client does neither. This speaks just enough MQTT 3.1.1 and 5 to log
in with stolen credentials, publish at any QoS and never send PUBREL,
subscribe, and vanish without DISCONNECT (so the session stays parked).
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

V311, V5 = 4, 5
CONNACK, PUBLISH, PUBACK, PUBREC, SUBACK, DISCONNECT = 2, 3, 4, 5, 9, 14
SESSION_EXPIRY_PROP = 0x11
MESSAGE_EXPIRY_PROP = 0x02
FOREVER = 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    data = s.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, *, version: int = V5,
                   clean: bool = False, session_expiry: int = FOREVER, keepalive: int = 600) -> bytes:
    flags = 0xC0 | (0x02 if clean else 0)
    head = _text("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        props = bytes([SESSION_EXPIRY_PROP]) + struct.pack("!I", session_expiry)
        head += _varint(len(props)) + props
    return _packet(0x10, head + _text(client_id) + _text(username) + _text(password))


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, mid: int = 1,
                   retain: bool = False, version: int = V5, expiry: int = 0) -> bytes:
    body = _text(topic) + (struct.pack("!H", mid) if qos else b"")
    if version == V5:                         # properties: a Message Expiry, or none
        props = bytes([MESSAGE_EXPIRY_PROP]) + struct.pack("!I", expiry) if expiry else b""
        body += _varint(len(props)) + props
    return _packet(0x30 | (qos << 1) | int(retain), body + payload)


def subscribe_packet(topic_filter: str, *, qos: int = 1, mid: int = 1, version: int = V5) -> bytes:
    body = struct.pack("!H", mid) + (b"\x00" if version == V5 else b"")
    return _packet(0x82, body + _text(topic_filter) + bytes([qos]))


class RawClient:
    """One TCP connection speaking raw MQTT; ``read()`` returns (type, flags, body) or None."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: Optional[float] = None) -> Optional[tuple]:
        """The next whole packet; None when the broker closed the connection."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def _parse(self) -> Optional[tuple]:
        if len(self.buffer) < 2:
            return None
        length, shift, index = 0, 1, 1
        while True:
            if index >= len(self.buffer):
                return None
            byte = self.buffer[index]
            length += (byte & 0x7F) * shift
            shift *= 128
            index += 1
            if not byte & 0x80:
                break
        if len(self.buffer) < index + length:
            return None
        first, body = self.buffer[0], self.buffer[index:index + length]
        self.buffer = self.buffer[index + length:]
        return first >> 4, first & 0x0F, body

    def login(self, client_id: str, username: str, password: str, **options) -> int:
        """CONNECT; the CONNACK's reason code (0 = accepted), or -1 when the broker hung up."""
        self.send(connect_packet(client_id, username, password, **options))
        packet = self.read(timeout=5)
        if packet is None or packet[0] != CONNACK:
            return -1
        return packet[2][1]

    def drop(self) -> None:
        """Vanish without DISCONNECT: the broker keeps the session (and sends any Will)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
