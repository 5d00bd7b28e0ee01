"""The verbs' answers as a wide table, like ``kubectl get -o wide``: one column per field.

``fleet.status-report`` answers ``{"uptime": 12, "counters": {"received": 3, ...}}``;
the table shows ``UPTIME``, ``COUNTERS.RECEIVED``, ... (the dotted path is the
key's path in the ``--json`` items, for jq). An answer comes from an agent and
may be hostile: keys and values are cleaned and cut by output.table, nesting
is followed three levels deep, and at most ``MAX_FIELDS`` columns are shown
(the rest are counted in a note; ``--json`` has them all).
"""

from __future__ import annotations

import json

from hatchery.tasks import output

MAX_FIELDS = 16         # answer columns in the text table
MAX_DEPTH = 3           # dict levels turned into columns; deeper ones are shown as JSON text
MAX_KEY = 40            # characters of a column name
MAX_CELL = 48           # characters of a cell
LEAD = ("agent", "state", "rtt_ms")


def flatten(value, prefix: str = "", depth: int = 0) -> dict:
    """``{"a": {"b": 1}, "c": [1, 2]}`` as ``{"a.b": 1, "c": "1,2"}``; an empty dict adds nothing."""
    if isinstance(value, dict) and depth < MAX_DEPTH:
        flat: dict = {}
        for key, inner in value.items():
            name = output.clean(key, MAX_KEY)
            flat.update(flatten(inner, f"{prefix}.{name}" if prefix else name, depth + 1))
        return flat
    if isinstance(value, (list, tuple)):
        return {prefix: ",".join(_text(v) for v in value)}
    if isinstance(value, dict):
        return {prefix: json.dumps(value, default=str, sort_keys=True)}
    return {prefix: value}


def _text(value) -> str:
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


def wide(result) -> tuple:
    """(rows, columns, fields left out) for a CommandResult's text table."""
    rows, fields = [], []
    for reply in result.replies:
        answer = _own_keys(flatten(reply.result) if isinstance(reply.result, dict) else {})
        for key in answer:
            if key not in fields:
                fields.append(key)
        row = {"agent": reply.agent, "state": reply.state, "rtt_ms": reply.rtt_ms, **answer}
        if reply.error:
            row["error"] = reply.error
        rows.append(row)
    shown = fields[:MAX_FIELDS]
    errors = ["error"] if any("error" in r for r in rows) and "error" not in shown else []
    return rows, [*LEAD, *shown, *errors], len(fields) - len(shown)


def _own_keys(answer: dict) -> dict:
    """An answer's 'agent' or 'state' must not overwrite ours: it becomes 'answer.agent'."""
    return {f"answer.{k}" if k in (*LEAD, "error") else k: v for k, v in answer.items()}


def show_wide(result) -> None:
    """The table (every cell cleaned and cut) and, when some fields did not fit, a note."""
    rows, columns, left_out = wide(result)
    output.table(rows, columns, limit=MAX_CELL)
    if left_out:
        output.notice(f"{output.plural(left_out, 'more field')} in the answers: see them with --json")
