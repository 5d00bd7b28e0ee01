"""bus/wire: the manager's MQTT decoder against crafted and random bytes (no broker).

Frames are built here by an encoder of the test's own (``frame``, ``publish``),
not by ``bus.wire``'s, so a mistake shared by both would not hide itself.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mqttbytes import frame, properties, utf8, varint

from hatchery.bus import encode, wire
from hatchery.bus.requests import filter_matches, filter_regex

# --- frames built with the independent encoder (tests/mqttbytes.py) --------------------


def publish(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, packet_id: int = 1,
            level: int = 5, props: bytes = b"\x00", raw_topic: bytes = None) -> bytes:
    body = raw_topic if raw_topic is not None else utf8(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if level == 5:
        body += props
    return frame(0x30 | qos << 1 | int(retain), body + payload)


def decode_all(data: bytes, level: int = 5, chunks=None, reader=None):
    reader = reader or wire.Reader(level, max_packet=1 << 20)
    messages, acks, controls = [], [], []
    for piece in (chunks if chunks is not None else [data]):
        m, a, c = reader.feed(piece, 1.0)
        messages += m
        acks += a
        controls += c
    return [(m.topic, m.payload, m.retain, dict(m.properties or {})) for m in messages], acks, controls, reader


# --- what decodes ---------------------------------------------------------------------

topics = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="+#\x00"),
                 min_size=1, max_size=40).filter(lambda t: len(t.encode()) <= 0xFFFF)
payloads = st.binary(max_size=300)
user_props = st.lists(st.tuples(st.text(max_size=8).filter(lambda t: "\x00" not in t),
                                st.text(max_size=8).filter(lambda t: "\x00" not in t)), max_size=3)


@st.composite
def publishes(draw, level=5):
    topic, payload = draw(topics), draw(payloads)
    qos, retain = draw(st.integers(0, 1)), draw(st.booleans())
    packet_id = draw(st.integers(1, 65535))
    expected: dict = {}
    raw = []
    if level == 5:
        if draw(st.booleans()):
            expiry = draw(st.integers(0, 2 ** 32 - 1))
            raw.append((2, struct.pack("!I", expiry)))
            expected["MessageExpiryInterval"] = expiry
        pairs = draw(user_props)
        for key, value in pairs:
            raw.append((38, utf8(key) + utf8(value)))
        if pairs:
            expected["UserProperty"] = list(pairs)
        if draw(st.booleans()):
            data = draw(st.binary(max_size=20))
            raw.append((9, len(data).to_bytes(2, "big") + data))
            expected["CorrelationData"] = data
        if draw(st.booleans()):
            raw.append((8, utf8("reply/here")))
            expected["ResponseTopic"] = "reply/here"
    packet = publish(topic, payload, qos=qos, retain=retain, packet_id=packet_id, level=level,
                     props=properties(raw))
    return packet, (topic, payload, retain, expected), packet_id if qos else None


@settings(max_examples=300, deadline=None)
@given(st.integers(4, 5).flatmap(lambda level: st.tuples(
    st.just(level), st.lists(publishes(level), min_size=1, max_size=6))))
def test_any_stream_of_publishes_decodes_to_what_was_sent(case):
    level, items = case
    stream = b"".join(p for p, _, _ in items)
    messages, acks, controls, reader = decode_all(stream, level)
    assert messages == [m for _, m, _ in items]
    assert acks == [pid for _, _, pid in items if pid is not None]
    assert controls == [] and reader.dropped == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(publishes(5), min_size=1, max_size=3))
def test_a_split_at_every_byte_boundary_changes_nothing(items):
    stream = b"".join(p for p, _, _ in items)
    whole = decode_all(stream)[:3]
    for cut in range(len(stream) + 1):
        assert decode_all(stream, chunks=[stream[:cut], stream[cut:]])[:3] == whole, cut
    assert decode_all(stream, chunks=[stream[i:i + 1] for i in range(len(stream))])[:3] == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(publishes(5), min_size=1, max_size=8), st.data())
def test_random_chunking_changes_nothing(items, data):
    stream = b"".join(p for p, _, _ in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert decode_all(stream, chunks=chunks)[:3] == decode_all(stream)[:3]


def test_control_packets_are_handed_back_with_their_bodies():
    stream = frame(0x90, b"\x00\x07\x00\x00\x01") + b"\xd0\x00" + frame(0x40, b"\x00\x05\x00")
    _, _, controls, _ = decode_all(stream)
    assert controls == [(wire.SUBACK, 0, b"\x00\x07\x00\x00\x01"), (wire.PINGRESP, 0, b""),
                        (wire.PUBACK, 0, b"\x00\x05\x00")]
    assert wire.parse_ack(5, wire.SUBACK, controls[0][2]) == (7, [0, 1])
    assert wire.parse_ack(5, wire.PUBACK, controls[2][2]) == (5, [0])
    assert wire.parse_ack(4, wire.SUBACK, b"\x00\x07\x01") == (7, [1])


def test_a_large_frame_in_many_reads_is_joined_once():
    payload = bytes(range(256)) * 200
    stream = publish("fleet/a/status", payload) * 3
    chunks = [stream[i:i + 1000] for i in range(0, len(stream), 1000)]
    messages, _, _, _ = decode_all(stream, chunks=chunks)
    assert [m[1] for m in messages] == [payload] * 3


# --- what is refused --------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    b"\x30\xff\xff\xff\xff\x01",        # a fifth length byte
    b"\x30\x80\x80\x80\x80",            # four continuation bytes, still going
])
def test_a_remaining_length_of_more_than_four_bytes_is_malformed(header):
    with pytest.raises(wire.Malformed):
        wire.Reader(5).feed(header + b"x" * 10, 1.0)


def test_a_frame_over_the_limit_is_refused_before_it_is_buffered():
    reader = wire.Reader(5, max_packet=1000)
    header = b"\x30" + varint(268_435_455)          # MQTT's largest: 256 MB announced
    with pytest.raises(wire.Malformed, match="268435455 bytes"):
        reader.feed(header + b"\x00\x01a", 1.0)
    assert reader._held_size < 100, "nothing of the announced size was kept"


def test_a_frame_just_under_the_limit_is_read():
    reader = wire.Reader(5, max_packet=1000)
    body_size = 1000 - len(utf8("t")) - 1
    stream = publish("t", b"x" * body_size)
    assert len(stream) - 1 - len(varint(1000)) == 1000
    assert [m.payload for m in reader.feed(stream, 1.0)[0]] == [b"x" * body_size]


@pytest.mark.parametrize("first", [0x36, 0x34, 0x00, 0x0F])
def test_qos_3_qos_2_and_reserved_packet_types_are_malformed(first):
    with pytest.raises(wire.Malformed):
        wire.Reader(5).feed(frame(first, utf8("a") + b"\x00\x01\x00x"), 1.0)


BAD_INSIDE = {
    "unknown property": publish("a", b"x", props=properties([(0x7F, b"\x01")])),
    "CONNACK-only property": publish("a", b"x", props=properties([(0x12, utf8("id"))])),
    "topic alias we never allowed": publish("a", b"x", props=properties([(35, b"\x00\x01")])),
    "property overruns": publish("a", b"x", props=b"\x0a\x02\x00"),
    "a property twice": publish("a", b"x", props=properties([(2, b"\0\0\0\1"), (2, b"\0\0\0\2")])),
    "string property not UTF-8": publish("a", b"x", props=properties([(3, b"\x00\x02\xc3\x28")])),
    "topic not UTF-8": publish("", b"x", raw_topic=b"\x00\x02\xc3\x28"),
    "wildcard in topic": publish("fleet/+/status", b"x"),
    "empty topic": publish("", b"x"),
    "topic overruns": frame(0x30, b"\x00\x09abc"),
    "no property length": frame(0x30, utf8("abc")),
    "no topic": frame(0x30, b"\x00"),
}


@pytest.mark.parametrize("name", list(BAD_INSIDE))
def test_a_bad_packet_is_dropped_counted_and_the_stream_goes_on(name):
    good = publish("fleet/a/status", b"fine")
    messages, _, _, reader = decode_all(BAD_INSIDE[name] + good)
    assert [m[0] for m in messages] == ["fleet/a/status"]
    assert reader.dropped == 1 and reader.last_problem


def test_a_bad_qos1_packet_is_still_acknowledged():
    bad = publish("a/#", b"x", qos=1, packet_id=77)
    messages, acks, _, reader = decode_all(bad + publish("a", b"y", qos=1, packet_id=78))
    assert [m[0] for m in messages] == ["a"] and acks == [77, 78] and reader.dropped == 1


def test_packet_id_zero_is_dropped_and_not_acknowledged():
    messages, acks, _, reader = decode_all(publish("a", b"x", qos=1, packet_id=0))
    assert (messages, acks, reader.dropped) == ([], [], 1)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.integers(4, 5))
def test_random_bytes_never_raise_anything_but_malformed(data, level):
    """Whatever the broker (or anything between) sends: messages, or Malformed."""
    reader = wire.Reader(level, max_packet=4096)
    try:
        messages, acks, controls = reader.feed(data, 1.0)
    except wire.Malformed:
        return
    for message in messages:
        assert isinstance(message.topic, str) and message.topic
        assert isinstance(message.payload, bytes)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60))
def test_random_properties_are_read_or_refused_never_crash(raw):
    packet = publish("a", b"x", props=varint(len(raw)) + raw)
    messages, _, _, reader = decode_all(packet)
    assert len(messages) + reader.dropped == 1


# --- the encoder, read back by the independent decoder above's counterpart ---------------

def test_our_publish_encoder_reads_back():
    data = encode.publish(5, "fleet/a/command", b"{}", qos=1, packet_id=9, expiry=7)
    messages, acks, _, _ = decode_all(data)
    assert messages == [("fleet/a/command", b"{}", False, {"MessageExpiryInterval": 7})]
    assert acks == [9]
    assert encode.publish(4, "t", b"p", retain=True) == frame(0x31, utf8("t") + b"p")
    assert encode.puback([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"


# --- topic filters: the compiled form agrees with MQTT (paho) ----------------------------

levels = st.sampled_from(["a", "b", "", "$SYS", "fleet", "x.y", "+", "#"])


@settings(max_examples=400, deadline=None)
@given(st.lists(levels, min_size=1, max_size=4), st.lists(levels.filter(lambda s: s not in "+#"),
                                                          min_size=1, max_size=4))
def test_compiled_filters_match_as_paho_does(filter_levels, topic_levels):
    import paho.mqtt.client as mqtt
    assume("#" not in filter_levels[:-1])
    pattern, topic = "/".join(filter_levels), "/".join(topic_levels)
    expected = mqtt.topic_matches_sub(pattern, topic)
    assert (filter_regex([pattern]).fullmatch(topic) is not None) is expected
    assert filter_matches(tuple(filter_levels), topic_levels) is expected


def test_a_publish_full_of_properties_is_read_past_them_without_decoding_them_all():
    """13,000 user properties (an agent can send them): the first MAX_PUBLISH_PROPERTIES
    are decoded, the rest skipped; the payload is intact and the message is marked."""
    one = b"\x26" + encode.text("k") + encode.text("v")
    properties = one * 9000
    body = encode.text("fleet/alpha/heartbeat") + encode.varint(len(properties)) + properties + b"{}"
    reader = wire.Reader(wire.MQTTv5)
    [message], _, _ = reader.feed(encode.packet(wire.PUBLISH, 0, body), 1.0)
    assert message.payload == b"{}" and reader.dropped == 0
    assert message.properties == {"UserProperty": [("k", "v")] * wire.MAX_PUBLISH_PROPERTIES}
    assert not message.properties_ok
