"""invoke fleet.dashboard and fleet.top: live views of the fleet, fed from the bus.

Both log in with the read-only ``monitor`` role and fold the bus into one
``FleetModel``. The dashboard serves it as a web page; top draws it in the
terminal with a rich Live table (the one place besides output.py that draws).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from pathlib import Path

from hatchery.bus.connection import bus_for
from hatchery.core.paths import state_paths
from hatchery.core.results import Rows
from hatchery.observe import top as topview
from hatchery.observe.live import FleetModel, live_filters
from hatchery.tasks import output
from hatchery.tasks.common import load, op, show, stop_event

PASSWORD_ENV = "HATCHERY_DASHBOARD_PASSWORD"
STATE_STYLE = {"online": "green", "stale": "bold yellow", "offline": "bold red",
               "unhealthy": "bold red", "missing": "bold red", "unknown": "dim", "stopped": "dim"}


@contextlib.contextmanager
def live_model(inv, timeout: float):
    """A FleetModel kept current from the bus for the block (monitor role)."""
    model = FleetModel(inv)
    with bus_for(inv, connect_timeout=float(timeout), role="monitor") as bus:
        with bus.listen(live_filters(), model.observe, qos=0):
            yield model


# --- fleet.dashboard ------------------------------------------------------------------

def dashboard_login(inv, password_file):
    """The login the page demands: --password-file, $HATCHERY_DASHBOARD_PASSWORD, or
    STATE_DIR/dashboard.password; None when none is given (loopback only)."""
    from hatchery.observe import dashboard as page   # http.server: ~13 ms no other task needs
    if password_file:
        return page.Login(page.USER, page.read_password(Path(password_file)))
    if os.environ.get(PASSWORD_ENV):
        return page.Login(page.USER, os.environ[PASSWORD_ENV])
    stored = Path(state_paths(inv).dashboard_password)
    return page.Login(page.USER, page.read_password(stored)) if stored.exists() else None


@op(port="port to serve the page on (default 8765)",
    addr="address to bind (default 127.0.0.1; any other address requires a password)",
    password_file="file whose first line is the page's password (user 'hatchery'); "
                  f"else ${PASSWORD_ENV}, else the dashboard password file in the state directory",
    duration="stop after this many seconds (default: until Ctrl-C)",
    json="errors as the JSON envelope; when serving stops, the envelope with the page's url")
def dashboard(c, port=8765, addr="127.0.0.1", password_file=None, duration=None,
              inventory=None, timeout=5.0, json=False):
    """Serve a live, read-only web page of the fleet at http://ADDR:PORT/ (Ctrl-C stops)."""
    from hatchery.observe import dashboard as page
    inv = load(inventory)
    login = dashboard_login(inv, password_file)
    page.check_bind(addr, login)          # before touching the bus
    stop = stop_event(duration)
    served = []

    def ready(address):
        served.append(f"http://{_url_host(address[0])}:{address[1]}/")
        output.log_line(f"dashboard on {served[-1]}" + (f" (login: {page.USER})" if login else ""),
                        err=True)
    with live_model(inv, float(timeout)) as model:
        model.keep_time(stop)       # the last hour is recorded whether or not a page is open
        page.serve(model, addr=addr, port=int(port), login=login, title=inv.manager, stop=stop,
                   on_ready=ready)
    if json:
        show(Rows([{"url": u, "login": bool(login)} for u in served], ("url", "login")), json)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --- fleet.top --------------------------------------------------------------------------

@op(sort="state (worst first, default), age (oldest heartbeat first) or name",
    refresh="seconds between redraws (default 1)",
    duration="stop after this many seconds (default: until q or Ctrl-C)",
    json="one frame as the JSON envelope (one item per agent), then exit")
def top(c, sort=topview.SORT_STATE, refresh=1.0, duration=None, inventory=None, timeout=5.0,
        json=False):
    """A live terminal view of the fleet, like htop: q quits, s/a/n change the sort."""
    from hatchery.errors import UsageError
    if sort not in topview.SORTS:
        raise UsageError(f"unknown sort {sort!r}", f"use one of: {', '.join(topview.SORTS)}")
    inv = load(inventory)
    with live_model(inv, float(timeout)) as model:
        if json or not sys.stdout.isatty():        # piped: one frame, like top -b -n 1
            time.sleep(0.5)
            _print_once(model, sort, json)
            return
        _run_top(model, sort, float(refresh), stop_event(duration))


def _print_once(model, sort, json=False):
    table = topview.rows(model.snapshot(), model.clock(), sort)
    show(Rows([dict(zip(topview.COLUMNS, r.cells())) for r in table], topview.COLUMNS), json)


def _run_top(model, sort, refresh, stop):
    from rich.console import Console
    from rich.live import Live

    console = Console()
    with _keys() as read_key, Live(console=console, screen=True, auto_refresh=False) as live:
        while not stop.is_set():
            live.update(_frame(model, sort, console.size.width, console.size.height), refresh=True)
            key = read_key(refresh)
            if key in ("q", "Q", "\x03"):
                break
            if key:
                sort = topview.sort_for_key(key, sort) or sort


def _frame(model, sort, width, height):
    """One screen: totals, the table in fixed columns (those that fit the width), the
    recent events, the keys."""
    from rich.console import Group
    from rich.text import Text

    now = model.clock()
    table_rows = topview.rows(model.snapshot(), now, sort)
    counts = topview.totals(table_rows)
    head = f"hatchery fleet · {time.strftime('%H:%M:%S')} · sort: {sort} · {topview.summary(counts)}"
    names = [*model.places, *(r.agent for r in table_rows)]
    hosts = [*(host for _, host in model.places.values()), *(r.host for r in table_rows)]
    columns = topview.layout(width, names, hosts)
    events = topview.event_lines(model.history.timeline.after(0), width)
    lines = [Text(output.clean(head, width)), Text(topview.header(columns), style="bold")]
    room = max(1, height - 4 - len(events))
    for row in table_rows[:room]:
        text, (start, end) = topview.line(row, columns)
        line = Text(output.clean(text, max(width, len(text))), no_wrap=True, overflow="crop")
        line.stylize(STATE_STYLE.get(row.state, ""), start, end)
        lines.append(line)
    more = len(table_rows) - room
    lines.append(Text(f"… {more} more (sorted by {sort})" if more > 0 else "", style="dim"))
    lines += [Text(output.clean(e, width), style="dim") for e in events]
    lines.append(Text(topview.KEYS_HELP, style="dim"))
    return Group(*lines)


@contextlib.contextmanager
def _keys():
    """``read_key(timeout)``: one key press or '' — cbreak mode on a TTY, no mouse needed."""
    if not sys.stdin.isatty():
        yield lambda timeout: time.sleep(timeout) or ""
        return
    import termios
    import tty
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read_key(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 32).decode(errors="replace")[:1] if ready else ""
    try:
        yield read_key
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def register(collection) -> None:
    """Add fleet.dashboard and fleet.top to the ``fleet`` collection."""
    collection.add_task(dashboard, name="dashboard")
    collection.add_task(top, name="top")
