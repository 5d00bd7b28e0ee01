"""Start-up: a short command imports only what it uses, and parses only the tasks named.

The time itself is measured by bench/startup_bench.py; these tests guard what
makes it short, by what a fresh process has imported, not by a clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hatchery.tasks import namespace
from hatchery.tasks.program import _named_tasks

PROBE = """
import json, sys
sys.argv = ["hatchery", *sys.argv[1:]]
from hatchery.tasks.program import main
try:
    main()
except SystemExit:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

# What no part of broker.status uses: the inventory editor, the audit's PII
# patterns, the dashboard's HTTP server, the readers, the Docker SDK. (The
# planners, provision.operations, still come in through tasks/dayops.py's
# top-level import of operate.rollout.)
NOT_FOR_STATUS = ("ruamel.yaml", "http.server", "hatchery.observe.audit",
                  "hatchery.observe.dashboard", "hatchery.observe.exporter",
                  "hatchery.observe.crosscheck", "docker", "jinja2", "paho", "prometheus_client")


def imported_by(tmp_path, *argv: str) -> set:
    inventory = tmp_path / "fleet_inventory.yaml"
    inventory.write_text("fleet:\n  manager: zephyr\nbroker:\n  port: 1\nagents:\n  client-a: {}\n")
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env={**os.environ, "FLEET_INVENTORY": str(inventory)}, cwd=tmp_path,
                          timeout=60)
    line = next(li for li in done.stderr.splitlines() if li.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))


def test_broker_status_imports_none_of_what_it_does_not_use(tmp_path):
    modules = imported_by(tmp_path, "broker.status")
    assert "hatchery.runtime.local" in modules, "the probe ran the task"
    loaded = [m for m in NOT_FOR_STATUS if m in modules]
    assert not loaded, f"broker.status imported {loaded}"


def test_only_the_tasks_named_get_a_parser_context():
    assert _named_tasks(["broker.status", "--json"], namespace) == {"broker.status": []}
    assert list(_named_tasks(["fleet.collect", "--timeout", "3", "agent.list"], namespace)) == \
        ["fleet.collect", "agent.list"]
    assert _named_tasks(["--list"], namespace) == {}
    assert _named_tasks(["broker.statsu"], namespace) == {}


def test_a_typo_still_gets_did_you_mean_and_exit_2(tmp_path):
    inventory = tmp_path / "fleet_inventory.yaml"
    inventory.write_text("fleet:\n  manager: zephyr\nbroker:\n  port: 1\nagents: {}\n")
    hatchery = os.path.join(os.path.dirname(sys.executable), "hatchery")
    env = {**os.environ, "FLEET_INVENTORY": str(inventory)}
    typo = subprocess.run([hatchery, "broker.statsu"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert typo.returncode == 2 and "broker.status" in typo.stderr
    flag = subprocess.run([hatchery, "broker.status", "--jsn"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert flag.returncode == 2 and "--json" in flag.stderr
    helped = subprocess.run([hatchery, "--help", "broker.status"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert helped.returncode == 0 and "--json" in helped.stdout
