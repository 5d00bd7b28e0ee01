"""Scheduling the weekly audit beside the collector: each job under its own label,
for launchd (StartCalendarInterval), systemd (OnCalendar) and cron (0 3 * * 1)."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from dataclasses import replace

import pytest

from hatchery.core.plan import apply_plan
from hatchery.errors import RenderError, UsageError
from hatchery.provision import schedule


@pytest.fixture
def inv_path(tmp_path):
    path = tmp_path / "my fleet" / "fleet_inventory.yaml"   # a space: quoting matters
    path.parent.mkdir()
    path.write_text("manager: zephyr\n")
    return path


def _audit(kind, inv_path, at=schedule.DEFAULT_AT, **source):
    return schedule.make_audit_spec(kind, schedule.parse_at(at), inv_path,
                                    state_dir=inv_path.parent / ".hatchery", **source)


def _collect(kind, inv_path):
    return schedule.make_spec(kind, 10, inv_path, state_dir=inv_path.parent / ".hatchery")


@pytest.mark.parametrize("text, expected", [
    ("Mon 03:00", schedule.Weekly(1, 3, 0)),
    ("sunday 7:05", schedule.Weekly(0, 7, 5)),
    ("  SAT 23:59 ", schedule.Weekly(6, 23, 59)),
])
def test_at_parses_a_weekday_and_a_local_time(text, expected):
    assert schedule.parse_at(text) == expected


@pytest.mark.parametrize("text", ["Mon", "03:00", "Moon 03:00", "Mon 24:00", "Mon 03:60",
                                  "Mon 3", "1 03:00"])
def test_at_refuses_what_is_not_a_weekday_and_a_time(text):
    with pytest.raises(UsageError):
        schedule.parse_at(text)


def test_launchd_audit_uses_start_calendar_interval(inv_path):
    files = schedule.render_files(_audit("launchd", inv_path))
    plist = plistlib.loads(files["hatchery-audit.plist"].encode())
    assert plist["Label"] == "hatchery-audit"
    assert plist["StartCalendarInterval"] == {"Weekday": 1, "Hour": 3, "Minute": 0}
    assert "StartInterval" not in plist
    assert plist["ProgramArguments"][-5:] == ["bus.audit", "--inventory", str(inv_path),
                                             "--listen", "300"]
    assert plist["StandardOutPath"].endswith("/.hatchery/audit.log")


def test_systemd_audit_timer_is_weekly_and_passes_systemd_analyze(inv_path):
    files = schedule.render_files(_audit("systemd", inv_path, at="Wed 04:30", listen=120))
    timer, service = files["hatchery-audit.timer"], files["hatchery-audit.service"]
    assert "OnCalendar=Wed *-*-* 04:30:00" in timer and "OnUnitActiveSec" not in timer
    assert f'bus.audit --inventory "{inv_path}" --listen 120' in service
    assert "TimeoutStartSec=420" in service     # the listen time plus room to finish
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    schedule.verify_systemd(files)              # raises on any complaint about our units
    calendar = subprocess.run([analyze, "calendar", "Wed *-*-* 04:30:00"], capture_output=True,
                              text=True, timeout=30)
    assert calendar.returncode == 0 and "Next elapse: Wed" in calendar.stdout


def test_systemd_validator_refuses_a_broken_unit(inv_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    files = schedule.render_files(_audit("systemd", inv_path))
    broken = files["hatchery-audit.service"].replace("Type=oneshot", "Type=oneshot\nBogus=1")
    with pytest.raises(RenderError, match="Bogus"):
        schedule.verify_systemd({**files, "hatchery-audit.service": broken})


def test_cron_audit_is_monday_3am_and_quotes_the_record_file(inv_path, tmp_path):
    line = schedule.render_files(_audit("cron", inv_path))["crontab"]
    assert line.startswith("0 3 * * 1 cd ") and "bus.audit" in line and "--listen 300" in line
    assert line.rstrip().endswith("# hatchery:hatchery-audit")
    record = tmp_path / "bus 100%.jsonl"
    on_file = schedule.render_files(_audit("cron", inv_path, at="Fri 23:15", record=record))
    assert on_file["crontab"].startswith("15 23 * * 5 ")
    assert f"--record '{tmp_path}/bus 100\\%.jsonl'" in on_file["crontab"]


def test_cron_line_prints_the_failure_for_crons_mail(inv_path, tmp_path):
    # cron mails whatever a job prints; the job's own output goes to the log,
    # so a failure must print one line of its own.
    spec = replace(_audit("cron", inv_path), command=("sh", "-c", "echo finding; exit 3"),
                   log_path=tmp_path / "audit.log")
    line = schedule.render_files(spec)["crontab"]
    shell = line.split(" ", 5)[5].replace("\\%", "%")     # what cron hands to /bin/sh
    done = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=10)
    assert done.stdout.startswith("hatchery-audit failed with exit status 3")
    assert (tmp_path / "audit.log").read_text() == "finding\n"
    spec_ok = replace(spec, command=("true",))
    ok_shell = schedule.render_files(spec_ok)["crontab"].split(" ", 5)[5]
    assert subprocess.run(["sh", "-c", ok_shell], capture_output=True, text=True,
                          timeout=10).stdout == ""


@pytest.mark.parametrize("kind", ["systemd", "launchd"])
def test_both_jobs_install_side_by_side_and_remove_separately(kind, inv_path, tmp_path):
    target = tmp_path / "units"
    collect, audit = _collect(kind, inv_path), _audit(kind, inv_path)
    for spec in (collect, audit):
        assert apply_plan("install", schedule.install_plan(spec, target_dir=target,
                                                           activate=False)).ok
    names = sorted(p.name for p in target.iterdir())
    suffixes = [".service", ".timer"] if kind == "systemd" else [".plist"]
    assert names == sorted(f"{label}{s}" for label in ("hatchery-audit", "hatchery-collect")
                           for s in suffixes)
    again = schedule.install_plan(audit, target_dir=target, activate=False)
    assert {c.action for c in again} == {"none"}
    moved = _audit(kind, inv_path, at="Tue 05:00")
    assert {c.action for c in schedule.install_plan(moved, target_dir=target,
                                                    activate=False)} == {"update"}
    assert apply_plan("remove", schedule.remove_plan(audit, target_dir=target,
                                                     activate=False)).ok
    assert sorted(p.name for p in target.iterdir()) == [f"hatchery-collect{s}" for s in suffixes]


def test_activation_names_each_jobs_own_unit(inv_path, tmp_path):
    plan = schedule.install_plan(_audit("systemd", inv_path), target_dir=tmp_path)
    assert plan[-1].reason == "systemctl --user enable --now hatchery-audit.timer"
    plan = schedule.install_plan(_audit("launchd", inv_path), target_dir=tmp_path)
    assert plan[-1].reason == f"launchctl load -w {tmp_path}/hatchery-audit.plist"


def test_both_cron_lines_live_in_one_crontab(inv_path):
    theirs = "MAILTO=ops@example.org\n"
    collect = schedule.render_files(_collect("cron", inv_path))["crontab"]
    audit = schedule.render_files(_audit("cron", inv_path))["crontab"]
    table = schedule.crontab_with(schedule.crontab_with(theirs, collect, "hatchery-collect"),
                                  audit, "hatchery-audit")
    assert table == theirs + collect + audit
    assert schedule.crontab_without(table, "hatchery-audit") == theirs + collect


def test_bad_audit_inputs_are_usage_errors(inv_path, tmp_path):
    with pytest.raises(UsageError):
        _audit("systemd", inv_path, listen=0)
    with pytest.raises(UsageError):
        _audit("systemd", inv_path, listen=30, record=tmp_path / "bus.jsonl")
    with pytest.raises(UsageError):
        _audit("at", inv_path)
