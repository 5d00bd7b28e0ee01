"""The Grafana dashboard: provisioning-ready JSON whose every expression uses only metric
names the live exporter serves, and parses in a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.parse
import urllib.request

from viewhelpers import Agents, clear_retained, need, unique, wait_for

from hatchery.bus.client import BusClient
from hatchery.core.assets import TEMPLATES
from hatchery.core.ports import free_port, wait_until
from hatchery.inventory.model import AgentSpec, BrokerSpec, Inventory
from tests.fleet.responders import serving_exporter

DASHBOARD = TEMPLATES / "grafana" / "hatchery-fleet.json"
NAME_RE = re.compile(r"\bhatchery_[a-z0-9_]+\b")
PROMQL_WORDS = {"sum", "by", "count", "rate", "increase", "time", "vector", "on", "group_left", "or"}


def expressions(dashboard: dict) -> list:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def exported_names(text: str) -> set:
    """Sample names a /metrics page can carry: gauges by name, counters with _total."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            counter = kind == "counter" and not name.endswith("_total")
            names.add(name + "_total" if counter else name)
    return names


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:   # 400 carries Prometheus's JSON error
        try:
            return json.load(exc)
        except ValueError:
            return {}
    except (OSError, ValueError):
        return {}   # not up yet


def test_the_dashboard_is_provisioning_ready():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "hatchery-fleet" and dashboard["panels"]
    assert "id" not in dashboard or dashboard["id"] is None   # provisioning assigns it
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "agent", "host"}
    capacity = [p for p in dashboard["panels"] if p["gridPos"]["y"] > 42]
    assert capacity and all("hatchery_host_" in e or "hatchery_capacity_" in e
                            for p in capacity for e in (t["expr"] for t in p["targets"]))
    assert (TEMPLATES / "grafana" / "provisioning-dashboards.yaml").exists()


def test_every_expression_uses_live_exporter_names_and_parses_in_prometheus(
        module_broker, tmp_path):
    prometheus = need("prometheus", "prometheus")
    manager, name = unique("mgr"), unique("graf")
    inv = Inventory(tmp_path / "fleet.yaml", manager=manager,
                    broker=BrokerSpec(host=module_broker.host, port=module_broker.port),
                    agents={name: AgentSpec(name)}, state_dir=tmp_path / "state")
    agents = Agents(module_broker, manager, tmp_path)
    port, prom_port = free_port(), free_port()
    proc = None
    try:
        agents.start(name)
        with BusClient(module_broker.host, module_broker.port) as bus, \
                serving_exporter(inv, bus, port):

            def scrape():   # the agent's series, and the first capacity figures
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                return text if f'agent="{name}"' in text and "hatchery_host_agent_fits" in text else ""
            served = exported_names(wait_for(scrape, 10, step=0.2))
            used = {n for e in expressions(json.loads(DASHBOARD.read_text()))
                    for n in NAME_RE.findall(e)}
            assert used and used <= served, f"not exported: {sorted(used - served)}"

            (tmp_path / "prometheus.yml").write_text(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hatchery\n"
                f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
            proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                                     f"--storage.tsdb.path={tmp_path / 'data'}",
                                     f"--web.listen-address=127.0.0.1:{prom_port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert wait_until("127.0.0.1", prom_port, timeout=20)
            assert wait_for(lambda: _query(prom_port, "hatchery_agent_up").get("data", {})
                            .get("result"), 20, step=0.3)
            for expr in expressions(json.loads(DASHBOARD.read_text())):
                answer = _query(prom_port, expr.replace("$agent", ".*").replace("$host", ".*"))
                assert answer.get("status") == "success", (expr, answer)
            up = _query(prom_port, "sum(hatchery_agent_up)")["data"]["result"]
            assert up and up[0]["value"][1] == "1"
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
        agents.stop_all()
        clear_retained(module_broker, [name])
