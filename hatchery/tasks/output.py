"""The one module that prints.

Everything else returns data; this module turns it into Ansible-style result
lines, tables, check lists, JSON, and error messages on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from datetime import datetime, timezone
from typing import Optional, Sequence

from hatchery.core.plan import CHANGED, FAILED, OK, WOULD_CHANGE, ItemResult, Report
from hatchery.core.results import strict
from hatchery.core.words import plural

_COLOURS = {OK: "32", CHANGED: "33", WOULD_CHANGE: "36", FAILED: "31",
            "pass": "32", "fail": "31"}


def _use_colour(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _paint(text: str, status: str, stream=sys.stdout) -> str:
    code = _COLOURS.get(status)
    return f"\033[{code}m{text}\033[0m" if code and _use_colour(stream) else text


class OutputClosed(Exception):
    """Whoever read our stdout went away (``| head -1``): stop quietly."""


def emit(text: str = "", *, err: bool = False) -> None:
    _write(text, sys.stderr if err else sys.stdout)


def _write(text: str, stream) -> None:
    try:
        print(text, file=stream, flush=True)
    except BrokenPipeError:
        if stream is sys.stderr:
            return          # nobody reads our errors either; nothing more to say
        raise OutputClosed() from None


def flush_stdout() -> bool:
    """Flush what is buffered; False (and stdout silenced) when the reader is gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        return False
    return True


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail loudly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def clean(text: str, limit: int = 200) -> str:
    """Text that came off the bus, safe for a terminal: no escape sequences.

    A compromised agent could otherwise put terminal control sequences into a
    version string or an error and have them run in the operator's terminal.
    """
    text = str(text)
    if not text.isprintable():      # the usual case is printable: one C call, no loop
        text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def emit_untrusted(text: str, *, err: bool = False) -> None:
    """A line built from bus data (monitor events, agents' answers)."""
    emit(clean(text, limit=1000), err=err)


def stamp(at: Optional[datetime] = None) -> str:
    """A log line's time: UTC, RFC 3339 with milliseconds (``2026-12-03T09:04:24.512Z``),
    the format of the contract's ``ts`` so bus messages and our lines sort together."""
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def log_line(text: str, *, err: bool = False, at: Optional[datetime] = None) -> None:
    """One line of a long-running task's log (heal --watch, exporter, dashboard, logs
    --follow): timestamped, and cleaned like any text that may come off the bus."""
    emit(f"{stamp(at)} {clean(text, limit=1000)}", err=err)


def emit_json(data) -> None:
    """Strict JSON: non-finite numbers become null, never NaN or Infinity."""
    _write(json.dumps(strict(data), indent=2, allow_nan=False, default=str), sys.stdout)


def emit_json_line(data) -> None:
    """One object per line (``fleet.monitor --stream --json``)."""
    _write(json.dumps(strict(data), separators=(",", ":"), allow_nan=False, default=str),
           sys.stdout)


# --- plan results -----------------------------------------------------------------

ITEM_WIDTH = 24             # the item column of result lines, wider when an item is


def item_width(items) -> int:
    """The item column's width for these items (``agent a-long-name``): none is cut or
    pushes the columns after it out of line."""
    return max([ITEM_WIDTH] + [width(clean(i)) for i in items])


def result_line(result: ItemResult, *, show_diff: bool = False, item_column: int = ITEM_WIDTH) -> None:
    """One line per item as it completes: progress on long work."""
    status = _paint(f"{result.status:<12}", result.status)
    what = result.action if result.action != "none" else ""
    why = "; ".join(x for x in (result.reason, result.detail) if x)
    timing = f" ({result.seconds:.2f}s)" if result.seconds >= 0.01 else ""
    item = pad(clean(result.item), item_column)
    emit(f"  {status} {item} {what:<8} {why}{timing}".rstrip())
    if result.error:
        for line in result.error.splitlines():
            emit(f"      {line}", err=True)
    if show_diff and result.diff:
        for line in result.diff.rstrip("\n").splitlines():
            emit(f"      {_diff_colour(line)}")


def _diff_colour(line: str) -> str:
    if line.startswith("+") and not line.startswith("+++"):
        return _paint(line, OK)
    if line.startswith("-") and not line.startswith("---"):
        return _paint(line, FAILED)
    return line


def report_header(title: str, check: bool) -> None:
    emit(f"{title}{' (check mode: nothing will be changed)' if check else ''}")


def report_summary(report: Report) -> None:
    counts = {s: sum(r.status == s for r in report.results) for s in (OK, CHANGED, WOULD_CHANGE, FAILED)}
    parts = [f"ok={counts[OK]}"]
    parts.append(f"would-change={counts[WOULD_CHANGE]}" if report.check else f"changed={counts[CHANGED]}")
    parts.append(f"failed={counts[FAILED]}")
    tail = "  (no changes)" if not report.changed and report.ok else ""
    emit("  ".join(parts) + tail)
    host_summaries(report.hosts)


def host_summaries(hosts: dict) -> None:
    """One line per host, like fabric's GroupResult: what happened there, or why it could not."""
    column = max([12] + [width(clean(h)) for h in hosts])
    for host, s in hosts.items():
        state = "unreachable" if s.get("error") else ("failed" if s["failed"] else "ok")
        counts = f"ok={s['ok']} changed={s['changed']} failed={s['failed']} ({s['seconds']:.1f}s)"
        line = f"  host {pad(clean(host), column)} {state:<12} {counts}"
        emit(line + (f"  {s['error']}" if s.get("error") else ""))


def report(rep: Report, *, show_diff: bool = False) -> None:
    """A whole report at once (when lines were not streamed)."""
    report_header(rep.title, rep.check)
    column = item_width(r.item for r in rep.results)
    for result in rep.results:
        result_line(result, show_diff=show_diff, item_column=column)
    report_summary(rep)


# --- tables and check lists ------------------------------------------------------------

def table(rows: Sequence[dict], columns: Sequence[str], *, headers: Sequence[str] | None = None,
          limit: int = 200) -> None:
    """Rows under upper-case headers, each column as wide as its widest cell (as the
    terminal shows it: a wide character takes two columns), cells cut at ``limit``."""
    headers = [clean(h) for h in (headers or [c.upper() for c in columns])]
    cells = [[_cell(row.get(c), limit) for c in columns] for row in rows]
    widths = [max([width(h)] + [width(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(pad(v, w) for v, w in zip(row, widths)).rstrip()
             for row in [headers, *cells]]
    emit("\n".join(lines))    # one write: a line each was a write (and a flush) per agent


def width(text: str) -> int:
    """How many terminal columns ``text`` takes (East Asian wide: 2, combining marks: 0)."""
    if text.isascii():        # the usual cell (cleaned: no control characters): one per char
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


def pad(text: str, columns: int) -> str:
    """``text`` filled with spaces to ``columns`` terminal columns (ljust counts characters)."""
    return text + " " * max(0, columns - width(text))


def _cell(value, limit: int = 200) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return clean(value, limit)


def check_line(check) -> None:
    """One ✓/✗ line; ``check`` has name, ok, detail, ms."""
    mark = _paint("✓", "pass") if check.ok else _paint("✗", "fail")
    timing = f"  ({check.ms:.2f} ms)" if check.ms is not None else ""
    detail = f" — {clean(check.detail)}" if check.detail else ""
    emit(f"  {mark} {check.name}{detail}{timing}")


def error(exc: BaseException) -> None:
    emit(_paint("error: ", FAILED, sys.stderr) + str(exc), err=True)


def notice(text: str) -> None:
    emit(text, err=True)


def findings(result) -> None:
    """bus.audit's table (masked findings only) and a one-line summary."""
    rows = [f.as_dict() for f in result.findings]
    if rows:
        table(rows, ["time", "topic", "rule", "detail"])
    counts = ", ".join(f"{rule}: {n}" for rule, n in result.counts().items())
    emit(f"{plural(result.messages, 'message')} audited, {plural(len(rows), 'finding')}"
         + (f" ({counts})" if counts else ""))
