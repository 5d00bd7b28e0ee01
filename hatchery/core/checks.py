"""Check results: what verify and the container checks report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from hatchery.core.results import Result
from hatchery.errors import HatcheryError


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    ms: Optional[float] = None

    def as_dict(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "ms": self.ms}


@dataclass
class VerifyReport(Result):
    checks: list = field(default_factory=list)
    columns: tuple = ("check", "ok", "detail", "ms")

    @property
    def items(self) -> list:
        return self.checks

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list:
        return [f"{c.name}: {c.detail or 'failed'}" for c in self.checks if not c.ok]


def timed(name: str, probe: Callable[[], str]) -> Check:
    """Run ``probe``; a HatcheryError or OSError becomes a failed check."""
    started = time.perf_counter()
    try:
        detail = probe()
    except (HatcheryError, OSError, TimeoutError) as exc:
        return Check(name, False, str(exc).splitlines()[0], ms_since(started))
    return Check(name, True, detail or "", ms_since(started))


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


