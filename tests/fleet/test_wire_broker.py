"""The manager's reader behind a real Mosquitto: crafted PUBLISH frames from a raw socket.

A raw TCP client (no MQTT library) sends hand-built frames through the broker
to a BusClient; what arrives must be exactly what was sent (topic, payload,
MQTT 5 properties), frames the broker refuses must cost the reader nothing,
and a QoS 1 flood must keep flowing (the reader's batched PUBACKs reopen the
broker's inflight window of 20).
"""

from __future__ import annotations

import secrets
import socket
import struct
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqttbytes import frame, properties, utf8
from responders import unique

from hatchery.bus.client import BusClient


class RawClient:
    """An MQTT 5 client written out by hand: CONNECT, then whatever bytes the test sends."""

    def __init__(self, broker):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 30) + b"\x00" + \
            utf8(f"raw-{secrets.token_hex(4)}")
        self.sock.sendall(frame(0x10, body))
        connack = self.sock.recv(64)
        assert connack[0] == 0x20 and connack[3] == 0, connack

    def publish(self, topic: str, payload: bytes, *, qos: int = 0, props: bytes = b"\x00",
                packet_id: int = 1, raw_topic: bytes = None) -> None:
        body = (raw_topic if raw_topic is not None else utf8(topic))
        body += packet_id.to_bytes(2, "big") if qos else b""
        self.sock.sendall(frame(0x30 | qos << 1, body + props + payload))

    def alive(self) -> bool:
        """False once the broker has closed the connection on us."""
        self.sock.settimeout(0.5)
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    return False
        except socket.timeout:
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def raw(module_broker):
    client = RawClient(module_broker)
    yield client
    client.close()


@pytest.fixture(scope="module", params=[5, 4], ids=["mqtt5", "mqtt311"])
def reader(request, module_broker):
    with BusClient(module_broker.host, module_broker.port, protocol=request.param) as bus:
        yield bus


class Inbox:
    def __init__(self):
        self.got: list = []
        self.cond = threading.Condition()

    def __call__(self, message):
        with self.cond:
            self.got.append(message)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 5.0) -> list:
        with self.cond:
            self.cond.wait_for(lambda: len(self.got) >= count, timeout)
            return list(self.got)


# Mosquitto refuses control characters (U+0000..U+001F, U+007F..U+009F) in UTF-8 strings
text_values = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
levels = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="+#/"),
                 min_size=1, max_size=8)


@st.composite
def crafted(draw):
    suffix = "/".join(draw(st.lists(levels, min_size=1, max_size=3)))
    payload = draw(st.one_of(st.binary(max_size=200), st.binary(min_size=20000, max_size=60000)))
    qos = draw(st.integers(0, 1))
    items, expected = [], {}
    pairs = draw(st.lists(st.tuples(text_values, text_values), max_size=3))
    for key, value in pairs:
        items.append((38, utf8(key) + utf8(value)))
    if pairs:
        expected["UserProperty"] = list(pairs)
    if draw(st.booleans()):
        kind = draw(text_values)
        items.append((3, utf8(kind)))
        expected["ContentType"] = kind
    if draw(st.booleans()):
        data = draw(st.binary(max_size=16))
        items.append((9, len(data).to_bytes(2, "big") + data))
        expected["CorrelationData"] = data
    if draw(st.booleans()):
        items.append((2, struct.pack("!I", 3600)))
        expected["MessageExpiryInterval"] = 3600
    return suffix, payload, qos, properties(items), expected


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(case=crafted())
def test_what_arrives_is_what_was_sent(raw, reader, case):
    suffix, payload, qos, props, expected = case
    topic = f"hatchery/test/{unique()}/{suffix}"
    inbox = Inbox()
    with reader.listen([topic], inbox, qos=1):
        raw.publish(topic, payload, qos=qos, props=props, packet_id=7)
        got = inbox.wait(1)
    assert len(got) == 1
    message = got[0]
    assert (message.topic, message.payload, message.retain) == (topic, payload, False)
    if reader.protocol == 5:
        received = dict(message.properties or {})
        if "MessageExpiryInterval" in expected:   # the broker counts down what is left
            assert 3598 <= received.pop("MessageExpiryInterval") <= 3600
            expected = {k: v for k, v in expected.items() if k != "MessageExpiryInterval"}
        assert received == expected
    else:
        assert dict(message.properties or {}) == {}
    assert reader.dropped == 0


REFUSED_BY_THE_BROKER = {
    "topic not UTF-8": dict(raw_topic=b"\x00\x02\xc3\x28"),
    "wildcard topic": dict(topic="hatchery/test/+/x"),
    "unknown property": dict(props=properties([(0x7F, b"\x01")])),
    "property overruns": dict(props=b"\x0a\x02\x00"),
}


@pytest.mark.parametrize("name", list(REFUSED_BY_THE_BROKER))
def test_frames_the_broker_refuses_cost_the_reader_nothing(module_broker, reader, name):
    topic = f"hatchery/test/{unique()}"
    inbox = Inbox()
    with reader.listen([f"{topic}/#", "hatchery/test/+/x"], inbox, qos=1):
        hostile = RawClient(module_broker)
        spec = {"topic": f"{topic}/bad", **REFUSED_BY_THE_BROKER[name]}
        hostile.publish(spec.pop("topic"), b"evil", **spec)
        assert not hostile.alive(), "the broker should have dropped the hostile client"
        hostile.close()
        honest = RawClient(module_broker)
        honest.publish(f"{topic}/good", b"fine")
        got = inbox.wait(1)
        honest.close()
    assert [(m.topic, m.payload) for m in got] == [(f"{topic}/good", b"fine")]
    assert reader.dropped == 0 and reader._link.connected


def test_a_qos1_flood_keeps_flowing_past_the_brokers_inflight_window(module_broker, reader):
    """Mosquitto holds at most 20 unacknowledged QoS 1 messages per client: 3,000 arrive
    only if the reader acknowledges as it reads. The sender goes 500 ahead of the reader
    at most, so the broker's own queue (max_queued_messages, 1,000) never overflows on a
    busy machine: that would drop messages whatever the reader does."""
    topic, count, ahead = f"hatchery/test/{unique()}", 3000, 500
    inbox = Inbox()
    with reader.listen([topic], inbox, qos=1):
        sender = RawClient(module_broker)
        for start in range(0, count, ahead):
            inbox.wait(start - ahead, timeout=20)
            sender.sock.sendall(b"".join(
                frame(0x32, utf8(topic) + (i % 65535 + 1).to_bytes(2, "big") + b"\x00"
                      + str(i).encode())          # QoS 1, no properties
                for i in range(start, start + ahead)))
        got = inbox.wait(count, timeout=30)
        sender.close()
    assert [m.payload for m in got] == [str(i).encode() for i in range(count)]


def test_a_filter_the_broker_would_refuse_is_refused_before_it_costs_the_connection(reader):
    from hatchery.errors import UsageError
    for bad in ("a/\x93", "a/#/b", "a/b+", "", "a\x00"):
        with pytest.raises(UsageError):
            with reader.listen([bad], print):
                pass
    assert reader.ping(timeout=3) > 0


def test_a_slow_trickle_of_partial_frames_is_reassembled(module_broker, reader):
    """The broker writes whole frames, but TCP may cut them anywhere; a 60 kB payload
    arrives in many reads."""
    topic = f"hatchery/test/{unique()}"
    payload = bytes(range(256)) * 234
    inbox = Inbox()
    with reader.listen([topic], inbox, qos=0):
        sender = RawClient(module_broker)
        for _ in range(5):
            sender.publish(topic, payload)
        got = inbox.wait(5)
        sender.close()
    assert [m.payload for m in got] == [payload] * 5
