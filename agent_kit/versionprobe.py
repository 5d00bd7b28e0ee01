"""The version a heartbeat carries: the agent's version command, run off the network thread.

The handler runs the command once at start and again after a config-reload
(``refresh``), each time on a thread of its own and with the command's
timeout, and keeps the first line as a contract slug (``actions.version_slug``:
"Python 3.11.7" is "python-3.11.7"). Output that cannot be a slug is refused
and the heartbeat then carries no version; nothing else of the output ever
reaches the bus.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

from . import actions

log = logging.getLogger("agent_kit.handler")


class VersionProbe:
    """``slug``: the last version the command gave (None: none yet, failed or refused)."""

    def __init__(self, name: str, command, timeout: float, on_change: Callable[[], None]):
        self.name, self.command, self.timeout = name, command, timeout
        self.slug: Optional[str] = None
        self._on_change = on_change
        self._running = threading.Lock()
        self._again = threading.Event()
        self._stopping = threading.Event()

    def refresh(self) -> None:
        """Run the command soon, on its own thread. Asked while a run is under way, it
        runs once more after that one, never twice at the same time."""
        if self.command is None or self._stopping.is_set():
            return
        self._again.set()
        if self._running.acquire(blocking=False):
            threading.Thread(target=self._run, name=f"{self.name}-version", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def set_from(self, line: str) -> None:
        """version-report ran the command anyway: keep what it said."""
        self._set(actions.version_slug(line))

    def _run(self) -> None:
        while True:
            try:
                while self._again.is_set() and not self._stopping.is_set():
                    self._again.clear()
                    self._set(self._probe())
            finally:
                self._running.release()
            # a refresh asked for between the loop's last look and the release
            if not self._again.is_set() or not self._running.acquire(blocking=False):
                return

    def _probe(self) -> Optional[str]:
        try:
            line = actions.version(self.command, self.timeout)
        except actions.ActionError as exc:
            log.warning("%s: version command failed (%s): heartbeats carry no version",
                        self.name, exc.code)
            return None
        slug = actions.version_slug(line)
        if slug is None:
            log.warning("%s: the version command's first line (%d characters) cannot be a "
                        "slug: heartbeats carry no version", self.name, len(line))
        return slug

    def _set(self, slug: Optional[str]) -> None:
        if slug != self.slug:
            self.slug = slug
            self._on_change()
