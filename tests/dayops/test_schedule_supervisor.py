"""fleet.schedule --job supervisor: fleet.heal --watch as a long-running service
(a systemd unit that systemd-analyze accepts, a launchd KeepAlive agent); cron refused."""

from __future__ import annotations

import plistlib

import pytest

from hatchery.core.plan import apply_plan
from hatchery.errors import UsageError
from hatchery.provision import schedule


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "fleet_inventory.yaml"
    path.write_text("fleet:\n  manager: zephyr\n")
    return path


def test_systemd_supervisor_unit_is_a_restarting_service(inventory, tmp_path):
    spec = schedule.make_supervisor_spec("systemd", inventory, state_dir=tmp_path / ".hatchery")
    files = schedule.render_files(spec)
    assert list(files) == ["hatchery-supervisor.service"]        # no timer: it runs all the time
    unit = files["hatchery-supervisor.service"]
    assert "Type=simple" in unit and "Restart=always" in unit and "WantedBy=default.target" in unit
    assert unit.split("ExecStart=")[1].split("\n")[0].endswith("fleet.heal --inventory "
                                                                 f"{inventory.resolve()} --watch")
    target = tmp_path / "units"
    report = apply_plan("install", schedule.install_plan(spec, target_dir=target, activate=False))
    assert report.ok and (target / "hatchery-supervisor.service").read_text() == unit   # verified
    assert schedule.activation_command(spec, target, enable=True)[-1] == "hatchery-supervisor.service"


def test_launchd_supervisor_is_kept_alive(inventory, tmp_path):
    spec = schedule.make_supervisor_spec("launchd", inventory, state_dir=tmp_path / ".hatchery")
    plist = plistlib.loads(schedule.render_files(spec)["hatchery-supervisor.plist"].encode())
    assert plist["KeepAlive"] is True and plist["RunAtLoad"] is True
    assert plist["ProgramArguments"][-1] == "--watch" and "StartInterval" not in plist


def test_heal_one_pass_for_cron_and_no_supervisor_under_cron(inventory, tmp_path):
    spec = schedule.make_heal_spec("cron", 5, inventory, state_dir=tmp_path / ".hatchery")
    line = schedule.render_files(spec)["crontab"]
    assert line.startswith("*/5 * * * * ") and "fleet.heal" in line and "--watch" not in line
    with pytest.raises(UsageError, match="cron cannot keep"):
        schedule.make_supervisor_spec("cron", inventory, state_dir=tmp_path / ".hatchery")
    weekly = schedule.make_audit_spec("launchd", schedule.parse_at("Mon 03:00"), inventory,
                                      state_dir=tmp_path / ".hatchery")
    assert plistlib.loads(schedule.render_files(weekly)["hatchery-audit.plist"].encode())["RunAtLoad"] is False
