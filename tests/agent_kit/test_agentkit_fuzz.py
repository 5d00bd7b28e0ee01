"""Fuzz the handler's parser: generated payloads never crash it, never run anything,
and every rejection is counted by reason. No broker needed: ``handle_message`` is
the whole entry point, and an unconnected client only queues what it would publish."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_kit import actions, contract, signing
from agent_kit.config import AgentConfig
from agent_kit.commandhandler import DROPPED, CommandHandler

KEY, BROADCAST_KEY = b"k" * 32, b"b" * 32
TOPIC = "fleet/fuzz/command"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
commandish = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 2, "1"]), "id": st.text(max_size=40) | st.integers(),
     "verb": st.sampled_from(list(contract.VERBS) + ["rm-rf", ""]),
     "ts": st.sampled_from([contract.now_rfc3339(), "2020-01-01T00:00:00Z", "x"])},
    optional={"sig": st.text(alphabet="0123456789abcdef", min_size=0, max_size=64),
              "extra": json_values})
payloads = (st.binary(max_size=600)
            | json_values.map(lambda v: json.dumps(v).encode())
            | commandish.map(lambda v: json.dumps(v).encode()))


@pytest.fixture(scope="module")
def executed():
    calls: list = []
    patch = pytest.MonkeyPatch()
    patch.setattr(actions, "version", lambda *a, **k: calls.append("version") or "x")
    patch.setattr(actions, "reload", lambda *a, **k: calls.append("reload") or "signal")
    yield calls
    patch.undo()


def _handler(keys):
    handler = CommandHandler(AgentConfig(name="fuzz", alert_interval=3600), password="",
                             keys=keys)
    # the verbs' actions, replaced by a counter (the dicts hold the bound methods)
    handler._fast = {verb: (lambda: handler.counters.add("executed") and {}) for verb in handler._fast}
    return handler


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, retained=st.booleans(), broadcast=st.booleans())
def test_signed_mode_never_executes_and_counts_every_rejection(executed, payload, retained, broadcast):
    handler = _handler({"command": KEY, "broadcast": BROADCAST_KEY})
    handler.handle_message("zephyr/broadcast" if broadcast else TOPIC, payload, retained)
    counts = handler.counters.snapshot()
    assert counts.get("executed", 0) == 0 and executed == [] and handler._jobs.qsize() == 0
    assert counts["received"] == 1
    assert sum(handler.counters.with_prefix(DROPPED).values()) == 1


@settings(max_examples=1500, deadline=None)
@given(payload=payloads)
def test_unsigned_mode_every_message_is_answered_or_dropped(executed, payload):
    handler = _handler({})
    handler.handle_message(TOPIC, payload)
    counts = handler.counters.snapshot()
    dropped = sum(handler.counters.with_prefix(DROPPED).values())
    handled = counts.get("executed", 0) + handler._jobs.qsize() + dropped
    assert handled == 1, counts


def test_a_valid_signature_is_the_only_way_in():
    handler = _handler({"command": KEY})
    good = signing.sign_command(contract.make_command("health-check", "a" * 16), KEY)
    handler.handle_message(TOPIC, contract.encode(good))
    handler.handle_message(TOPIC, contract.encode(good))            # replayed
    other = signing.sign_command(contract.make_command("health-check", "b" * 16), BROADCAST_KEY)
    handler.handle_message(TOPIC, contract.encode(other))           # the broadcast key on a unicast
    assert handler.counters.get("executed") == 1
    assert handler.counters.with_prefix(DROPPED) == {"replayed": 1, "bad-signature": 1}


def test_a_broker_redelivery_is_a_duplicate_not_a_replay_attack():
    # After a reconnect the broker resends unacknowledged QoS 1 commands with DUP
    # set: answered once, no alert. The same bytes without DUP are a peer's replay.
    handler = _handler({"command": KEY})
    good = contract.encode(signing.sign_command(contract.make_command("health-check", "c" * 16), KEY))
    handler.handle_message(TOPIC, good)
    handler.handle_message(TOPIC, good, redelivery=True)
    assert handler.counters.get("executed") == 1 and handler.counters.get("duplicates") == 1
    assert handler.counters.with_prefix(DROPPED) == {}
    handler.handle_message(TOPIC, good)
    assert handler.counters.with_prefix(DROPPED) == {"replayed": 1}
