"""A real Prometheus scrapes the exporter; the metric is read back through its query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
from responders import (
    Responder,
    clear_retained,
    free_port,
    inventory,
    serving_exporter,
    unique,
)

from hatchery.bus.client import BusClient


def _start_prometheus(tmp_path, target_port: int, port: int) -> subprocess.Popen:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus is not installed: apt-get install -y prometheus (scripts/setup.sh --test does)")
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      "scrape_configs:\n  - job_name: hatchery\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{target_port}']\n")
    log = (tmp_path / "prometheus.log").open("wb")
    return subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)


def _query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)["data"]["result"]
    except OSError:
        return []   # not up yet


def test_prometheus_scrapes_the_exporter_and_answers_a_query(module_broker, tmp_path):
    name = unique()
    inv = inventory(module_broker, [name])
    agent = Responder(module_broker, name, inv.manager)
    exporter_port, prometheus_port = free_port(), free_port()
    prometheus = None
    with BusClient(module_broker.host, module_broker.port) as bus:
        try:
            with serving_exporter(inv, bus, exporter_port):
                prometheus = _start_prometheus(tmp_path, exporter_port, prometheus_port)
                deadline, result = time.monotonic() + 30, []
                while not result and time.monotonic() < deadline:
                    result = _query(prometheus_port, f'hatchery_agent_up{{agent="{name}"}}')
                    time.sleep(0.5)
        finally:
            if prometheus:
                prometheus.terminate()
                prometheus.wait(10)
            agent.crash()
            clear_retained(module_broker, [name])
    assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
    assert result[0]["metric"]["job"] == "hatchery" and result[0]["value"][1] == "1"
