"""Scheduling the collector: launchd plist, systemd service+timer, crontab line."""

from __future__ import annotations

import plistlib
import shutil
import subprocess

import pytest

from hatchery.core.plan import apply_plan
from hatchery.errors import UsageError
from hatchery.provision import schedule


@pytest.fixture
def inv_path(tmp_path):
    path = tmp_path / "my fleet" / "fleet_inventory.yaml"   # a space: quoting matters
    path.parent.mkdir()
    path.write_text("manager: zephyr\n")
    return path


def _spec(kind, inv_path, every=10):
    return schedule.make_spec(kind, every, inv_path, state_dir=inv_path.parent / ".hatchery")


def test_launchd_plist_is_valid_and_runs_collect(inv_path):
    files = schedule.render_files(_spec("launchd", inv_path))
    plist = plistlib.loads(files["hatchery-collect.plist"].encode())
    assert plist["StartInterval"] == 600
    assert plist["ProgramArguments"][-5:-2] == ["fleet.collect", "--inventory", str(inv_path)]
    assert plist["WorkingDirectory"] == str(inv_path.parent)


def test_systemd_units_pass_systemd_analyze(inv_path, tmp_path):
    files = schedule.render_files(_spec("systemd", inv_path, every=15))
    assert "OnUnitActiveSec=15min" in files["hatchery-collect.timer"]
    assert f'fleet.collect --inventory "{inv_path}"' in files["hatchery-collect.service"]
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    for name, text in files.items():
        (unit_dir / name).write_text(text)
    done = subprocess.run([analyze, "verify", str(unit_dir / "hatchery-collect.service"),
                           str(unit_dir / "hatchery-collect.timer")],
                          capture_output=True, text=True, timeout=60)
    problems = [line for line in done.stderr.splitlines() if "hatchery-collect" in line]
    assert problems == [], done.stderr


def test_cron_line_quotes_and_escapes(inv_path):
    line = schedule.render_files(_spec("cron", inv_path, every=30))["crontab"]
    assert line.startswith("*/30 * * * * cd ")
    assert f"'{inv_path}'" in line and line.rstrip().endswith("# hatchery:hatchery-collect")
    assert schedule.cron_quote("50%") == "50\\%"
    assert schedule.cron_schedule(120) == "0 */2 * * *"
    with pytest.raises(UsageError):
        _spec("cron", inv_path, every=7)


def test_crontab_edit_replaces_only_our_line():
    ours = "# hatchery:hatchery-collect"
    theirs = "MAILTO=me\n0 1 * * * backup # nightly\n"
    current = f"{theirs}*/5 * * * * old {ours}\n"
    updated = schedule.crontab_with(current, f"*/10 * * * * new {ours}", "hatchery-collect")
    assert updated == f"{theirs}*/10 * * * * new {ours}\n"
    assert schedule.crontab_without(updated, "hatchery-collect") == theirs


def test_install_is_idempotent_and_remove_cleans_up(inv_path, tmp_path):
    spec, target = _spec("systemd", inv_path), tmp_path / "user-units"
    first = apply_plan("install", schedule.install_plan(spec, target_dir=target, activate=False))
    assert [r.status for r in first.results] == ["changed", "changed"]
    again = schedule.install_plan(spec, target_dir=target, activate=False)
    assert [c.action for c in again] == ["none", "none"]
    with_activation = schedule.install_plan(schedule.make_spec(
        "systemd", 20, inv_path, state_dir=tmp_path), target_dir=target)
    assert with_activation[-1].reason == "systemctl --user enable --now hatchery-collect.timer"
    apply_plan("remove", schedule.remove_plan(spec, target_dir=target, activate=False))
    assert list(target.iterdir()) == []


def test_bad_inputs_are_usage_errors(inv_path):
    with pytest.raises(UsageError):
        _spec("windows-task", inv_path)
    with pytest.raises(UsageError):
        _spec("systemd", inv_path, every=0)
    with pytest.raises(UsageError):
        schedule.make_spec("systemd", 5, inv_path, state_dir=inv_path.parent, label="../x")
