"""Rate limiting for drop alerts: a flood of bad messages yields a trickle of alerts.

At most one alert per ``interval`` seconds. Each alert carries the total drop
count and how many drops were suppressed since the previous alert; drops that
were suppressed and never followed by another are reported by ``flush()``.
Pure logic with an injectable clock, so it is tested without a broker.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class DropAlerts:
    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Optional[float] = None
        self._total = 0
        self._pending = 0
        self._latest: dict = {}

    def note(self, reason: str, size: int, digest: str, topic: str) -> dict | None:
        """Record one drop; return alert fields if an alert is due now, else None."""
        with self._lock:
            self._total += 1
            self._latest = {"reason": reason, "size": size, "digest": digest, "topic": topic}
            if not self._due():
                self._pending += 1
                return None
            return self._emit(suppressed=self._pending)

    def flush(self) -> dict | None:
        """A summary of suppressed drops once the window has passed, else None."""
        with self._lock:
            if self._pending == 0 or not self._due():
                return None
            # the latest drop was itself suppressed, so it counts among them
            return self._emit(suppressed=self._pending)

    def _due(self) -> bool:
        return self._last is None or self._clock() - self._last >= self.interval

    def _emit(self, suppressed: int) -> dict:
        self._last = self._clock()
        self._pending = 0
        return {**self._latest, "count": self._total, "suppressed": suppressed}
