"""fleet.dashboard against a hostile neighbour: guesses, stream lock-out, slowloris.

Serves the real page (``observe.dashboard.serve``, no bus needed: an empty
fleet model) in its own process and attacks it from 127.0.0.1 with raw
sockets and http.client, while a viewer comes from 127.0.0.2 (Linux routes
all of 127/8 to loopback, so the two are different client addresses):

- guesses: 2 threads send wrong passwords as fast as the page answers (32 at
  a time on a keep-alive connection) for --seconds; reported are the
  passwords it checked per second, the requests it refused unchecked, and
  whether a viewer with the right password (from 127.0.0.2) got in meanwhile;
- lockout: the attacker opens 64 event streams (no login), then a viewer asks
  for one; then the attacker goes, and we time until a stream is free again
  for 127.0.0.1;
- slowloris: 200 sockets that send a request one byte a second and never
  finish it; reported are how many the page kept open, for how long, its
  thread count, and whether the viewer was served meanwhile.

    .venv/bin/python bench/dashboard_attack_bench.py
    .venv/bin/python bench/dashboard_attack_bench.py --code OTHER_CHECKOUT   # before/after

``--code`` serves the page from another checkout (e.g. ``git worktree add``
of an older commit) with this same attack.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct-horse-battery-staple"
ATTACKER, VIEWER = "127.0.0.1", "127.0.0.2"


# --- the page, in its own process -------------------------------------------------------

def serve(port: int, login: bool) -> None:
    from hatchery.inventory.model import AgentSpec, Inventory
    from hatchery.observe import dashboard as page
    from hatchery.observe.live import FleetModel
    inv = Inventory(Path("/nonexistent.yaml"), agents={f"a{i}": AgentSpec(f"a{i}") for i in range(20)})
    page.serve(FleetModel(inv), port=port, login=page.Login(page.USER, PASSWORD) if login else None,
               on_ready=lambda address: print("ready", flush=True))


class Page:
    def __init__(self, code: Path, login: bool):
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(code)}
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(self.port)]
                                     + (["--login"] if login else []), env=env, cwd=str(code),
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def threads(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return -1

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- clients ------------------------------------------------------------------------------

def _auth(password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"hatchery:{password}".encode()).decode()}


def get(port: int, path: str = "/", *, source: str = VIEWER, headers=None, timeout: float = 5.0):
    """(status, seconds) of one GET from ``source``; (None, s) when refused or cut off."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status, time.monotonic() - started
    except (OSError, http.client.HTTPException):
        return None, time.monotonic() - started
    finally:
        conn.close()


def open_stream(port: int, source: str = ATTACKER) -> tuple:
    """A raw socket that asked for /events: (socket, status or None)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        head = sock.recv(64)
        status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    except (OSError, ValueError, IndexError):
        status = None
    return sock, status


# --- the attacks -----------------------------------------------------------------------------

PIPELINE = 32          # guesses sent back to back on one keep-alive connection


def _guess_burst(port: int, counts: dict, lock: threading.Lock) -> None:
    """PIPELINE wrong passwords in one write, then their answers (raw: http.client is slower
    than the page)."""
    request = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
               + base64.b64encode(b"hatchery:wrong-password-guess") + b"\r\n\r\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=(ATTACKER, 0)) as sock:
            sock.sendall(request * PIPELINE)
            seen = b""
            while seen.count(b"HTTP/1.1 ") < PIPELINE:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                seen += chunk
    except OSError:
        seen = b""
    with lock:
        counts["checked"] += seen.count(b"HTTP/1.1 401")
        counts["refused"] += seen.count(b"HTTP/1.1 429")


def bench_guesses(code: Path, seconds: float) -> dict:
    page = Page(code, login=True)
    counts = {"checked": 0, "refused": 0}
    lock, stop = threading.Lock(), threading.Event()

    def guess() -> None:
        while not stop.is_set():
            _guess_burst(page.port, counts, lock)
    workers = [threading.Thread(target=guess) for _ in range(2)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    time.sleep(seconds / 2)
    viewer = get(page.port, source=VIEWER, headers=_auth(PASSWORD))
    time.sleep(seconds / 2)
    stop.set()
    for worker in workers:
        worker.join(10)
    took = time.monotonic() - started
    page.stop()
    return {"seconds": round(took, 1), "checked_per_s": round(counts["checked"] / took, 1),
            "refused_unchecked": counts["refused"], "viewer_with_password_status": viewer[0],
            "viewer_ms": round(viewer[1] * 1000, 1)}


def bench_lockout(code: Path, streams: int = 64) -> dict:
    page = Page(code, login=False)
    held = [open_stream(page.port, ATTACKER) for _ in range(streams)]
    granted = sum(1 for _, status in held if status == 200)
    viewer = open_stream(page.port, VIEWER)
    viewer[0].close()
    same_address = open_stream(page.port, ATTACKER)
    same_address[0].close()
    for sock, _ in held:
        sock.close()
    left = time.monotonic()
    freed = None
    while time.monotonic() - left < 30:
        sock, status = open_stream(page.port, ATTACKER)
        sock.close()
        if status == 200:
            freed = time.monotonic() - left
            break
        time.sleep(0.05)
    page.stop()
    return {"attacker_streams": streams, "granted_to_attacker": granted,
            "viewer_from_other_address": viewer[1], "viewer_from_same_address": same_address[1],
            "seconds_until_a_slot_is_free_after_the_attacker_left":
                None if freed is None else round(freed, 2)}


def bench_slowloris(code: Path, sockets: int = 200, watch: float = 15.0) -> dict:
    page = Page(code, login=True)
    opened = []
    for _ in range(sockets):
        try:
            sock = socket.create_connection(("127.0.0.1", page.port), timeout=2,
                                            source_address=(ATTACKER, 0))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            opened.append([sock, time.monotonic(), None])
        except OSError:
            pass
    time.sleep(0.5)
    threads_during = page.threads()
    viewer = get(page.port, source=VIEWER, headers=_auth(PASSWORD))
    started = time.monotonic()
    while time.monotonic() - started < watch and any(c is None for _, _, c in opened):
        for entry in opened:
            if entry[2] is None:
                try:
                    entry[0].sendall(b"X")             # one more byte of a header, never the end
                except OSError:
                    entry[2] = time.monotonic()
        time.sleep(1.0)
    still_open = sum(1 for _, _, closed in opened if closed is None)
    lifetimes = sorted(closed - began for _, began, closed in opened if closed is not None)
    for sock, _, _ in opened:
        sock.close()
    page.stop()
    return {"sockets": sockets, "still_open_after_s": watch, "still_open": still_open,
            "longest_kept_s": round(lifetimes[-1], 1) if lifetimes else None,
            "page_threads_during": threads_during, "viewer_status": viewer[0],
            "viewer_ms": round(viewer[1] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(ROOT), help="checkout whose page is attacked")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of the guessing")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--login", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)))
        serve(args.serve, args.login)
        return
    code = Path(args.code).resolve()
    print(json.dumps({"code": str(code), "guesses": bench_guesses(code, args.seconds),
                      "lockout": bench_lockout(code), "slowloris": bench_slowloris(code)},
                     indent=2))


if __name__ == "__main__":
    main()
