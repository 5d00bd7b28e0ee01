"""Run a fleet job on a schedule, without an LLM: the collector or the audit.

Two jobs, each under its own label so both can be installed side by side:
- ``collect``: ``fleet.collect`` (a broadcast health-check) every N minutes;
- ``audit``: ``bus.audit`` (the ADR's weekly compliance check), once a week,
  listening live for a while or reading a ``bus.record`` file.

``configs.schedule`` renders one of three schedulers from ``templates/schedule/``:
a launchd agent (macOS, as in the ADR), a systemd service + timer, or a crontab line.
Installing and removing are plan-then-apply ``Change`` objects, so
``--check`` shows the files and the diff before anything is written.

Both jobs exit non-zero when they find a problem; the alert is the
scheduler's own: cron mails the failure line (MAILTO), systemd marks the
unit failed (``systemctl --user --failed``, the journal), launchd records
``LastExitStatus`` (``launchctl list LABEL``). Output goes to a log file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from hatchery.configs.schedule import (  # noqa: F401  (the schedule's vocabulary, used by tasks and tests)
    AUDIT,
    COLLECT,
    CRON,
    DAYS,
    DEFAULT_AT,
    DEFAULT_LABEL,
    DEFAULT_LISTEN_S,
    DESCRIPTIONS,
    HEAL,
    JOBS,
    KINDS,
    LABELS,
    LAUNCHD,
    SUPERVISOR,
    SYSTEMD,
    Always,
    Every,
    ScheduleSpec,
    Weekly,
    When,
    cron_fields,
    cron_line,
    cron_marker,
    cron_quote,
    cron_schedule,
    crontab_with,
    crontab_without,
    parse_at,
    render_files,
    systemd_quote,
)
from hatchery.core.assets import PROJECT_ROOT
from hatchery.core.paths import StatePaths
from hatchery.core.plan import Action, Change, text_diff
from hatchery.core.state import read_text, write_if_changed
from hatchery.errors import RenderError, RuntimeFailure, UsageError

REPO = PROJECT_ROOT


def collector_command(inventory_path: Path, timeout: float = 10.0) -> tuple:
    """argv that runs ``invoke fleet.collect`` for this inventory with this Python."""
    return (*_invoke(), "fleet.collect", "--inventory", str(Path(inventory_path).resolve()),
            "--timeout", f"{timeout:g}")


def audit_command(inventory_path: Path, *, listen: Optional[float] = None,
                  record: Optional[Path] = None) -> tuple:
    """argv that runs ``invoke bus.audit`` live for ``listen`` seconds, or on a record file."""
    source = ("--record", str(Path(record).resolve())) if record else ("--listen", f"{listen:g}")
    return (*_invoke(), "bus.audit", "--inventory", str(Path(inventory_path).resolve()), *source)


def heal_command(inventory_path: Path, *, watch: bool) -> tuple:
    """argv of ``invoke fleet.heal`` (one pass) or ``fleet.heal --watch`` (the supervisor)."""
    return (*_invoke(), "fleet.heal", "--inventory", str(Path(inventory_path).resolve()),
            *(("--watch",) if watch else ()))


def make_heal_spec(kind: str, every_minutes: int, inventory_path: Path, *, state_dir: Path) -> ScheduleSpec:
    """fleet.heal, one pass every ``every_minutes`` minutes (cron, a systemd timer, launchd)."""
    spec = make_spec(kind, every_minutes, inventory_path, state_dir=state_dir, label=LABELS[HEAL])
    return ScheduleSpec(kind, spec.when, heal_command(inventory_path, watch=False), spec.workdir,
                        StatePaths(state_dir).heal_log, LABELS[HEAL], DESCRIPTIONS[HEAL])


def make_supervisor_spec(kind: str, inventory_path: Path, *, state_dir: Path) -> ScheduleSpec:
    """fleet.heal --watch as a long-running service: a systemd unit or a launchd KeepAlive agent."""
    _check_kind_and_label(kind, LABELS[SUPERVISOR])
    if kind == CRON:
        raise UsageError("cron cannot keep a long-running supervisor up",
                         "use --kind systemd or launchd, or from cron: --job heal --every 5 (one pass)")
    return ScheduleSpec(kind, Always(), heal_command(inventory_path, watch=True),
                        Path(inventory_path).resolve().parent, StatePaths(state_dir).heal_log,
                        LABELS[SUPERVISOR], DESCRIPTIONS[SUPERVISOR])


def _invoke() -> tuple:
    return (sys.executable, "-m", "invoke", "--search-root", str(REPO))


def default_kind() -> str:
    """launchd on macOS, systemd where it is the running init, else cron."""
    if sys.platform == "darwin":
        return LAUNCHD
    if Path("/run/systemd/system").is_dir():
        return SYSTEMD
    return CRON


def make_spec(kind: str, every_minutes: int, inventory_path: Path, *,
              state_dir: Path, label: str = DEFAULT_LABEL) -> ScheduleSpec:
    """The collector every ``every_minutes`` minutes."""
    _check_kind_and_label(kind, label)
    if not isinstance(every_minutes, int) or isinstance(every_minutes, bool) or every_minutes < 1:
        raise UsageError(f"every must be a whole number of minutes >= 1, not {every_minutes!r}")
    if kind == CRON:
        cron_schedule(every_minutes)   # refuse an interval cron cannot keep, before rendering
    return ScheduleSpec(kind, Every(every_minutes), collector_command(inventory_path),
                        Path(inventory_path).resolve().parent, StatePaths(state_dir).collect_log, label)


def make_audit_spec(kind: str, weekly: Weekly, inventory_path: Path, *, state_dir: Path,
                    listen: Optional[float] = None, record: Optional[Path] = None,
                    label: str = LABELS[AUDIT]) -> ScheduleSpec:
    """The audit once a week: live for ``listen`` seconds (default 300), or on ``record``."""
    _check_kind_and_label(kind, label)
    if listen is not None and record is not None:
        raise UsageError("give --listen or --record for the audit, not both",
                         "--record audits a file that bus.record keeps writing")
    seconds = DEFAULT_LISTEN_S if listen is None else listen
    if record is None and (not isinstance(seconds, (int, float)) or not 0 < seconds <= 86400):
        raise UsageError(f"--listen must be seconds between 1 and 86400, not {listen!r}")
    command = audit_command(inventory_path, listen=None if record else seconds, record=record)
    timeout = 300 if record else int(seconds) + 300
    return ScheduleSpec(kind, weekly, command, Path(inventory_path).resolve().parent,
                        StatePaths(state_dir).audit_log, label, DESCRIPTIONS[AUDIT], timeout)


def _check_kind_and_label(kind: str, label: str) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown scheduler {kind!r}", f"use one of: {', '.join(KINDS)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label):
        raise UsageError(f"label {label!r} is not a safe file name",
                         "use letters, digits, '.', '_' and '-'")


# --- install / remove (plan-then-apply) ------------------------------------------------

def install_plan(spec: ScheduleSpec, *, target_dir: Optional[Path] = None,
                 activate: bool = True) -> list:
    """Changes that install the schedule. ``target_dir``: where unit/plist files go."""
    files = render_files(spec)
    if spec.kind == SYSTEMD:
        verify_systemd(files)
    if spec.kind == CRON:
        return [_crontab_change(spec.label, lambda cur: crontab_with(cur, files["crontab"],
                                                                     spec.label))]
    target = target_dir or default_target_dir(spec.kind)
    changes = [_file_change(target / name, text) for name, text in files.items()]
    if not activate:
        return changes
    # Activation is its own fact: files already in place do not mean the job is
    # enabled (a failed enable last time must be retried, not reported ok).
    if any(c.needed for c in changes):
        changes.append(_activation(spec, target, enable=True))
    elif not is_active(spec):
        changes.append(_activation(spec, target, enable=True,
                                   reason="files in place but the job is not enabled and active"))
    else:
        changes.append(Change(f"{spec.kind} {spec.label}", Action.NONE, "enabled and active"))
    return changes


def is_active(spec: ScheduleSpec) -> bool:
    """Is the installed job enabled and loaded? False when the scheduler cannot tell us."""
    if spec.kind == LAUNCHD:
        queries = [["launchctl", "list", spec.label]]
    else:
        unit = _systemd_unit(spec)
        queries = [["systemctl", "--user", "is-enabled", "--quiet", unit],
                   ["systemctl", "--user", "is-active", "--quiet", unit]]
    for argv in queries:
        if not shutil.which(argv[0]):
            return False
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
    return True


def remove_plan(spec: ScheduleSpec, *, target_dir: Optional[Path] = None,
                activate: bool = True) -> list:
    if spec.kind == CRON:
        return [_crontab_change(spec.label, lambda cur: crontab_without(cur, spec.label))]
    target = target_dir or default_target_dir(spec.kind)
    names = render_files(spec)
    changes = [_removal(target / name) for name in names]
    if activate and any(c.needed for c in changes):
        changes.insert(0, _activation(spec, target, enable=False))
    return changes


def verify_systemd(files: dict) -> None:
    """``systemd-analyze verify`` the rendered units, where it is installed; raise on problems."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        return
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / name for name in files]
        for path in paths:
            path.write_text(files[path.name])
        done = subprocess.run([analyze, "verify", *map(str, paths)], capture_output=True,
                              text=True, timeout=60)
    # it also reports on unrelated units of this host: keep only lines about ours
    problems = [line for line in done.stderr.splitlines() if any(n in line for n in files)]
    if problems:
        raise RenderError("systemd-analyze verify refused the rendered units: "
                          + "; ".join(problems[:5]), "check templates/schedule/job.*.j2")


def default_target_dir(kind: str) -> Path:
    home = Path.home()
    return home / "Library/LaunchAgents" if kind == LAUNCHD else home / ".config/systemd/user"


def _file_change(path: Path, text: str) -> Change:
    current = read_text(path)
    if current == text:
        return Change(str(path), Action.NONE, "up to date")
    return Change(str(path), Action.UPDATE if current else Action.CREATE,
                  "content differs" if current else "not installed",
                  text_diff(current, text, path.name),
                  lambda: "written" if write_if_changed(path, text, 0o644) else "unchanged")


def _removal(path: Path) -> Change:
    if not path.exists():
        return Change(str(path), Action.NONE, "not installed")
    return Change(str(path), Action.REMOVE, "installed", text_diff(read_text(path), "", path.name),
                  lambda: (path.unlink(missing_ok=True), "removed")[1])


def _activation(spec: ScheduleSpec, target: Path, *, enable: bool, reason: str = "") -> Change:
    argv = activation_command(spec, target, enable=enable)
    why = f"{reason}: {' '.join(argv)}" if reason else " ".join(argv)
    return Change(f"{spec.kind} {spec.label}", Action.RELOAD, why, "", lambda: _run(argv))


def activation_command(spec: ScheduleSpec, target: Path, *, enable: bool) -> list:
    if spec.kind == LAUNCHD:
        plist = str(target / f"{spec.label}.plist")
        return ["launchctl", "load" if enable else "unload", "-w", plist]
    verb = "enable" if enable else "disable"
    return ["systemctl", "--user", verb, "--now", _systemd_unit(spec)]


def _systemd_unit(spec: ScheduleSpec) -> str:
    """What is enabled: the timer of a scheduled job, the service itself for the supervisor."""
    return f"{spec.label}.service" if isinstance(spec.when, Always) else f"{spec.label}.timer"


def _crontab_change(label: str, edit) -> Change:
    current = _crontab_read()
    wanted = edit(current)
    if wanted == current:
        return Change(f"crontab {label}", Action.NONE, "up to date")
    return Change(f"crontab {label}", Action.UPDATE, "crontab differs",
                  text_diff(current, wanted, "crontab"), lambda: _crontab_write(wanted))


def _crontab_read() -> str:
    if not shutil.which("crontab"):
        return ""
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=10)
    return done.stdout if done.returncode == 0 else ""   # 1 = no crontab yet


def _crontab_write(text: str) -> str:
    _require("crontab", "apt-get install -y cron (or use the systemd timer)")
    done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True,
                          timeout=10)
    if done.returncode != 0:
        raise RuntimeFailure(f"crontab refused the new table: {done.stderr.strip()}")
    return "crontab updated"


def _run(argv: list) -> str:
    _require(argv[0], "install it, or pass activate=False and load the file yourself")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeFailure(f"{' '.join(argv)} failed: {done.stderr.strip()[:300]}",
                             "check the unit with systemd-analyze verify / plutil -lint")
    return " ".join(argv)


def _require(program: str, fix: str) -> None:
    if not shutil.which(program):
        raise RuntimeFailure(f"{program} is not installed on this machine", fix)
