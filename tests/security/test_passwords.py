"""Password hashes in Mosquitto's own format, checked against the real tools."""

from __future__ import annotations

import base64
import subprocess

import pytest

from hatchery.errors import UsageError
from hatchery.security import passwords as pw
from tests.security.secbroker import Probe, start_secure_broker


def test_hash_matches_mosquitto_passwd_byte_for_byte(tmp_path):
    # mosquitto_passwd picks the salt; hashing the same password with that salt
    # must reproduce its line exactly.
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "alice", "s3cret"], check=True)
    user, _, theirs = path.read_text().strip().partition(":")
    salt = base64.b64decode(theirs.split("$")[3])
    assert user == "alice"
    assert pw.hash_password("s3cret", salt=salt) == theirs
    assert pw.verify_password("s3cret", theirs)
    assert not pw.verify_password("S3cret", theirs)


def test_hash_shape_and_random_salt():
    first, second = pw.hash_password("x"), pw.hash_password("x")
    assert first != second                       # fresh salt each time
    _, seven, iterations, salt, digest = first.split("$")
    assert (seven, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(digest)) == 64


def test_verify_refuses_garbage():
    assert not pw.verify_password("x", "$6$notours")
    assert not pw.verify_password("x", "")


def test_new_secret_is_long_and_unique():
    secrets = {pw.new_secret() for _ in range(100)}
    assert len(secrets) == 100 and all(len(s) >= 43 for s in secrets)


def test_password_file_round_trip_sorted():
    hashes = {"bravo": pw.hash_password("b"), "alpha": pw.hash_password("a")}
    text = pw.render_password_file(hashes)
    assert text.splitlines()[0].startswith("alpha:$7$")
    assert pw.parse_password_file(text) == hashes


@pytest.mark.parametrize("bad", ["a:b", "fleet/#", "a+b", "UPPER", "", "a b"])
def test_password_file_refuses_unsafe_usernames(bad):
    with pytest.raises(UsageError):
        pw.render_password_file({bad: pw.hash_password("x")})


# --- planning ---------------------------------------------------------------------

def _state(users: dict):
    """hashes and stored secrets for {user: secret}."""
    return {u: pw.hash_password(s) for u, s in users.items()}, dict(users)


def test_plan_adds_rotates_and_revokes():
    hashes, stored = _state({"a": "sa", "b": "sb", "gone": "sg"})
    stored["b"] = None                                      # secret file lost
    changes = pw.plan_credentials(hashes, stored, ["a", "b", "new"], rotate=["a"])
    assert [(c.user, c.action) for c in changes] == [
        ("a", "rotate"), ("b", "rotate"), ("new", "add"), ("gone", "revoke")]
    assert "secret missing" in changes[1].reason


def test_plan_is_empty_when_everything_matches():
    hashes, stored = _state({"a": "sa", "b": "sb"})
    assert pw.plan_credentials(hashes, stored, ["a", "b"]) == []


def test_plan_rotates_a_secret_that_does_not_match_its_hash():
    hashes, stored = _state({"a": "sa"})
    stored["a"] = "tampered"
    [change] = pw.plan_credentials(hashes, stored, ["a"])
    assert change.action == "rotate" and "does not match" in change.reason


def test_apply_issues_secrets_that_verify():
    hashes, _ = _state({"old": "so"})
    changes = pw.plan_credentials(hashes, {}, ["new"])
    new_hashes, issued = pw.apply_credentials(hashes, changes)
    assert set(new_hashes) == {"new"} and set(issued) == {"new"}
    assert pw.verify_password(issued["new"], new_hashes["new"])


def test_describe_never_shows_secrets_or_hashes():
    hashes, stored = _state({"a": "topsecret"})
    changes = pw.plan_credentials(hashes, stored, ["a", "b"], rotate=["a"])
    text = pw.describe(changes)
    assert "~ a (rotate" in text and "+ b (add" in text
    assert "topsecret" not in text and "$7$" not in text


# --- a real broker ----------------------------------------------------------------

@pytest.fixture
def broker_with_users(tmp_path):
    secrets = {"alice": pw.new_secret(), "bob": pw.new_secret()}
    passwd = tmp_path / "passwd"
    pw.write_private(passwd, pw.render_password_file(
        {u: pw.hash_password(s) for u, s in secrets.items()}))
    broker = start_secure_broker(tmp_path / "broker", password_file=passwd)
    yield broker, secrets
    broker.stop()


def test_real_mosquitto_accepts_our_hashes(broker_with_users):
    broker, secrets = broker_with_users
    for user, secret in secrets.items():
        probe = Probe(broker, user, secret)
        assert not probe.connect().is_failure, user
        probe.close()


@pytest.mark.parametrize("user, password", [("alice", "wrong"), ("nobody", "x"), (None, None)])
def test_real_mosquitto_refuses_wrong_unknown_and_anonymous(broker_with_users, user, password):
    broker, _ = broker_with_users
    reason = Probe(broker, user, password).connect()
    assert reason.is_failure
    assert reason.getName() in ("Not authorized", "Bad user name or password")


def test_secret_survives_a_shell_round_trip():
    # token_urlsafe uses only [A-Za-z0-9_-]: safe in env files and shell quoting
    assert all(c.isalnum() or c in "-_" for c in pw.new_secret())
