"""/metrics over HTTP: the exporter's text (observe/metrics_text) for whoever scrapes it.

prometheus_client's ``start_http_server`` renders through ``generate_latest``;
this server calls the exporter's own renderer instead. Any GET answers with
the exposition text (gzip when the scraper asks for it, as Prometheus does);
a renderer that fails answers 500 and is counted, and the server stays up.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from hatchery.observe.metrics_text import CONTENT_TYPE


def start_server(port: int, addr: str, render: Callable[[], bytes]) -> tuple:
    """(server, thread): serving ``render()`` until ``server.shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                body = render()
            except Exception:           # one bad scrape, never a dead exporter
                server.failures += 1
                self.send_error(500, "the metrics could not be rendered")
                return
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=1)
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
            else:
                self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:
            pass                        # a scrape every 15 s is not news

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    server.failures = 0
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
