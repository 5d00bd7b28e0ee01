"""fleet.schedule --kind systemd: a failed enable is reported failed and retried next run.

This machine has no systemd user manager, so ``systemctl --user enable`` fails
for real here, the way it did in the report; the unit files themselves are
written to a throw-away directory.
"""

from __future__ import annotations

import shutil

import pytest

from hatchery.core.plan import apply_plan
from hatchery.provision import schedule


@pytest.fixture
def spec(tmp_path):
    inventory = tmp_path / "fleet_inventory.yaml"
    inventory.write_text("fleet:\n  manager: zephyr\n")
    return schedule.make_spec("systemd", 10, inventory, state_dir=tmp_path / ".hatchery")


def test_failed_enable_is_failed_and_retried(spec, tmp_path):
    if schedule.is_active(spec):
        pytest.skip("a systemd user manager runs here and the job is already active")
    target = tmp_path / "units"
    first = apply_plan("install", schedule.install_plan(spec, target_dir=target))
    assert [r.status for r in first.results] == ["changed", "changed", "failed"], first.results
    assert not first.ok
    second = apply_plan("install", schedule.install_plan(spec, target_dir=target))
    assert [r.status for r in second.results] == ["ok", "ok", "failed"], second.results
    assert "not enabled" in second.results[-1].reason and not second.ok


def test_is_active_is_false_without_the_scheduler(spec, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("systemctl") is None and schedule.is_active(spec) is False
