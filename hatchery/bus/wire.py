"""MQTT 3.1.1 and 5 on the wire: packet types, properties, and a fast reader
of what the broker sends the manager (the packets it sends: ``bus.encode``).

Pure code: bytes in, values out, no sockets (``bus.link`` does the I/O). The
reader takes whatever a ``recv`` returned -- half a frame, or a hundred
frames -- and decodes every complete PUBLISH with slicing and indexing only:
no object per packet but the ``Message`` itself, no property object when a
packet has no properties. paho's read path, by contrast, costs
several reads and a few dozen Python calls per message.

Two kinds of bad input, two answers:
- a frame that cannot be delimited (a remaining length of more than four
  bytes, or beyond our maximum packet size) leaves the stream unreadable:
  ``Malformed``, and the caller drops the connection, as the spec says;
- a well-delimited PUBLISH whose inside is wrong (a topic that is not UTF-8
  or holds a wildcard, an unknown or misplaced property, lengths that overrun
  the frame) is dropped and counted (``Reader.dropped``); its QoS 1 packet id
  is still acknowledged when it could be read, so the broker does not hold it.
"""

from __future__ import annotations

from agent_kit.contract import disallowed_properties
from hatchery.bus.messages import Message

MQTTv311, MQTTv5 = 4, 5
(CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK,
 UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH) = range(1, 16)
MAX_REMAINING = 268_435_455            # the largest remaining length MQTT can express


class Malformed(ValueError):
    """The byte stream cannot be read any further: close the connection."""


class BadPacket(ValueError):
    """One delimited packet is wrong inside: drop it, keep the connection."""


# --- properties (MQTT 5, section 2.2.2.2) -------------------------------------------
# id -> (name, kind). Names as paho spells them (agent_kit.bus.received_properties),
# repeatable ones (UserProperty, SubscriptionIdentifier) as lists, as there.

BYTE, TWO, FOUR, VARINT, TEXT, BINARY, PAIR = range(7)
PROPERTIES = {
    1: ("PayloadFormatIndicator", BYTE), 2: ("MessageExpiryInterval", FOUR),
    3: ("ContentType", TEXT), 8: ("ResponseTopic", TEXT), 9: ("CorrelationData", BINARY),
    11: ("SubscriptionIdentifier", VARINT), 17: ("SessionExpiryInterval", FOUR),
    18: ("AssignedClientIdentifier", TEXT), 19: ("ServerKeepAlive", TWO),
    21: ("AuthenticationMethod", TEXT), 22: ("AuthenticationData", BINARY),
    23: ("RequestProblemInformation", BYTE), 24: ("WillDelayInterval", FOUR),
    25: ("RequestResponseInformation", BYTE), 26: ("ResponseInformation", TEXT),
    28: ("ServerReference", TEXT), 31: ("ReasonString", TEXT), 33: ("ReceiveMaximum", TWO),
    34: ("TopicAliasMaximum", TWO), 35: ("TopicAlias", TWO), 36: ("MaximumQoS", BYTE),
    37: ("RetainAvailable", BYTE), 38: ("UserProperty", PAIR), 39: ("MaximumPacketSize", FOUR),
    40: ("WildcardSubscriptionAvailable", BYTE), 41: ("SubscriptionIdentifierAvailable", BYTE),
    42: ("SharedSubscriptionAvailable", BYTE),
}
# What a PUBLISH may carry (spec 3.3.2.3). TopicAlias is left out: we never
# allow the broker any (Topic Alias Maximum 0), so one is a protocol error.
PUBLISH_PROPERTIES = frozenset((1, 2, 3, 8, 9, 11, 38))
# Properties of one PUBLISH decoded at most; the rest are skipped unread. A 64 KiB packet
# holds 13,000 empty user properties: decoding them all cost 33 ms, against 4 us for a
# heartbeat, so one agent sending 30 a second held the manager's reader. The first 64 are
# enough for every reader: none is allowed on an agent's topics, and the audit names them.
MAX_PUBLISH_PROPERTIES = 64
REPEATABLE = frozenset(("UserProperty", "SubscriptionIdentifier"))


def read_properties(buf: bytes, pos: int, end: int, allowed=None, most=None) -> tuple:
    """(properties, position after them) of the property list at ``pos``; BadPacket if wrong.
    ``most``: decode at most that many properties and skip the rest unread."""
    length, pos = read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise BadPacket("the properties overrun the packet")
    found: dict = {}
    count = 0
    while pos < stop:
        if most is not None and count >= most:
            break
        count += 1
        ident, pos = read_varint(buf, pos, stop)
        if ident not in PROPERTIES or (allowed is not None and ident not in allowed):
            raise BadPacket(f"property {ident} is not allowed here")
        name, kind = PROPERTIES[ident]
        value, pos = _read_value(buf, pos, stop, kind)
        if name in REPEATABLE:
            found.setdefault(name, []).append(value)
        elif name in found:
            raise BadPacket(f"{name} twice")
        else:
            found[name] = value
    return found, stop


def _read_value(buf: bytes, pos: int, end: int, kind: int) -> tuple:
    if kind == VARINT:
        return read_varint(buf, pos, end)
    if kind == PAIR:
        key, pos = _read_text(buf, pos, end)
        value, pos = _read_text(buf, pos, end)
        return (key, value), pos
    if kind == TEXT:
        return _read_text(buf, pos, end)
    if kind == BINARY:
        size, pos = _read_size(buf, pos, end)
        return bytes(buf[pos:pos + size]), pos + size
    width = (1, 2, 4)[kind]
    if pos + width > end:
        raise BadPacket("a property value overruns the packet")
    return int.from_bytes(buf[pos:pos + width], "big"), pos + width


def _read_size(buf: bytes, pos: int, end: int) -> tuple:
    if pos + 2 > end:
        raise BadPacket("a length overruns the packet")
    size = buf[pos] << 8 | buf[pos + 1]
    if pos + 2 + size > end:
        raise BadPacket("a string overruns the packet")
    return size, pos + 2


def _read_text(buf: bytes, pos: int, end: int) -> tuple:
    size, pos = _read_size(buf, pos, end)
    try:
        text = bytes(buf[pos:pos + size]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPacket("a string is not UTF-8") from None
    if "\x00" in text:
        raise BadPacket("a string holds U+0000")
    return text, pos + size


def read_varint(buf: bytes, pos: int, end: int) -> tuple:
    """(value, next position) of a variable byte integer inside one packet."""
    value, shift = 0, 0
    for _ in range(4):
        if pos >= end:
            raise BadPacket("a variable byte integer overruns the packet")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise BadPacket("a variable byte integer longer than four bytes")


# --- the reader -----------------------------------------------------------------------

class Reader:
    """Bytes as they come off the socket in, complete packets out.

    ``feed(data, received)`` returns (messages, packet ids to acknowledge,
    control packets as (type, flags, body)). Partial frames are kept until
    the rest arrives; a frame is joined once, never re-scanned per chunk.
    """

    def __init__(self, level: int = MQTTv5, max_packet: int = 1 << 20):
        self.level, self.max_packet = level, max_packet
        self.dropped = 0                  # PUBLISH packets dropped for what was inside them
        self.last_problem = ""
        self._held: list = []             # chunks of an incomplete frame
        self._held_size = 0
        self._need = 0                    # bytes the held frame needs before a new look

    def feed(self, data: bytes, received: float) -> tuple:
        if self._held:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size < self._need:
                return [], [], []
            data = b"".join(self._held)
            self._held, self._held_size = [], 0
        messages: list = []
        acks: list = []
        controls: list = []
        pos, size = 0, len(data)
        while pos < size:
            start, length = self._frame_at(data, pos, size)
            if start is None:                     # even the header is cut
                self._hold(data[pos:], 0)
                break
            if start + length > size:
                self._hold(data[pos:], start + length - pos)
                break
            end = start + length
            first = data[pos]
            if first >> 4 == PUBLISH:
                self._publish(first, data, start, end, received, messages, acks)
            else:
                controls.append((first >> 4, first & 0x0F, data[start:end]))
            pos = end
        return messages, acks, controls

    def _hold(self, rest: bytes, need: int) -> None:
        self._held, self._held_size = [rest], len(rest)
        self._need = max(need, len(rest) + 1)

    def _frame_at(self, buf: bytes, pos: int, size: int) -> tuple:
        """(body start, body length) of the frame at ``pos``; (None, None) if its header is cut."""
        at = pos + 1
        if at >= size:
            return None, None
        byte = buf[at]
        if byte < 0x80:
            length, at = byte, at + 1
        else:
            length, shift = 0, 0
            for _ in range(4):
                if at >= size:
                    return None, None
                byte = buf[at]
                at += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            else:
                raise Malformed("a remaining length longer than four bytes")
        if length > self.max_packet:
            raise Malformed(f"a packet of {length} bytes (the limit is {self.max_packet})")
        if buf[pos] >> 4 == 0:
            raise Malformed("packet type 0 is reserved")
        return at, length

    def _publish(self, first: int, buf: bytes, start: int, end: int, received: float,
                 messages: list, acks: list) -> None:
        qos = (first >> 1) & 3
        if qos > 1:      # we never subscribe at QoS 2; 3 is malformed
            raise Malformed(f"a PUBLISH at QoS {qos}")
        try:
            if end - start < 2:
                raise BadPacket("no topic")
            at = topic_end = start + 2 + (buf[start] << 8 | buf[start + 1])
            if at > end:
                raise BadPacket("the topic overruns the packet")
            if qos:
                if at + 2 > end:
                    raise BadPacket("no packet id")
                packet_id = buf[at] << 8 | buf[at + 1]
                if not packet_id:
                    raise BadPacket("packet id 0")
                acks.append(packet_id)
                at += 2
            raw = buf[start + 2:topic_end]
            if not raw or b"+" in raw or b"#" in raw or b"\x00" in raw:
                raise BadPacket("not a topic name")
            try:
                topic = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BadPacket("the topic is not UTF-8") from None
            properties = None
            if self.level == MQTTv5:
                if at >= end:
                    raise BadPacket("no property length")
                if buf[at]:
                    properties, at = read_properties(buf, at, end, PUBLISH_PROPERTIES,
                                                     MAX_PUBLISH_PROPERTIES)
                else:
                    at += 1
        except BadPacket as exc:
            self.dropped += 1
            self.last_problem = str(exc)
            return
        if properties is None:
            messages.append(Message(topic, buf[at:end], bool(first & 1), received))
        else:     # properties its topic may not carry (the contract's rule): readers drop it
            messages.append(Message(topic, buf[at:end], bool(first & 1), received, properties,
                                    not disallowed_properties(topic, properties)))


# --- control packets the broker sends --------------------------------------------------

def parse_connack(level: int, body: bytes) -> tuple:
    """(reason code, properties); 0 is success in both protocols."""
    if len(body) < 2:
        raise Malformed("a short CONNACK")
    if level == MQTTv5:
        properties, _ = _properties_or_malformed(body, 2)
        return body[1], properties
    return body[1], {}


def parse_ack(level: int, kind: int, body: bytes) -> tuple:
    """(packet id, reason codes) of a PUBACK, SUBACK or UNSUBACK.

    MQTT 5: a PUBACK is id, then an optional reason code and optional
    properties; a SUBACK or UNSUBACK is id, properties, then one code per filter.
    """
    if len(body) < 2:
        raise Malformed("a short acknowledgement")
    packet_id = body[0] << 8 | body[1]
    if level != MQTTv5:
        return packet_id, list(body[2:])
    if kind == PUBACK:
        return packet_id, list(body[2:3])
    _, at = _properties_or_malformed(body, 2)
    return packet_id, list(body[at:])


def parse_disconnect(level: int, body: bytes) -> tuple:
    """(reason code, properties) of the broker's DISCONNECT (MQTT 5 only sends one)."""
    if not body:
        return 0, {}
    if len(body) > 1:
        return body[0], _properties_or_malformed(body, 1)[0]
    return body[0], {}


def _properties_or_malformed(body: bytes, pos: int) -> tuple:
    try:
        return read_properties(body, pos, len(body))
    except BadPacket as exc:
        raise Malformed(str(exc)) from None
