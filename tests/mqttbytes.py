"""An MQTT encoder written out by hand for tests, independent of hatchery.bus.encode:
what the decoder under test reads must not come from the code it is checked against."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = value // 128, value % 128
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(2, "big") + raw


def frame(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def properties(items: list) -> bytes:
    """[(id, raw value bytes)] -> an MQTT 5 property list."""
    body = b"".join(varint(ident) + raw for ident, raw in items)
    return varint(len(body)) + body
