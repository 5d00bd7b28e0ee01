"""fleet.dashboard: one read-only web page, fed live from the bus by Server-Sent Events.

The server (stdlib ``http.server``, one thread per request) serves the page's
static files from templates/dashboard/ (``STATIC``: the page, its style and
its module scripts) and one event stream, ``/events``: the first
event carries every agent, later ones only the agents that changed. The last
hour (``/history``) and an agent's recent log lines (``/logs``) are read-only
routes of their own (``observe.dashroutes``). The page
builds its table with ``textContent`` only, and every response carries a
Content-Security-Policy that allows no inline script, no other origin and no
images, so bus data can never become markup or code.

Bound to loopback it needs no login (and refuses a Host header that is not
loopback, so another web site cannot reach it through DNS rebinding). Bound
to anything else it demands HTTP basic auth and refuses to start without a
password. The password comes from a file or the environment, never argv.

Against a hostile neighbour (``observe.httplimits``): connections and event
streams are capped in all and per client address; a request must arrive
whole within seconds and an idle connection is closed; a stream needs the
login first and its slot is freed as soon as its viewer leaves; wrong
passwords make their address wait, longer after each, while others log in.
A loopback page without a login trusts every local user alike: they all
come from 127.0.0.1 and share that address's share of the slots, so on a
shared host give it a password.
"""

from __future__ import annotations

import base64
import hmac
import io
import ipaddress
import json
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

from hatchery.core.assets import TEMPLATES
from hatchery.errors import UsageError
from hatchery.observe import dashroutes
from hatchery.observe import httplimits as limits
from hatchery.observe.live import FleetModel

PAGE_DIR = TEMPLATES / "dashboard"
JS = "text/javascript; charset=utf-8"
# Every file the page loads, and nothing else. app.js is a module script: it imports the
# other scripts (lasthour.js imports charts.js), and the browser fetches each as it meets
# its import, so no order is kept here.
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", JS), "/lasthour.js": ("lasthour.js", JS),
          "/charts.js": ("charts.js", JS), "/format.js": ("format.js", JS),
          "/app.css": ("app.css", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
                    "Cache-Control": "no-store"}
MAX_STREAMS = 32            # concurrent event streams (per address: httplimits); more get 503
PUSH_EVERY = 0.1            # seconds: changes closer together go out as one event
KEEPALIVE = 15.0            # seconds between comments on an idle stream
GONE_POLL = 0.25            # seconds: how soon a stream notices its viewer left
USER = "hatchery"           # the basic-auth user name
MIN_PASSWORD = 12


@dataclass(frozen=True)
class Login:
    """HTTP basic credentials the page demands (None: no login, loopback only)."""

    user: str
    password: str

    def accepts(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:], validate=True)
        except ValueError:
            return False
        wanted = f"{self.user}:{self.password}".encode()
        return hmac.compare_digest(given, wanted)


def is_loopback(addr: str) -> bool:
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def check_bind(addr: str, login: Optional[Login]) -> None:
    """Refuse a non-loopback bind without a login, and a weak password anywhere."""
    if login is None and not is_loopback(addr):
        raise UsageError(f"the dashboard would be open to the network on {addr} without a login",
                         "set a password: --password-file FILE or HATCHERY_DASHBOARD_PASSWORD, "
                         "or bind 127.0.0.1 and reach it through ssh -L")
    if login is not None and len(login.password) < MIN_PASSWORD:
        raise UsageError(f"the dashboard password has {len(login.password)} characters",
                         f"use at least {MIN_PASSWORD} (e.g. python3 -c 'import secrets; "
                         "print(secrets.token_urlsafe(18))')")


def read_password(path: Path) -> str:
    """The first line of a password file, refusing an empty one."""
    try:
        password = path.read_text().splitlines()[0].strip() if path.stat().st_size else ""
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the dashboard password file {path}: {exc}",
                         "write the password on the first line of that file") from None
    if not password:
        raise UsageError(f"the dashboard password file {path} is empty",
                         "write the password on the first line of that file")
    return password


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, model: FleetModel, login: Optional[Login], title: str):
        self.model, self.login, self.title = model, login, title
        self.loopback_only = login is None
        self.admission = limits.Admission(MAX_STREAMS)
        self.guesses = limits.GuessThrottle()
        self._admitted: dict = {}              # socket -> its address key, while open
        self._admitted_lock = threading.Lock()
        self.stopping = threading.Event()
        self.pages = {path: (PAGE_DIR / name).read_bytes() for path, (name, _) in STATIC.items()}
        super().__init__(address, Handler)

    # Called on the accepting thread before a thread is started for the socket.
    def verify_request(self, request, client_address) -> bool:
        key = limits.address_key(client_address[0])
        if not self.admission.connect(key):
            _refuse_at_once(request)
            return False
        with self._admitted_lock:
            self._admitted[request] = key
        return True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return      # a client that vanished or stalled mid-request: nothing to report
        super().handle_error(request, client_address)

    def shutdown_request(self, request) -> None:   # every socket ends here, refused or served
        with self._admitted_lock:
            key = self._admitted.pop(request, None)
        if key is not None:
            self.admission.disconnect(key)
        super().shutdown_request(request)


_REFUSED = b"too many connections from your address\n"


def _refuse_at_once(request: socket.socket) -> None:
    """A short 503 without a thread (the socket's send buffer is empty: never blocks)."""
    try:
        request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REFUSED), _REFUSED),
                     socket.MSG_DONTWAIT)
    except OSError:
        pass


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:   # the one printing module prints; we do not
        pass

    # --- connection limits (httplimits) -------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.address = limits.address_key(self.client_address[0])
        self._reader = limits.DeadlineReader(self.connection)
        self.rfile.close()          # the plain reader setup() made: ours has a deadline
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.restart()      # a request (or the next, on keep-alive) arrives in time or never
        super().handle_one_request()

    def parse_request(self) -> bool:
        parsed = super().parse_request()        # the headers are read now
        self.connection.settimeout(limits.WRITE_TIMEOUT)
        return parsed

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if not self._allowed():
            return
        if path == "/events":
            self._events()
        elif path in dashroutes.ROUTES:       # /history, /logs: the data of the page's panels
            self._send(*dashroutes.answer(path, query, self.server.model))
        elif path in STATIC:
            self._send(200, STATIC[path][1], self.server.pages[path])
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def do_POST(self) -> None:   # read-only: nothing to post
        self._send(405, "text/plain; charset=utf-8", b"read-only\n", {"Allow": "GET"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _allowed(self) -> bool:
        login = self.server.login
        if login is not None and not self._logged_in(login):
            return False
        if self.server.loopback_only and not _loopback_host(self.headers.get("Host", "")):
            self._send(403, "text/plain; charset=utf-8", b"loopback only\n")
            return False
        return True

    def _logged_in(self, login: Login) -> bool:
        """Check the password unless this address must wait (then 429, unchecked)."""
        guesses = self.server.guesses
        wait = guesses.wait(self.address)
        if wait:
            self.close_connection = True
            self._send(429, "text/plain; charset=utf-8", b"too many wrong passwords: wait\n",
                       {"Retry-After": str(math.ceil(wait)), "Connection": "close"})
            return False
        header = self.headers.get("Authorization")
        if login.accepts(header):
            guesses.succeeded(self.address)
            return True
        if header:                 # no header at all is the browser asking what to send
            guesses.failed(self.address)
        self._send(401, "text/plain; charset=utf-8", b"login required\n",
                   {"WWW-Authenticate": 'Basic realm="hatchery", charset="UTF-8"'})
        return False

    def _send(self, code: int, ctype: str, body: bytes, extra: Optional[dict] = None) -> None:
        self.send_response(code)
        for key, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        refused = self.server.admission.start_stream(self.address)
        if refused:
            self._send(503, "text/plain; charset=utf-8", refused.encode() + b"\n")
            return
        try:
            self._stream()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass   # the viewer went away, or stopped reading
        finally:
            self.server.admission.end_stream(self.address)

    def _stream(self) -> None:
        self.send_response(200)
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        model, stopping = self.server.model, self.server.stopping
        version, rows = model.changes_since(-1)
        self._event(version, rows, full=True)
        while not stopping.is_set():
            if not self._wait_for_change(model, version):
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
                continue
            stopping.wait(PUSH_EVERY)        # let a burst of changes arrive together
            version, rows = model.changes_since(version)
            self._event(version, rows, full=False)

    def _wait_for_change(self, model, version: int) -> bool:
        """``model.wait_for_change(version, KEEPALIVE)``, noticing within GONE_POLL that the
        viewer left (ConnectionResetError): its slot is free at once, not at the next write."""
        deadline = time.monotonic() + KEEPALIVE
        while not self.server.stopping.is_set():
            if limits.peer_gone(self.connection):
                raise ConnectionResetError("the viewer left")
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if model.wait_for_change(version, min(GONE_POLL, left)):
                return True
        return False

    def _event(self, version: int, rows: list, *, full: bool) -> None:
        data = {"version": version, "now": self.server.model.clock(), "full": full,
                "title": self.server.title, "rows": rows}
        # json.dumps escapes nothing HTML-special, but the page never parses HTML from it
        self.wfile.write(b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")
        self.wfile.flush()


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name.strip("[]"))


def serve(model: FleetModel, *, addr: str = "127.0.0.1", port: int = 8765,
          login: Optional[Login] = None, title: str = "hatchery",
          stop: Optional[threading.Event] = None,
          on_ready: Optional[Callable] = None) -> None:
    """Serve the page until ``stop`` is set; the caller feeds ``model`` from the bus."""
    check_bind(addr, login)
    try:
        server = DashboardServer((addr, int(port)), model, login, title)
    except OSError as exc:
        raise UsageError(f"cannot listen on {addr}:{port}: {exc.strerror or exc}",
                         "pick another --port, or stop what listens there") from None
    stop = stop or threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True)
    thread.start()
    try:
        if on_ready:
            on_ready(server.server_address)
        stop.wait()
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
