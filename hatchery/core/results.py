"""One result base for every task, like fabric's ``GroupResult``.

A result is a set of per-item outcomes (an agent's reply, a plan item, a
check, a finding). Every result answers the same questions the same way:

- ``ok``        -- did everything go as wanted (the exit status follows it);
- ``items``     -- the per-item outcomes, each with ``as_dict()`` (or a dict);
- ``rows()``    -- one dict per item for a table, keyed by ``columns``;
- ``problems``  -- a property: one human line per item that is not ok;
- ``as_dict()`` -- ``ok``, ``items``, ``problems`` and the result's extras.

``envelope`` wraps a result for ``--json``: the same keys for every task
(``task``, ``ok``, ``items``, ``problems``, ``timings``, then extras).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Optional


class Result:
    """The shape every task result shares; subclasses provide ``items``."""

    columns: tuple = ()

    @property
    def items(self) -> list:
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list:
        """One line per item that is not ok (printed on stderr, listed in JSON)."""
        return []

    def rows(self) -> list:
        return [item_dict(i) for i in self.items]

    def extras(self) -> dict:
        """Result-specific keys of the JSON envelope (counts, mode, ...)."""
        return {}

    def observed_at(self) -> Optional[datetime]:
        """When the fleet was observed, for results that read it at one moment."""
        return None

    def as_dict(self) -> dict:
        return {"ok": self.ok, "items": [item_dict(i) for i in self.items],
                "problems": [{"message": p} for p in self.problems], **self.extras()}


class Rows(Result):
    """A result made of plain rows (agent.list, broker.status, bus.record)."""

    def __init__(self, rows: list, columns: tuple, *, ok: bool = True, problems=(), extras=None):
        self._rows, self.columns, self._ok = list(rows), tuple(columns), ok
        self._problems, self._extras = list(problems), dict(extras or {})

    @property
    def items(self) -> list:
        return self._rows

    @property
    def ok(self) -> bool:
        return self._ok and not self._problems

    @property
    def problems(self) -> list:
        return self._problems

    def extras(self) -> dict:
        return self._extras


def item_dict(item: Any) -> dict:
    return item if isinstance(item, dict) else item.as_dict()


def envelope(task: str, result: Optional[Result], *, seconds: float,
             started: Optional[datetime] = None, error=None) -> dict:
    """The one JSON shape of every task: task, ok, items, problems, timings, extras."""
    body = result.as_dict() if result is not None else {"ok": False, "items": [], "problems": []}
    at = (result.observed_at() if result is not None else None) or started or utc_now()
    out = {"task": task, "ok": bool(body.pop("ok")) and error is None,
           "items": body.pop("items"), "problems": body.pop("problems"),
           "timings": {"at": at.isoformat(), "seconds": round(seconds, 4)}}
    if error is not None:
        out["problems"] = error_problems(error) + out["problems"]
        out["error"] = error_dict(error)
    out.update(body)
    return out


def error_dict(error: BaseException) -> dict:
    """An error for JSON: its type, message, fix and exit code."""
    return {"type": type(error).__name__,
            "message": getattr(error, "message", None) or str(error).splitlines()[0],
            "fix": getattr(error, "fix", "") or "",
            "exit_code": getattr(error, "exit_code", None)}


def error_problems(error: BaseException) -> list:
    """Inventory problems keep their file, line, key and fix; others are one problem."""
    listed = getattr(error, "problems", None)
    if listed:
        return [p.as_dict() if hasattr(p, "as_dict") else {"message": str(p)} for p in listed]
    return [{"message": getattr(error, "message", None) or str(error),
             "fix": getattr(error, "fix", "") or ""}]


def strict(value: Any) -> Any:
    """JSON-safe data: non-finite floats become null (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
