"""Linux's /proc, read as text and parsed by pure functions (tested on captured text).

What the runtimes read for fleet.capacity: a host's memory and load, and a
process's resident memory and CPU time.
"""

from __future__ import annotations

import os
from typing import Optional

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read(path: str) -> str:
    """The file's text, '' when it cannot be read (no /proc, the process is gone). A process's
    name in its stat and status is whatever bytes it set: never decoded strictly."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def parse_meminfo(text: str) -> tuple:
    """(MemTotal, MemAvailable) in kB from /proc/meminfo's text; None for one it lacks."""
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words and words[0].isdigit():
            fields[key.strip()] = int(words[0])
    return fields.get("MemTotal"), fields.get("MemAvailable")


def parse_loadavg(text: str) -> Optional[float]:
    """The 1-minute load average from /proc/loadavg's text."""
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def cpu_ticks(stat: str) -> Optional[int]:
    """utime + stime from /proc/PID/stat's text (the command may hold spaces and parentheses)."""
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


def rss_kb(status: str) -> Optional[int]:
    """VmRSS from /proc/PID/status's text."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            words = line.split()
            return int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    return None
