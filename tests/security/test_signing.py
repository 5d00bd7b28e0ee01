"""Command signatures: forged, tampered, stale and replayed commands are refused."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_kit import contract
from agent_kit.signing import (
    BAD_SIGNATURE,
    REPLAYED,
    STALE,
    ReplayCache,
    SignatureError,
    canonical,
    sign_command,
    verify_command,
)

KEY = b"k" * 32
NOW = 1_800_000_000.0


def _command(verb="health-check", command_id="c1", at=NOW) -> dict:
    moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return contract.make_command(verb, command_id, ts=f"{moment}.000Z")


def _refused(command, reason, *, key=KEY, now=NOW, seen=None, window=30):
    with pytest.raises(SignatureError) as caught:
        verify_command(command, key, now=now, seen=seen or ReplayCache(), window=window)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_a_signed_command_verifies_and_keeps_its_fields():
    command = _command()
    signed = sign_command(command, KEY)
    assert {k: v for k, v in signed.items() if k != "sig"} == command
    assert len(signed["sig"]) == 64
    verify_command(signed, KEY, now=NOW, seen=ReplayCache())


def test_signed_command_still_fits_the_contract_size():
    assert len(contract.encode(sign_command(_command(), KEY))) < 200


def test_unsigned_command_is_refused():
    _refused(_command(), BAD_SIGNATURE)


def test_forged_with_another_key_is_refused():
    _refused(sign_command(_command(), b"attacker-key"), BAD_SIGNATURE)


@pytest.mark.parametrize("field, value", [
    ("verb", "config-reload"), ("id", "c2"), ("ts", "2027-01-15T08:00:05.000Z"), ("v", 2)])
def test_tampered_field_is_refused(field, value):
    signed = sign_command(_command(), KEY)
    _refused({**signed, field: value}, BAD_SIGNATURE)


def test_added_field_is_refused():
    _refused({**sign_command(_command(), KEY), "args": "rm -rf /"}, BAD_SIGNATURE)


@pytest.mark.parametrize("offset", [-31, 31, -3600])
def test_stale_or_future_command_is_refused(offset):
    _refused(sign_command(_command(at=NOW + offset), KEY), STALE)


def test_inside_the_window_either_way_is_accepted():
    for i, offset in enumerate((-29, 29)):
        verify_command(sign_command(_command(command_id=f"c{i}", at=NOW + offset), KEY),
                       KEY, now=NOW, seen=ReplayCache())


def test_replayed_command_is_refused():
    seen, signed = ReplayCache(), sign_command(_command(), KEY)
    verify_command(signed, KEY, now=NOW, seen=seen)
    _refused(signed, REPLAYED, seen=seen, now=NOW + 1)


def test_a_forgery_does_not_poison_the_cache():
    # a forged command with the id of a real one must not block the real one
    seen = ReplayCache()
    _refused(sign_command(_command(), b"attacker-key"), BAD_SIGNATURE, seen=seen)
    verify_command(sign_command(_command(), KEY), KEY, now=NOW, seen=seen)


def test_replay_cache_is_bounded_and_forgets_expired_ids():
    cache = ReplayCache(size=3)
    for i in range(5):
        cache.add(f"id{i}", expires=NOW + 30, now=NOW)
    assert len(cache) == 3 and "id0" not in cache and "id4" in cache
    cache.add("late", expires=NOW + 100, now=NOW + 31)   # the others have expired
    assert len(cache) == 1


def test_canonical_encoding_ignores_key_order_and_sig():
    a = {"v": 1, "id": "x", "verb": "health-check", "ts": "t"}
    b = {"ts": "t", "verb": "health-check", "id": "x", "v": 1, "sig": "whatever"}
    assert canonical(a) == canonical(b)


def test_sign_needs_ts_id_and_a_key():
    with pytest.raises(ValueError):
        sign_command({"verb": "health-check", "id": "x"}, KEY)
    with pytest.raises(ValueError):
        sign_command(_command(), b"")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=20), st.integers(),
                                                      st.booleans(), st.none()), max_size=6))
def test_random_commands_are_refused_with_a_reason_never_a_crash(command):
    with pytest.raises(SignatureError) as caught:
        verify_command(command, KEY, now=NOW, seen=ReplayCache())
    assert caught.value.reason in (BAD_SIGNATURE, STALE, REPLAYED)


def test_signing_uses_the_standard_library_only():
    source = Path(__file__).parents[2] / "agent_kit" / "signing.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "hashlib", "hmac", "json", "time", "collections", "typing",
                        "math", "os"}
