"""agent_kit.fastdecode: the typed decode's fast paths give exactly what the full validators give.

``messages.decode`` reads a canonical heartbeat or state with one match, any
other heartbeat, state or reply through a one-pass check of the decoded
object, and falls back to the full validators for everything else. These
tests hold ``messages.decode`` equal to the full path alone (the same
message, field types included, or the same refusal with the same reason and
detail) on generated valid payloads, on the same payloads mutated byte by
byte, on arbitrary JSON objects and on a list of hostile payloads; and
``contract.decode`` equal to the json module's own decoder with the same hooks.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_kit import contract, fastdecode, messages

NAME = "agent-007"
INSTANCE = "abcdef0123456789"
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the references: the full path alone, and json's own decoder ---------------------

def reference_decode(data: bytes, limit: int = contract.MAX_PAYLOAD_BYTES) -> dict:
    """contract.decode as it was: JSONDecoder.decode with the contract's hooks."""
    if len(data) > limit:
        raise contract.ContractError("oversized", f"{len(data)} bytes > {limit}")
    try:
        value = contract.CHECKED_JSON.decode(data.decode("utf-8"))
    except contract.ContractError:
        raise
    except (UnicodeDecodeError, ValueError):
        raise contract.ContractError("not-json") from None
    except RecursionError:
        raise contract.ContractError("too-deep") from None
    if not isinstance(value, dict):
        raise contract.ContractError("not-object", type(value).__name__)
    return value


def full_path(name: str, kind: str, payload: bytes, about_others: bool = False):
    """messages.decode without its fast paths: the validators that name every refusal."""
    message = messages._DECODERS[kind](reference_decode(payload))
    if not about_others and getattr(message, "agent", name) != name:
        raise contract.ContractError("wrong-agent")
    return message


def outcome(decoder, *args) -> tuple:
    """What a decoder made of a payload, comparable exactly: repr tells 1 from 1.0 and -0.0 from 0.0."""
    try:
        message = decoder(*args)
    except contract.ContractError as exc:
        return ("refused", exc.reason, exc.detail)
    return ("accepted", type(message).__name__, repr(message))


def assert_same(kind: str, payload: bytes, name: str = NAME) -> tuple:
    fast = outcome(messages.decode, name, kind, payload)
    assert fast == outcome(full_path, name, kind, payload), payload
    return fast


# --- generated payloads --------------------------------------------------------------

names = st.from_regex(contract.NAME_RE, fullmatch=True)
slugs = st.from_regex(contract.SLUG_RE, fullmatch=True)
instances = st.from_regex(contract.INSTANCE_RE, fullmatch=True)
numbers = st.one_of(st.integers(-2 ** 53, 2 ** 53), st.floats(allow_nan=False, allow_infinity=False,
                                                              min_value=-2.0 ** 53, max_value=2.0 ** 53))
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


@st.composite
def timestamps(draw) -> str:
    """RFC 3339 as agents write it and as others might: 0-9 fraction digits, Z or an offset."""
    moment = draw(moments)
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")     # %Y gives "999"
    digits = draw(st.integers(0, 9))
    if digits:
        text += "." + draw(st.text("0123456789", min_size=digits, max_size=digits))
    return text + draw(st.sampled_from(["Z", "Z", "Z", "+00:00", "-05:30", "+14:00"]))


@st.composite
def heartbeats(draw) -> dict:
    beat = {"v": 1, "ts": draw(timestamps()), "agent": draw(st.sampled_from([NAME, draw(names)])),
            "ok": draw(st.booleans()), "uptime": draw(numbers)}
    optional = {"mem_kb": st.integers(-2 ** 53, 2 ** 53), "cpu": numbers,
                "errors": st.dictionaries(st.from_regex(contract.KEY_RE, fullmatch=True),
                                          st.integers(-2 ** 53, 2 ** 53), max_size=3),
                "interval": numbers, "version": slugs, "instance": instances}
    for key, values in optional.items():
        if draw(st.booleans()):
            beat[key] = draw(values)
    return beat


@st.composite
def statuses(draw) -> dict:
    message = {"v": 1, "ts": draw(timestamps()), "agent": draw(st.sampled_from([NAME, draw(names)]))}
    if draw(st.booleans()):
        message.update(kind="state", state=draw(st.sampled_from(["online", "offline"])))
    else:
        message.update(kind="reply", id=draw(st.from_regex(contract.COMMAND_ID_RE, fullmatch=True)),
                       verb=draw(st.sampled_from(contract.VERBS)), ok=draw(st.booleans()))
        if draw(st.booleans()):
            message["result"] = draw(st.dictionaries(slugs, st.one_of(numbers, slugs), max_size=3))
        if draw(st.booleans()):
            message["error"] = draw(slugs)
    if draw(st.booleans()):
        message["instance"] = draw(instances)
    return message


def encoded(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


@SETTINGS
@given(heartbeats())
def test_valid_heartbeats_decode_alike(beat):
    assert_same("heartbeat", encoded(beat))
    assert_same("heartbeat", json.dumps(beat).encode())     # spaced: the JSON path


@SETTINGS
@given(statuses())
def test_valid_states_and_replies_decode_alike(message):
    assert_same("status", encoded(message))
    assert_same("status", json.dumps(dict(reversed(message.items()))).encode())


@st.composite
def mutated(draw, messages_of) -> bytes:
    """A valid payload with a few bytes replaced, inserted or removed."""
    data = bytearray(encoded(draw(messages_of)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        byte = draw(st.sampled_from(b'0123456789.-+eE"\\:,{}[] azZT\x00\xff') | st.integers(0, 255))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "replace":
            data[at] = byte
        elif action == "insert":
            data.insert(at, byte)
        else:
            del data[at]
    return bytes(data)


@SETTINGS
@given(mutated(heartbeats()))
def test_mutated_heartbeats_are_refused_or_read_alike(payload):
    assert_same("heartbeat", payload)


@SETTINGS
@given(mutated(statuses()))
def test_mutated_statuses_are_refused_or_read_alike(payload):
    assert_same("status", payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
schema_keys = sorted({*contract.HEARTBEAT_SCHEMA, *contract.REPLY_SCHEMA, *contract.STATE_SCHEMA})


@SETTINGS
@given(st.dictionaries(st.sampled_from(schema_keys), json_values, max_size=12), heartbeats(),
       st.sampled_from(["heartbeat", "status", "alert", "command"]))
def test_arbitrary_objects_are_refused_or_read_alike(noise, beat, kind):
    assert_same(kind, encoded({**beat, **noise}))
    assert_same(kind, json.dumps(noise, allow_nan=True).encode())


@SETTINGS
@given(st.binary(max_size=300))
def test_the_json_decoder_refuses_as_json_does(data):
    assert outcome(contract.decode, data) == outcome(reference_decode, data)


@SETTINGS
@given(timestamps())
def test_epoch_is_exactly_what_datetime_says(text):
    fast = fastdecode.epoch(text)
    if text.endswith("Z"):
        assert fast == contract.parse_rfc3339_uncached(text).timestamp()
    else:
        assert fast is None


# --- hostile payloads, by hand ---------------------------------------------------------

GOOD_BEAT = ('{"v":1,"ts":"2026-12-03T12:01:02.345Z","agent":"agent-007","ok":true,"uptime":12.5,'
             '"mem_kb":20480,"cpu":0.1,"errors":{"dropped":0,"failed":3},"interval":600.0,'
             '"version":"sim-1.0","instance":"abcdef0123456789"}')
GOOD_STATE = '{"v":1,"ts":"2026-12-03T12:01:02.345Z","agent":"agent-007","kind":"state","state":"online"}'

HOSTILE_BEATS = [
    ('"v":1,', '"v":true,'), ('"v":1,', '"v":1.0,'), ('"v":1,', '"v":2,'), ('"ok":true', '"ok":1'),
    ('"uptime":12.5', '"uptime":1e400'), ('"uptime":12.5', '"uptime":NaN'),
    ('"uptime":12.5', '"uptime":-Infinity'), ('"uptime":12.5', '"uptime":9007199254740993'),
    ('"uptime":12.5', '"uptime":0.1000000000000000000000000000000001'),
    ('"uptime":12.5', '"uptime":1000000000000000.5'), ('"uptime":12.5', '"uptime":1.5e3'),
    ('"uptime":12.5', '"uptime":012'), ('"uptime":12.5', '"uptime":"12.5"'),
    ('"mem_kb":20480', '"mem_kb":20480.0'), ('"mem_kb":20480', '"mem_kb":true'),
    ('"agent":"agent-007"', '"agent":"agent-008"'), ('"agent":"agent-007"', '"agent":"Agent-007"'),
    ('"agent":"agent-007"', '"agent":"agent-007\\n"'), ('"agent":"agent-007"', '"agent":"agent\\u002d007"'),
    ('"agent":"agent-007"', '"agent":"agent-007","agent":"agent-007"'),
    ('"agent":"agent-007"', '"agent":"agent-008","agent":"agent-007"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-02-30T12:01:02.345Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T24:01:02.345Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:60:02.345Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:01:60.345Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:01:02.345z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:01:02.3456789012Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:01:02.123456789Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:01:02Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"0000-12-03T12:01:02Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"2026-12-03T12:01:02+25:00"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"\\u0032026-12-03T12:01:02Z"'),
    ('"ts":"2026-12-03T12:01:02.345Z"', '"ts":"２026-12-03T12:01:02Z"'),
    ('"errors":{"dropped":0,"failed":3}', '"errors":{"dropped":true}'),
    ('"errors":{"dropped":0,"failed":3}', '"errors":{"Dropped":1}'),
    ('"errors":{"dropped":0,"failed":3}', '"errors":{"dropped":1.0}'),
    ('"errors":{"dropped":0,"failed":3}', '"errors":{"dropped":1,"dropped":2}'),
    ('"errors":{"dropped":0,"failed":3}', '"errors":{}'), ('"errors":{"dropped":0,"failed":3}', '"errors":[]'),
    ('"errors":{"dropped":0,"failed":3}', '"errors":{"failed":null}'),
    ('"version":"sim-1.0"', '"version":"Sim 1.0"'), ('"version":"sim-1.0"', '"version":""'),
    ('"instance":"abcdef0123456789"', '"instance":"short"'),
    ('"instance":"abcdef0123456789"', '"instance":"ABCDEF0123456789"'),
    ('"interval":600.0', '"interval":600.0,"kind":"state"'), ('"interval":600.0', '"interval":600.0,"x":1'),
    ('{"v"', ' {"v"'), ('"}', '"} '), ('"}', '"}\n'), ('"}', '"}x'), ('"}', '"}{}'), ('{"v"', '\ufeff{"v"'),
]


@pytest.mark.parametrize("old, new", HOSTILE_BEATS)
def test_hostile_heartbeats_are_refused_or_read_alike(old, new):
    assert old in GOOD_BEAT
    assert_same("heartbeat", GOOD_BEAT.replace(old, new, 1).encode("utf-8"))


@pytest.mark.parametrize("payload", [
    b"", b"{", b"[]", b'"x"', b"null", b"[" * 4000, b"\xff\xfe", GOOD_BEAT.encode() + b" " * 4000,
    GOOD_BEAT.encode().replace(b"agent-007", b"a" * 63), GOOD_BEAT.encode().replace(b"agent-007", b"a" * 64),
])
def test_broken_payloads_are_refused_or_read_alike(payload):
    assert_same("heartbeat", payload)
    assert_same("status", payload)


@pytest.mark.parametrize("old, new", [
    ('"state":"online"', '"state":"Online"'), ('"state":"online"', '"state":"offline"'),
    ('"state":"online"', '"state":"online","instance":"abcdef0123"'),
    ('"state":"online"', '"state":"online","instance":"abc"'), ('"kind":"state"', '"kind":"reply"'),
    ('"kind":"state"', '"kind":"event"'), ('"kind":"state",', ''), ('"v":1', '"v":1,"v":1'),
])
def test_hostile_states_are_refused_or_read_alike(old, new):
    assert_same("status", GOOD_STATE.replace(old, new, 1).encode())


def test_what_agent_kit_writes_takes_the_one_match():
    """The speed rests on this: a change to the key order of make_* would quietly cost it."""
    beat = contract.make_heartbeat(NAME, True, 12.5, mem_kb=1, cpu=0.5, errors={"dropped": 0, "failed": 2},
                                   interval=60, version="v1-2", instance=INSTANCE)
    state = contract.make_state(NAME, "offline", INSTANCE)
    assert fastdecode.canonical_heartbeat(contract.encode(beat)) is not None
    assert fastdecode.canonical_state(contract.encode(state)) is not None
    assert assert_same("heartbeat", contract.encode(beat))[0] == "accepted"
    assert assert_same("status", contract.encode(state))[0] == "accepted"


def test_a_payload_naming_another_agent_is_refused_on_every_path():
    for payload in (GOOD_BEAT.encode(), GOOD_BEAT.replace(",", ", ").encode()):
        assert outcome(messages.decode, "agent-008", "heartbeat", payload) == ("refused", "wrong-agent", "")


def test_a_snapshot_is_dated_as_before_across_days_and_fractions():
    start = datetime(2026, 12, 31, 23, 59, 58, tzinfo=timezone.utc)
    for step in range(0, 5000, 7):
        moment = start + timedelta(milliseconds=step * 13)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"
        assert fastdecode.epoch(text) == contract.parse_rfc3339_uncached(text).timestamp()
