"""TCP ports on this host: is something listening, wait until it is, find a free one."""

from __future__ import annotations

import socket
import time


def listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def first_listening(hosts: list, port: int) -> str:
    """The first of ``hosts`` where something listens on ``port`` ('' when none)."""
    return next((h for h in hosts if listening(h, port)), "")


def wait_until(host: str, port: int, *, up: bool = True, timeout: float = 5.0) -> bool:
    """Poll until ``port`` is (or, with ``up=False``, is no longer) listening."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(host, port) == up:
            return True
        time.sleep(0.02)
    return False


def free_port() -> int:
    """A port nothing listens on now (tests and benchmarks pick theirs this way)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
