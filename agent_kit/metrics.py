"""Process and host metrics for heartbeats, standard library only.

Linux reads /proc; elsewhere (macOS) resource.getrusage and os.getloadavg.
Nothing here is personal: numbers about the process and the host, no names.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

try:
    import resource
except ImportError:  # Windows: no getrusage; memory is then simply absent
    resource = None


def rss_kb() -> int | None:
    """Resident set size of this process in kB."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, Linux kilobytes; this is the peak, the best there is
    return peak // 1024 if os.uname().sysname == "Darwin" else peak


def host_uptime() -> float | None:
    """Seconds since the host booted (Linux), else None."""
    try:
        with open("/proc/uptime") as uptime:
            return round(float(uptime.read().split()[0]), 1)
    except (OSError, ValueError, IndexError):
        return None


def load_average() -> float | None:
    """One-minute load average: the host's CPU pressure for a one-shot tool."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def host_mem_used_kb() -> int | None:
    """Memory in use on the host (MemTotal - MemAvailable), Linux only."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemTotal"].split()[0]) - int(fields["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError):
        return None


class CpuMeter:
    """This process's CPU use as a fraction of one core since the previous sample."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def sample(self) -> float:
        with self._lock:
            wall, cpu = time.monotonic(), time.process_time()
            elapsed = wall - self._wall
            fraction = (cpu - self._cpu) / elapsed if elapsed > 0 else 0.0
            self._wall, self._cpu = wall, cpu
        return round(max(fraction, 0.0), 3)


class Counters:
    """Thread-safe named counters (received, answered, dropped by reason...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = Counter()

    def add(self, name: str, amount: int = 1) -> int:
        with self._lock:
            self._counts[name] += amount
            return self._counts[name]

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def with_prefix(self, prefix: str) -> dict:
        """{'not-json': 3, ...} for counters named ``prefix + reason``."""
        with self._lock:
            return {k[len(prefix):]: v for k, v in self._counts.items() if k.startswith(prefix)}

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._counts)


def host_heartbeat_fields() -> dict:
    """Heartbeat fields for a one-shot tool (cron, launchd): the host, not the tool."""
    fields = {"uptime": host_uptime(), "mem_kb": host_mem_used_kb(), "cpu": load_average()}
    if fields["uptime"] is None:  # no /proc: at least say the host is up
        fields["uptime"] = 0
    return {k: v for k, v in fields.items() if v is not None}
