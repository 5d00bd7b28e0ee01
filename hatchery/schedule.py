"""Run the heartbeat collector (``fleet.collect``) every N minutes, without an LLM.

Renders one of three schedulers from ``templates/schedule/``: a launchd
agent (macOS, as in the ADR), a systemd service + timer, or a crontab line.
Installing and removing are plan-then-apply ``Change`` objects, so
``--check`` shows the files and the diff before anything is written.
"""

from __future__ import annotations

import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import RuntimeFailure, UsageError
from .plan import Change, text_diff
from .render import render
from .state import read_text, write_if_changed

LAUNCHD, SYSTEMD, CRON = "launchd", "systemd", "cron"
KINDS = (LAUNCHD, SYSTEMD, CRON)
REPO = Path(__file__).resolve().parent.parent
DEFAULT_LABEL = "hatchery-collect"


@dataclass(frozen=True)
class ScheduleSpec:
    kind: str
    every_minutes: int
    command: tuple                  # argv of the collector
    workdir: Path
    log_path: Path
    label: str = DEFAULT_LABEL
    description: str = "hatchery heartbeat collector (broadcast health-check)"


def collector_command(inventory_path: Path, timeout: float = 10.0) -> tuple:
    """argv that runs ``invoke fleet.collect`` for this inventory with this Python."""
    return (sys.executable, "-m", "invoke", "--search-root", str(REPO), "fleet.collect",
            "--inventory", str(Path(inventory_path).resolve()), "--timeout", f"{timeout:g}")


def default_kind() -> str:
    """launchd on macOS, systemd where it is the running init, else cron."""
    if sys.platform == "darwin":
        return LAUNCHD
    if Path("/run/systemd/system").is_dir():
        return SYSTEMD
    return CRON


def make_spec(kind: str, every_minutes: int, inventory_path: Path, *,
              state_dir: Path, label: str = DEFAULT_LABEL) -> ScheduleSpec:
    if kind not in KINDS:
        raise UsageError(f"unknown scheduler {kind!r}", f"use one of: {', '.join(KINDS)}")
    if not isinstance(every_minutes, int) or every_minutes < 1:
        raise UsageError(f"every must be a whole number of minutes >= 1, not {every_minutes!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", label):
        raise UsageError(f"label {label!r} is not a safe file name",
                         "use letters, digits, '.', '_' and '-'")
    if kind == CRON:
        cron_schedule(every_minutes)   # refuse an interval cron cannot keep, before rendering
    return ScheduleSpec(kind, every_minutes, collector_command(inventory_path),
                        Path(inventory_path).resolve().parent, state_dir / "collect.log", label)


# --- rendering (pure) -------------------------------------------------------------

def render_files(spec: ScheduleSpec) -> dict:
    """{file name: text} for the scheduler; validated where a validator exists."""
    if spec.kind == LAUNCHD:
        text = render("schedule/launchd.plist.j2", _context(spec))
        plistlib.loads(text.encode())   # raises if the template produced a bad plist
        return {f"{spec.label}.plist": text}
    if spec.kind == SYSTEMD:
        context = {**_context(spec), "exec_start": " ".join(systemd_quote(a) for a in spec.command)}
        return {f"{spec.label}.service": render("schedule/collect.service.j2", context),
                f"{spec.label}.timer": render("schedule/collect.timer.j2", context)}
    return {"crontab": cron_line(spec)}


def _context(spec: ScheduleSpec) -> dict:
    return {"label": spec.label, "command": list(spec.command), "workdir": str(spec.workdir),
            "log_path": str(spec.log_path), "every_minutes": spec.every_minutes,
            "description": spec.description}


def cron_line(spec: ScheduleSpec) -> str:
    context = {"schedule": cron_schedule(spec.every_minutes), "marker": cron_marker(spec.label),
               "workdir_q": cron_quote(str(spec.workdir)), "log_q": cron_quote(str(spec.log_path)),
               "command_q": " ".join(cron_quote(a) for a in spec.command)}
    return render("schedule/crontab.j2", context)


def cron_schedule(every_minutes: int) -> str:
    """The five cron fields; only intervals cron can keep evenly are accepted."""
    if every_minutes < 60 and 60 % every_minutes == 0:
        return f"*/{every_minutes} * * * *" if every_minutes > 1 else "* * * * *"
    hours, rest = divmod(every_minutes, 60)
    if rest == 0 and 24 % hours == 0:
        return f"0 */{hours} * * *" if hours > 1 else "0 * * * *"
    raise UsageError(f"cron cannot run every {every_minutes} minutes evenly",
                     "use a divisor of 60 minutes or of 24 hours, or the systemd timer")


def cron_marker(label: str) -> str:
    return f"hatchery:{label}"


def cron_quote(arg: str) -> str:
    # cron turns an unescaped % into a newline before the shell sees it
    return shlex.quote(arg).replace("%", "\\%")


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart argument: systemd expands %, $ and splits on spaces."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def crontab_with(current: str, line: str, label: str) -> str:
    """``current`` crontab with our line replacing any earlier one (by its marker)."""
    kept = crontab_without(current, label)
    return (kept + ("\n" if kept and not kept.endswith("\n") else "") + line.rstrip("\n") + "\n")


def crontab_without(current: str, label: str) -> str:
    marker = f"# {cron_marker(label)}"
    lines = [ln for ln in current.splitlines() if not ln.rstrip().endswith(marker)]
    return "\n".join(lines) + ("\n" if lines else "")


# --- install / remove (plan-then-apply) ------------------------------------------------

def install_plan(spec: ScheduleSpec, *, target_dir: Optional[Path] = None,
                 activate: bool = True) -> list:
    """Changes that install the schedule. ``target_dir``: where unit/plist files go."""
    files = render_files(spec)
    if spec.kind == CRON:
        return [_crontab_change(spec.label, lambda cur: crontab_with(cur, files["crontab"],
                                                                     spec.label))]
    target = target_dir or default_target_dir(spec.kind)
    changes = [_file_change(target / name, text) for name, text in files.items()]
    if activate and any(c.needed for c in changes):
        changes.append(_activation(spec, target, enable=True))
    return changes


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


def default_target_dir(kind: str) -> Path:
    home = Path.home()
    return home / "Library/LaunchAgents" if kind == LAUNCHD else home / ".config/systemd/user"


def _file_change(path: Path, text: str) -> Change:
    current = read_text(path)
    if current == text:
        return Change(str(path), "none", "up to date")
    return Change(str(path), "update" if current else "create",
                  "content differs" if current else "not installed",
                  text_diff(current, text, path.name),
                  lambda: "written" if write_if_changed(path, text, 0o644) else "unchanged")


def _removal(path: Path) -> Change:
    if not path.exists():
        return Change(str(path), "none", "not installed")
    return Change(str(path), "remove", "installed", text_diff(read_text(path), "", path.name),
                  lambda: (path.unlink(missing_ok=True), "removed")[1])


def _activation(spec: ScheduleSpec, target: Path, *, enable: bool) -> Change:
    argv = activation_command(spec, target, enable=enable)
    return Change(f"{spec.kind} {spec.label}", "reload", " ".join(argv), "", lambda: _run(argv))


def activation_command(spec: ScheduleSpec, target: Path, *, enable: bool) -> list:
    if spec.kind == LAUNCHD:
        plist = str(target / f"{spec.label}.plist")
        return ["launchctl", "load" if enable else "unload", "-w", plist]
    verb = "enable" if enable else "disable"
    return ["systemctl", "--user", verb, "--now", f"{spec.label}.timer"]


def _crontab_change(label: str, edit) -> Change:
    current = _crontab_read()
    wanted = edit(current)
    if wanted == current:
        return Change(f"crontab {label}", "none", "up to date")
    return Change(f"crontab {label}", "update", "crontab differs",
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
