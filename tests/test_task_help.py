"""Every task has one line of help and every flag is documented (`invoke --help TASK`)."""

import copy
import inspect
import re
import subprocess
import sys
from pathlib import Path

from hatchery.tasks import namespace
from hatchery.tasks.flags import SHORT_FLAGS, Cast

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


def arguments(task):
    """invoke's Arguments for a task (on a copy: get_arguments consumes task.help)."""
    clone = copy.copy(task)
    clone.help = dict(task.help)
    return clone.get_arguments()


def test_short_flags_mean_one_thing_everywhere():
    meanings = {}
    for name, task in all_tasks():
        for arg in arguments(task):
            for short in (n for n in arg.names if len(n) == 1):
                meanings.setdefault(short, set()).add(arg.name)
                assert SHORT_FLAGS.get(arg.name) == short, (name, arg.names)
    assert all(len(longs) == 1 for longs in meanings.values()), meanings


def test_numeric_flags_are_typed_and_defaults_are_in_the_help():
    untyped, no_default = {}, {}
    for name, task in all_tasks():
        defaults = {p.name: p.default for p in inspect.signature(task.body).parameters.values()}
        for arg in arguments(task):
            default = defaults[arg.attr_name or arg.name]
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                if not isinstance(arg.kind, Cast):
                    untyped.setdefault(name, []).append(arg.name)
            if default not in (None, False, "", inspect.Parameter.empty) \
                    and "default" not in (arg.help or ""):
                no_default.setdefault(name, []).append(arg.name)
    assert untyped == {} and no_default == {}


def test_help_shows_types_and_defaults():
    out = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(ROOT), "--help",
                          "fleet.version-report"], capture_output=True, text=True, check=True).stdout
    assert "-t NUMBER, --timeout=NUMBER" in out and "(default: 5.0)" in out
    assert "-n STRING, --name=STRING" in out and "-j, --json" in out


def test_alert_rules_name_only_real_tasks():
    from hatchery.observe.exporter import render_rules
    named = set(re.findall(r"invoke ([a-z][\w.-]*)", render_rules()))
    assert named and named <= set(dict(all_tasks())), named - set(dict(all_tasks()))
