"""Operator intent in the state directory: stopped, retired, rollout leases."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from hatchery.core import intent
from hatchery.core.intent import Intent
from hatchery.errors import UsageError
from hatchery.inventory.model import Inventory


@pytest.fixture
def inv(tmp_path):
    return Inventory(path=tmp_path / "fleet_inventory.yaml", state_dir=tmp_path / ".hatchery")


def test_nothing_recorded_means_running(inv):
    assert intent.read_intent(inv).of("a") is Intent.RUNNING


def test_stopped_is_recorded_and_cleared(inv):
    intent.record_stopped(inv, ["a", "b"], by="agent.stop")
    book = intent.read_intent(inv)
    assert book.of("a") is Intent.STOPPED and book.of("b") is Intent.STOPPED
    assert book.stopped["a"].by == "agent.stop" and not book.wants_running("a")
    intent.record_running(inv, ["a"])
    assert intent.read_intent(inv).of("a") is Intent.RUNNING
    assert intent.read_intent(inv).of("b") is Intent.STOPPED


def test_the_retired_marker_is_the_record_of_a_retirement(inv):
    secrets = Path(inv.state_dir) / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "old.retired").write_text("revoked\n")
    intent.record_stopped(inv, ["old"], by="agent.stop")
    assert intent.read_intent(inv).of("old") is Intent.RETIRED


def test_a_lease_holds_until_released_or_expired(inv):
    with intent.leased(inv, ["a"], "fleet.rollout test", 30) as lease:
        assert intent.read_intent(inv).of("a") is Intent.IN_ROLLOUT
        assert lease.valid(time.time())
        with pytest.raises(UsageError, match="leased to fleet.rollout test"):
            intent.take_lease(inv, ["a"], "someone else", 30)
    assert intent.read_intent(inv).of("a") is Intent.RUNNING
    intent.take_lease(inv, ["b"], "gone", 30)
    book = intent.read_intent(inv)
    assert book.of("b", now=time.time() + 31) is Intent.RUNNING, "an expired lease is ignored"


def test_a_lease_is_released_on_ctrl_c(inv):
    with pytest.raises(KeyboardInterrupt):
        with intent.leased(inv, ["a"], "fleet.rollout test", 30):
            raise KeyboardInterrupt
    assert intent.read_intent(inv).of("a") is Intent.RUNNING


@pytest.mark.parametrize("seconds", [0, -1, float("inf"), 10 ** 9])
def test_lease_lengths_are_bounded(inv, seconds):
    with pytest.raises(UsageError):
        intent.take_lease(inv, ["a"], "x", seconds)


def test_a_damaged_file_reads_as_empty_and_is_rewritten(inv):
    path = Path(inv.state_dir) / "intent.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert intent.read_intent(inv).of("a") is Intent.RUNNING
    intent.record_stopped(inv, ["a"], by="agent.stop")
    assert json.loads(path.read_text())["stopped"]["a"]["by"] == "agent.stop"


def test_writers_at_once_lose_nothing(inv):
    def stop(i):
        intent.record_stopped(inv, [f"a{i}"], by="agent.stop")
    threads = [threading.Thread(target=stop, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(intent.read_intent(inv).stopped) == {f"a{i}" for i in range(20)}
