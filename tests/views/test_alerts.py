"""Alerts reach a person: real Prometheus + real Alertmanager + a webhook receiver in the test.

Also: the rendered Alertmanager config passes ``amtool check-config``, hostile
values never reach it, and the rules pass ``promtool``.
"""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from viewhelpers import Agents, clear_retained, need, stop_processes, unique, wait_for

from hatchery.bus.client import BusClient
from hatchery.core.ports import free_port, wait_until
from hatchery.errors import UsageError
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory
from hatchery.observe import alerting, exporter
from tests.fleet.responders import serving_exporter


class Webhook:
    """Alertmanager's webhook receiver: records every alert it is sent."""

    def __init__(self):
        self.alerts: list = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.extend(json.loads(body).get("alerts", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _spawn(argv, log_path):
    return subprocess.Popen(argv, stdout=log_path.open("wb"), stderr=subprocess.STDOUT)


def test_a_killed_agent_reaches_the_webhook_through_prometheus_and_alertmanager(
        module_broker, tmp_path):
    prometheus = need("prometheus", "prometheus")
    alertmanager = need("prometheus-alertmanager", "prometheus-alertmanager")
    manager, name = unique("mgr"), unique("doomed")
    inv = Inventory(tmp_path / "fleet.yaml", manager=manager,
                    broker=BrokerSpec(host=module_broker.host, port=module_broker.port),
                    agents={name: AgentSpec(name)}, state_dir=tmp_path / "state")
    agents = Agents(module_broker, manager, tmp_path)
    hook, procs = Webhook(), []
    exporter_port, prom_port, am_port = free_port(), free_port(), free_port()
    (tmp_path / "am.yml").write_text(alerting.render_alertmanager_config(
        webhook_url=hook.url, group_wait="1s", group_interval="1s", repeat_interval="1m"))
    (tmp_path / "rules.yml").write_text(exporter.render_rules(for_duration="0s"))
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{tmp_path / 'rules.yml'}']\n"
        "alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['127.0.0.1:{am_port}']\n"
        "scrape_configs:\n  - job_name: hatchery\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{exporter_port}']\n")
    try:
        agents.start(name)
        with BusClient(module_broker.host, module_broker.port) as bus, \
                serving_exporter(inv, bus, exporter_port):
            procs.append(_spawn([alertmanager, f"--config.file={tmp_path / 'am.yml'}",
                                 f"--storage.path={tmp_path / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{am_port}",
                                 "--cluster.listen-address="], tmp_path / "am.log"))
            procs.append(_spawn([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                                tmp_path / "prom.log"))
            assert wait_until("127.0.0.1", am_port, timeout=20), (tmp_path / "am.log").read_text()
            assert wait_until("127.0.0.1", prom_port, timeout=20)
            agents.kill(name)     # SIGKILL: the broker publishes its Will, up goes to 0

            def offline_alert():
                return [a for a in hook.alerts if a["labels"].get("alertname") ==
                        "HatcheryAgentOffline" and a["labels"].get("agent") == name]
            got = wait_for(offline_alert, 45, step=0.2)
            assert got, (hook.alerts, (tmp_path / "prom.log").read_text()[-1500:],
                         (tmp_path / "am.log").read_text()[-1500:])
            assert got[0]["status"] == "firing"
            assert name in got[0]["annotations"]["summary"]
    finally:
        stop_processes(procs)
        hook.close()
        agents.stop_all()
        clear_retained(module_broker, [name])


def _amtool_check(tmp_path, text):
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    return subprocess.run([need("amtool", "prometheus-alertmanager"), "check-config", str(path)],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("options", [
    {"webhook_url": "https://alerts.example.org/hatchery"},
    {"email_to": "ops@example.org", "email_from": "hatchery@example.org",
     "smarthost": "mail.example.org:587", "email_password_file": "/etc/hatchery/smtp.pass"},
    {"webhook_url": "http://127.0.0.1:9999/x", "email_to": "ops@example.org",
     "email_from": "hatchery@example.org", "smarthost": "mail.example.org:25",
     "group_wait": "10s", "repeat_interval": "1h30m"},
])
def test_the_rendered_config_passes_amtool(tmp_path, options):
    result = _amtool_check(tmp_path, alerting.render_alertmanager_config(**options))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize("options", [
    {},                                                          # nowhere to send
    {"webhook_url": "ftp://example.org/x"},
    {"webhook_url": "https://example.org/x\nreceivers: []"},     # a newline adds YAML
    {"webhook_url": "https://example.org/ x"},
    {"email_to": "ops@example.org"},                            # no sender or smarthost
    {"email_to": "a@b.c\nx: y", "email_from": "h@e.org", "smarthost": "m:25"},
    {"email_to": "a@b.c", "email_from": "h@e.org", "smarthost": "m:25; rm"},
    {"webhook_url": "https://example.org/x", "group_wait": "1s\nx: 1"},
])
def test_hostile_or_missing_values_never_reach_the_config(options):
    with pytest.raises(UsageError):
        alerting.render_alertmanager_config(**options)


def test_a_quote_in_a_url_stays_inside_its_string(tmp_path):
    text = alerting.render_alertmanager_config(
        webhook_url="https://example.org/x?a='b\"c'&d=e")
    assert _amtool_check(tmp_path, text).returncode == 0
    from ruamel.yaml import YAML
    config = YAML(typ="safe").load(text)
    assert config["receivers"][0]["webhook_configs"][0]["url"] == \
        "https://example.org/x?a='b\"c'&d=e"


def test_fleet_exporter_prints_a_config_amtool_accepts(tmp_path, module_broker):
    from viewhelpers import HATCHERY, write_inventory
    inv = write_inventory(tmp_path / "fleet.yaml", module_broker, ["solo"], manager="mgr")
    result = subprocess.run([str(HATCHERY), "fleet.exporter", "--inventory", str(inv),
                             "--alertmanager-config", "--webhook", "http://127.0.0.1:5001/hook"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    checked = _amtool_check(tmp_path, result.stdout)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    refused = subprocess.run([str(HATCHERY), "fleet.exporter", "--inventory", str(inv),
                              "--alertmanager-config"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "--webhook" in refused.stderr
