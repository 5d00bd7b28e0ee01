"""The dashboard's read-only data routes besides its event stream, behind the same login.

- ``/history?spark=S&fleet=F&after=N``: the last hour (``observe.history``) as
  JSON: sparkline slots from S, fleet-count slots from F, timeline events
  numbered after N (each optional: a first load asks for everything).
- ``/logs?agent=NAME&lines=N``: the agent's last N log lines (default 100, at
  most 200) from its runtime (``agent_logs``), as text/plain. NAME must be an
  agent of the inventory, matched whole: it picks an inventory entry and the
  runtime builds the path or container name from that entry, so no text of the
  request ever reaches a path. Lines are cut to MAX_LINE_CHARS, control
  characters become "?", and at most MAX_LOG_BYTES are sent (the newest lines).

``answer(path, query, model)`` returns (status, content type, body); the
server (``observe.dashboard``) adds its security headers.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import parse_qs

from hatchery.errors import HatcheryError, RuntimeFailure
from hatchery.runtime import for_runtime

ROUTES = ("/history", "/logs")
DEFAULT_LOG_LINES = 100
MAX_LOG_LINES = 200
MAX_LINE_CHARS = 500
MAX_LOG_BYTES = 64 * 1024
MAX_QUERY = 512                 # characters of a query string we read at all
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class BadQuery(ValueError):
    pass


def answer(path: str, query: str, model) -> tuple:
    """(status, content type, body) for one of ROUTES."""
    try:
        params = _params(query)
        if path == "/history":
            return _history(params, model)
        return _logs(params, model)
    except BadQuery as exc:
        return 400, TEXT, f"{exc}\n".encode()


def _params(query: str) -> dict:
    if len(query) > MAX_QUERY:
        raise BadQuery("query too long")
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                          max_num_fields=8)
    except ValueError:
        raise BadQuery("malformed query") from None
    if any(len(values) != 1 for values in parsed.values()):
        raise BadQuery("each parameter at most once")
    return {key: values[0] for key, values in parsed.items()}


def _number(params: dict, key: str, default: Optional[int], low: int, high: int) -> Optional[int]:
    text = params.get(key)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise BadQuery(f"{key} must be a whole number")
    return max(low, min(high, int(text)))


def _history(params: dict, model) -> tuple:
    return 200, JSON, model.history.encode(model.clock(),
                                           spark_from=_number(params, "spark", None, 0, 2**32 - 1),
                                           fleet_from=_number(params, "fleet", None, 0, 2**32 - 1),
                                           after=_number(params, "after", 0, 0, 2**53))


def _logs(params: dict, model) -> tuple:
    name = params.get("agent", "")
    spec = model.inv.agents.get(name)           # the inventory's own key, matched whole
    if spec is None:
        return 404, TEXT, b"no such agent in the inventory\n"
    count = _number(params, "lines", DEFAULT_LOG_LINES, 1, MAX_LOG_LINES)
    try:
        lines = list(_bounded(for_runtime(spec.runtime).agent_logs(model.inv, spec, lines=count),
                              count))
    except RuntimeFailure as exc:
        return 404, TEXT, (clean(str(exc).splitlines()[0]) + "\n").encode()
    except HatcheryError as exc:
        return 503, TEXT, ("cannot read its log: " + clean(str(exc).splitlines()[0]) + "\n").encode()
    return 200, TEXT, fit(lines)


def _bounded(lines, count: int):
    for index, line in enumerate(lines):
        if index >= count:
            return
        yield clean(line)


def clean(line: str) -> str:
    """One log line as inert text: control characters as '?', at most MAX_LINE_CHARS."""
    text = "".join(c if c.isprintable() or c == "\t" else "?" for c in line[: MAX_LINE_CHARS + 1])
    return text if len(text) <= MAX_LINE_CHARS else text[:MAX_LINE_CHARS - 1] + "…"


def fit(lines: list) -> bytes:
    """The newest lines that fit in MAX_LOG_BYTES, oldest first."""
    kept, size = [], 0
    for line in reversed(lines):
        data = line.encode("utf-8", "replace") + b"\n"
        if size + len(data) > MAX_LOG_BYTES:
            break
        kept.append(data)
        size += len(data)
    return b"".join(reversed(kept))
