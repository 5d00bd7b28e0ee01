"""The few MQTT 3.1.1 and 5 packets the manager sends, as bytes.

Pure code, no sockets (``bus.link`` writes them). The packet types, property
table and the reader of what the broker sends are in ``bus.wire``; this is the
other direction: CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH, PUBACK, PINGREQ and
DISCONNECT, a few lines each, with the property list and the strings they carry.
"""

from __future__ import annotations

import struct

from hatchery.bus.wire import (BINARY, CONNECT, MAX_REMAINING, MQTTv5, PAIR, PROPERTIES,
                               PUBLISH, REPEATABLE, SUBSCRIBE, TEXT, UNSUBSCRIBE, VARINT)

PINGREQ_PACKET = b"\xc0\x00"
PROPERTY_IDS = {name: (ident, kind) for ident, (name, kind) in PROPERTIES.items()}


def varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def text(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("a string longer than 65535 bytes")
    return struct.pack("!H", len(data)) + data


def properties(values: dict) -> bytes:
    """A property list from {paho name: value}; b'\\x00' when empty."""
    out = bytearray()
    for name, value in values.items():
        ident, kind = PROPERTY_IDS[name]
        for one in (value if name in REPEATABLE else (value,)):
            out += varint(ident) + _encode_value(kind, one)
    return varint(len(out)) + bytes(out)


def _encode_value(kind: int, value) -> bytes:
    if kind == VARINT:
        return varint(value)
    if kind == TEXT:
        return text(value)
    if kind == BINARY:
        return struct.pack("!H", len(value)) + bytes(value)
    if kind == PAIR:
        return text(value[0]) + text(value[1])
    return int(value).to_bytes((1, 2, 4)[kind], "big")


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def connect(level: int, client_id: str, keepalive: int, *, username=None, password=None,
            max_packet: int = 1 << 20) -> bytes:
    """CONNECT with a clean start; in MQTT 5 it tells the broker our maximum packet size."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if username and password else 0)
    head = text("MQTT") + bytes([level, flags]) + struct.pack("!H", keepalive)
    if level == MQTTv5:
        head += properties({"MaximumPacketSize": max_packet})
    body = head + text(client_id)
    if username:
        body += text(username) + (text(password) if password else b"")
    return packet(CONNECT, 0, body)


def subscribe(level: int, packet_id: int, filters: list) -> bytes:
    """SUBSCRIBE [(filter, qos)]."""
    body = struct.pack("!H", packet_id) + (b"\x00" if level == MQTTv5 else b"")
    body += b"".join(text(f) + bytes([qos]) for f, qos in filters)
    return packet(SUBSCRIBE, 2, body)


def unsubscribe(level: int, packet_id: int, filters: list) -> bytes:
    body = struct.pack("!H", packet_id) + (b"\x00" if level == MQTTv5 else b"")
    return packet(UNSUBSCRIBE, 2, body + b"".join(text(f) for f in filters))


def publish(level: int, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False,
            packet_id: int = 0, expiry: int = 0) -> bytes:
    """PUBLISH; ``expiry`` (seconds, MQTT 5 only) is the Message Expiry Interval."""
    head = text(topic) + (struct.pack("!H", packet_id) if qos else b"")
    if level == MQTTv5:
        head += properties({"MessageExpiryInterval": expiry}) if expiry else b"\x00"
    return packet(PUBLISH, qos << 1 | int(retain), head + bytes(payload))


def puback(packet_ids: list) -> bytes:
    """PUBACKs for every id, as one buffer (one write for a whole batch)."""
    return b"".join(b"\x40\x02" + struct.pack("!H", i) for i in packet_ids)


def disconnect(level: int) -> bytes:
    return b"\xe0\x00"   # MQTT 5: no reason code and no properties means "normal"
