"""THE factory for paho clients, plus the few helpers the one-shot tools need.

Every paho client of the project is made by ``new_client``: the agents' and
the one-shot tools'. (The manager's ``hatchery.bus.client.BusClient`` has its
own connection, ``hatchery.bus.link``, with the same TCP_NODELAY and 1..30 s
backoff; the control side may import ``agent_kit``, never the reverse.) Each one
speaks MQTT v5 (unless asked otherwise), sets TCP_NODELAY (a QoS 1 round trip
on loopback drops from ~88 ms to well under 1 ms) and reconnects with a
1..30 s backoff.

Errors: ``BusError`` here is the kit's (stdlib + paho only, so it cannot
derive from hatchery's root error). The control side's own errors are
``hatchery.errors.BusError``, which add the fix and the exit code.
"""

from __future__ import annotations

import socket
import ssl
import threading
from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

Will = Tuple[str, bytes]  # (topic, payload): always retained, QoS 1


class BusError(ConnectionError):
    """The broker could not be reached, refused us, or did not acknowledge in time.

    ``refused`` is True when the broker answered and said no (bad credentials,
    not authorised): retrying will not help, unlike an unreachable broker.
    """

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused


def _nodelay(client: mqtt.Client, userdata, sock) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (unix socket, websocket)
        pass


def new_client(client_id: str = "", will: Optional[Will] = None, *,
               username: Optional[str] = None, password: Optional[str] = None,
               ca_file: Optional[str] = None, tls_context: Optional[ssl.SSLContext] = None,
               protocol: int = mqtt.MQTTv5, transport: str = "tcp",
               reconnect_max: int = 30) -> mqtt.Client:
    """A configured, unconnected client (with credentials and TLS when given).

    TLS: ``ca_file`` (verify the broker against that CA) or a ready
    ``tls_context``. ``protocol``: ``mqtt.MQTTv5`` (the default) or
    ``mqtt.MQTTv311`` (for measurements; commands lose their expiry).
    ``transport``: "tcp", or "unix" for a broker's unix-socket listener (the
    host given to connect is then the socket's path). ``reconnect_max``: the
    reconnect delay doubles from 1 s up to this many seconds.
    """
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=protocol, transport=transport)
    client.on_socket_open = _nodelay
    client.reconnect_delay_set(1, reconnect_max)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    if username:
        client.username_pw_set(username, password)
    if tls_context is not None:
        client.tls_set_context(tls_context)
    elif ca_file:
        client.tls_set(ca_certs=ca_file)   # verifies the broker's certificate and name
    return client


# paho keeps a Properties object's own fields beside the properties it holds.
_PAHO_FIELDS = frozenset({"packetType", "types", "names", "properties"})


def received_properties(props: Optional[Properties]) -> dict:
    """The MQTT v5 properties a received message carried, by paho's names
    (``UserProperty`` is a list of (key, value)); {} for none, or under MQTT 3.1.1.

    Read from the object's attributes: 0.4 us a message, where paho's own
    ``Properties.isEmpty()`` costs 7 us (tests/agent_kit checks this stays true).
    """
    if props is None:
        return {}
    present = vars(props).keys() - _PAHO_FIELDS
    return {name: getattr(props, name) for name in sorted(present)} if present else {}


def connect_properties(session_expiry: int) -> Properties:
    """CONNECT properties asking the broker to keep our session ``session_expiry`` s."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry
    return props


def connect_in_background(client: mqtt.Client, host: str, port: int, *, keepalive: int = 60,
                          session_expiry: int = 0) -> None:
    """Start the network thread; it connects, and reconnects, by itself.

    With ``session_expiry`` > 0 the session is persistent (clean_start=False):
    QoS 1 messages sent while we are away are kept for us.
    """
    persistent = session_expiry > 0
    props = connect_properties(session_expiry) if persistent else None
    client.connect_async(host, port, keepalive=keepalive, clean_start=not persistent,
                         properties=props)
    client.loop_start()


def connect_and_wait(client: mqtt.Client, host: str, port: int, timeout: float,
                     keepalive: int = 30) -> None:
    """Connect, start the network thread and wait for CONNACK; BusError on failure."""
    connected = threading.Event()
    failure = []
    previous = client.on_connect

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            failure.append(str(reason_code))
        connected.set()
        if previous is not None:
            previous(c, userdata, flags, reason_code, properties)

    client.on_connect = on_connect
    client.connect_timeout = timeout
    try:
        client.connect(host, port, keepalive=keepalive)
    except (OSError, ValueError) as exc:   # ssl.SSLError is an OSError
        raise BusError(f"cannot connect to the broker at {host}:{port}: {exc}") from None
    client.loop_start()
    if not connected.wait(timeout) or failure:
        client.loop_stop()
        if failure:
            raise BusError(f"the broker at {host}:{port} refused us: {failure[0]}", refused=True)
        raise BusError(f"the broker at {host}:{port} did not accept us: "
                       f"no CONNACK within {timeout:g}s")


def publish_and_wait(client: mqtt.Client, topic: str, payload: bytes, *, qos: int = 1,
                     retain: bool = False, timeout: float = 5.0) -> None:
    """Publish and wait (bounded) until the broker acknowledged; BusError otherwise."""
    info = client.publish(topic, payload, qos=qos, retain=retain)
    if info.rc != mqtt.MQTT_ERR_SUCCESS:
        raise BusError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError) as exc:
        raise BusError(f"publish to {topic} failed: {exc}") from None
    if not info.is_published():
        raise BusError(f"the broker did not acknowledge the publish to {topic} "
                       f"within {timeout:g}s")


@contextmanager
def session(host: str, port: int, timeout: float, client_id: str = "", *,
            username: Optional[str] = None, password: Optional[str] = None,
            ca_file: Optional[str] = None) -> Iterator[mqtt.Client]:
    """A short-lived connected client for one-shot tools; always disconnected after."""
    client = new_client(client_id, username=username, password=password, ca_file=ca_file)
    connect_and_wait(client, host, port, timeout)
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()
