"""Every task has one line of help and every flag is documented (`invoke --help TASK`)."""

import inspect
import subprocess
import sys
from pathlib import Path

from hatchery.tasks import namespace

ROOT = Path(__file__).resolve().parents[1]


def all_tasks(collection=namespace, prefix=""):
    for name, task in collection.tasks.items():
        yield prefix + name, task
    for name, sub in collection.collections.items():
        yield from all_tasks(sub, f"{prefix}{name}.")


def test_every_flag_of_every_task_has_help():
    undocumented = {}
    for name, task in all_tasks():
        params = [p for p in inspect.signature(task.body).parameters if p != "c"]
        missing = [p for p in params if not task.help.get(p)]
        if missing:
            undocumented[name] = missing
    assert undocumented == {}


def test_invoke_list_shows_the_promised_tasks():
    out = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "--list"],
                         capture_output=True, text=True, check=True).stdout
    for task in ("broker.deploy", "agent.hatch", "fleet.version-report", "verify",
                 "fleet.monitor", "fleet.bus-health", "images.bootstrap"):
        assert task in out
