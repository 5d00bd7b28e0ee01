"""A scheduled job, rendered for its scheduler: a launchd plist, a systemd
service (+ timer), or a crontab line. Pure: a ``ScheduleSpec`` in, text out;
``provision.schedule`` builds the specs and installs what this renders.
"""

from __future__ import annotations

import plistlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from hatchery.core import formats
from hatchery.core.render import render
from hatchery.errors import UsageError

LAUNCHD, SYSTEMD, CRON = "launchd", "systemd", "cron"
KINDS = (LAUNCHD, SYSTEMD, CRON)
COLLECT, AUDIT, HEAL, SUPERVISOR = "collect", "audit", "heal", "supervisor"
JOBS = (COLLECT, AUDIT, HEAL, SUPERVISOR)
LABELS = {COLLECT: "hatchery-collect", AUDIT: "hatchery-audit", HEAL: "hatchery-heal",
          SUPERVISOR: "hatchery-supervisor"}
DEFAULT_LABEL = LABELS[COLLECT]
DESCRIPTIONS = {COLLECT: "hatchery heartbeat collector (broadcast health-check)",
                AUDIT: "hatchery compliance audit of bus traffic (bus.audit)",
                HEAL: "hatchery self-heal, one pass (fleet.heal)",
                SUPERVISOR: "hatchery supervisor: restarts agents within seconds of a Last Will "
                            "(fleet.heal in watch mode)"}
DEFAULT_AT = "Mon 03:00"          # cron's "0 3 * * 1"
DEFAULT_LISTEN_S = 300            # how long the weekly audit listens live
# cron and launchd number the days alike: 0 (or 7) is Sunday, 1 is Monday
DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True)
class Every:
    """Every N minutes, counted from the last run (the collector)."""

    minutes: int

    def text(self) -> str:
        return f"every {self.minutes} minutes"


@dataclass(frozen=True)
class Weekly:
    """Once a week at a local day and time (the audit)."""

    weekday: int                    # 0 = Sunday ... 6 = Saturday, as cron and launchd count
    hour: int
    minute: int

    def text(self) -> str:
        return f"weekly on {DAYS[self.weekday]} at {self.hour:02d}:{self.minute:02d}"

    def on_calendar(self) -> str:
        return f"{DAYS[self.weekday]} *-*-* {self.hour:02d}:{self.minute:02d}:00"


@dataclass(frozen=True)
class Always:
    """A long-running service, started again whenever it exits (the supervisor)."""

    restart_s: int = 5

    def text(self) -> str:
        return f"always running, restarted {self.restart_s} s after it exits"


When = Union[Every, Weekly, Always]


@dataclass(frozen=True)
class ScheduleSpec:
    kind: str
    when: When
    command: tuple                  # argv of the job
    workdir: Path
    log_path: Path
    label: str = DEFAULT_LABEL
    description: str = DESCRIPTIONS[COLLECT]
    timeout_s: int = 300            # systemd kills a run that hangs longer (a oneshot waits forever)


def parse_at(text: str) -> Weekly:
    """'Mon 03:00' (or 'monday 3:00') to a Weekly."""
    match = re.fullmatch(r"\s*([A-Za-z]+)\s+(\d{1,2}):(\d{2})\s*", str(text))
    day = _weekday(match[1]) if match else None
    if day is None:
        raise UsageError(f"--at {text!r} is not a weekday and a time",
                         "e.g. --at 'Mon 03:00' (days Sun..Sat, 24-hour local time)")
    hour, minute = int(match[2]), int(match[3])
    if hour > 23 or minute > 59:
        raise UsageError(f"--at {text!r}: no such time of day", "use 00:00 to 23:59")
    return Weekly(day, hour, minute)


def _weekday(word: str) -> Optional[int]:
    full = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    return next((i for i, day in enumerate(full) if word.lower() in (day, day[:3])), None)


def render_files(spec: ScheduleSpec) -> dict:
    """{file name: text} for the scheduler; validated where a validator exists."""
    if spec.kind == LAUNCHD:
        text = render("schedule/launchd.plist.j2", _context(spec))
        plistlib.loads(text.encode())   # raises if the template produced a bad plist
        return {f"{spec.label}.plist": text}
    if spec.kind == SYSTEMD:
        context = {**_context(spec), "exec_start": " ".join(systemd_quote(a) for a in spec.command)}
        if isinstance(spec.when, Always):
            return {f"{spec.label}.service": render("schedule/supervisor.service.j2", context)}
        return {f"{spec.label}.service": render("schedule/job.service.j2", context),
                f"{spec.label}.timer": render("schedule/job.timer.j2", context)}
    return {"crontab": cron_line(spec)}


def _context(spec: ScheduleSpec) -> dict:
    when = spec.when
    weekly = None
    if isinstance(when, Weekly):
        weekly = {"weekday": when.weekday, "hour": when.hour, "minute": when.minute,
                  "on_calendar": when.on_calendar()}
    always = spec.when.restart_s if isinstance(when, Always) else None
    return {"label": spec.label, "command": list(spec.command), "workdir": str(spec.workdir),
            "always_restart_s": always,
            "log_path": str(spec.log_path), "description": spec.description,
            "timeout_s": spec.timeout_s, "schedule_text": when.text(),
            "every_minutes": when.minutes if isinstance(when, Every) else None, "weekly": weekly}


def cron_line(spec: ScheduleSpec) -> str:
    context = {"schedule": cron_fields(spec.when), "marker": cron_marker(spec.label),
               "label": spec.label, "workdir_q": cron_quote(str(spec.workdir)),
               "log_q": cron_quote(str(spec.log_path)),
               "command_q": " ".join(cron_quote(a) for a in spec.command)}
    return render("schedule/crontab.j2", context)


def cron_fields(when: When) -> str:
    if isinstance(when, Weekly):
        return f"{when.minute} {when.hour} * * {when.weekday}"
    if isinstance(when, Always):
        raise UsageError("cron cannot keep a long-running service up", "use systemd or launchd")
    return cron_schedule(when.minutes)


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
    # cron turns an unescaped % into a newline before the shell sees it (core.formats)
    return formats.cron_arg(arg)


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart argument: systemd expands %, $ and splits on spaces (core.formats)."""
    return formats.systemd_arg(arg)


def crontab_with(current: str, line: str, label: str) -> str:
    """``current`` crontab with our line replacing any earlier one (by its marker)."""
    kept = crontab_without(current, label)
    return (kept + ("\n" if kept and not kept.endswith("\n") else "") + line.rstrip("\n") + "\n")


def crontab_without(current: str, label: str) -> str:
    marker = f"# {cron_marker(label)}"
    lines = [ln for ln in current.splitlines() if not ln.rstrip().endswith(marker)]
    return "\n".join(lines) + ("\n" if lines else "")
