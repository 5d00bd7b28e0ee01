"""Test helpers and fixtures for agent_kit: a recording probe client, in-process handlers.

Test modules import the fixtures from here (``from akhelpers import ...``). This
directory has no conftest.py on purpose: pytest registers every conftest as the
module ``conftest``, so one here would shadow the root one for the other tests'
``from conftest import free_port``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from agent_kit import bus, contract
from agent_kit.config import AgentConfig
from agent_kit.handler import CommandHandler

ROOT = Path(__file__).resolve().parents[2]


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Probe:
    """A test-side MQTT client that records every message it receives."""

    def __init__(self, host: str, port: int):
        self.client = bus.new_client(unique_name("probe"))
        self._cond = threading.Condition()
        self.messages: list = []  # (topic, payload bytes, retain)
        self.client.on_message = self._on_message
        bus.connect_and_wait(self.client, host, port, timeout=5)

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append((message.topic, message.payload, message.retain))
            self._cond.notify_all()

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(5), f"no SUBACK for {topics}"

    def publish(self, topic: str, payload, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        bus.publish_and_wait(self.client, topic, data, retain=retain, timeout=5)

    def decoded(self, topic: str) -> list:
        with self._cond:
            found = [p for t, p, _ in self.messages if t == topic]
        return [json.loads(p) for p in found]

    def wait_for(self, topic: str, predicate=lambda p: True, timeout: float = 5.0) -> dict:
        """The first decoded payload on ``topic`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, p, _ in self.messages:
                    if t == topic:
                        payload = json.loads(p)
                        if predicate(payload):
                            return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing matching on {topic} within {timeout}s")
                self._cond.wait(left)

    def reply_to(self, name: str, command_id: str, timeout: float = 5.0) -> dict:
        return self.wait_for(contract.topic(name, "status"),
                             lambda p: p.get("kind") == "reply" and p.get("id") == command_id,
                             timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def command(verb: str, command_id: str | None = None) -> dict:
    return contract.make_command(verb, command_id or uuid.uuid4().hex)


@pytest.fixture
def probe_factory():
    probes = []

    def make(broker) -> Probe:
        probes.append(Probe(broker.host, broker.port))
        return probes[-1]
    yield make
    for probe in probes:
        probe.close()


@pytest.fixture
def handler_factory():
    """Start in-process handlers; wait until each is connected and subscribed."""
    handlers = []

    def make(broker, probe: Probe, **overrides) -> CommandHandler:
        settings = dict(name=unique_name(), manager=unique_name("mgr"),
                        broker_host=broker.host, broker_port=broker.port,
                        heartbeat_interval=600, alert_interval=10)
        settings.update(overrides)
        handler = CommandHandler(AgentConfig(**settings))
        name = handler.name
        probe.subscribe(f"fleet/{name}/#", handler.broadcast)
        handler.start()
        handlers.append(handler)
        assert handler.wait_connected(5)
        # the birth is published after SUBSCRIBE on the same connection: once we see
        # it, the broker has the handler's subscriptions
        probe.wait_for(contract.topic(name, "status"), lambda p: p.get("state") == "online")
        return handler
    yield make
    for handler in handlers:
        handler.stop(timeout=2)
