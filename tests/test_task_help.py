"""Every task has one line of help and every flag is documented (`invoke --help TASK`)."""

import copy
import inspect
import re
import subprocess
import sys
from pathlib import Path

from hatchery.tasks import namespace
import math

import pytest

from hatchery.tasks.flags import BOUNDS, SHORT_FLAGS, Batch, Cast, FlagError

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
    flat = " ".join(out.split())
    assert "-t NUMBER, --timeout=NUMBER" in out
    assert "(default: 5.0; more than 0 and at most 3600 seconds)" in flat
    assert "-n STRING, --name=STRING" in out and "-j, --json" in out


def test_alert_rules_name_only_real_tasks():
    from hatchery.observe.exporter import render_rules
    named = set(re.findall(r"invoke ([a-z][\w.-]*)", render_rules()))
    assert named and named <= set(dict(all_tasks())), named - set(dict(all_tasks()))


# --- numbers that cannot be: one range per flag name ---------------------------------------

def numeric_flags():
    """(task, argument, default) for every typed flag of every task."""
    for name, task in all_tasks():
        defaults = {p.name: p.default for p in inspect.signature(task.body).parameters.values()}
        for arg in arguments(task):
            default = defaults[arg.attr_name or arg.name]
            numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
            if numeric or isinstance(arg.kind, Cast):
                yield name, arg, default


def test_every_numeric_flag_has_a_range_and_its_default_is_in_it():
    unbounded, outside = [], []
    for task, arg, default in numeric_flags():
        bound = getattr(arg.kind, "bound", None)
        if bound is None:
            unbounded.append(f"{task} --{arg.name}")
        elif default not in (None, inspect.Parameter.empty):
            try:
                arg.kind(str(default))
            except FlagError:
                outside.append(f"{task} --{arg.name}={default}")
    assert unbounded == [], "add these flag names to hatchery/tasks/flags.py BOUNDS"
    assert outside == []


def edges(bound):
    """(accepted, refused) values at the edges of a range, as typed on a command line."""
    if isinstance(bound, Batch):
        return ["1", "100000", "1%", "100%", " 3 ", "0.5%"], ["0", "-1", "100001", "0%", "101%",
                                                              "nan%", "inf%", "3.5", "", "x", "25 %x",
                                                              "1" + "0" * 400]
    step = 1 if bound.kind is int else 0.001
    low_ok = bound.low + step if bound.open else bound.low
    accepted = [low_ok, bound.high]
    refused = [bound.low - step, bound.high + step, -1e308, "nan", "inf", "-inf", "x", "",
               "1" + "0" * 400, "-" + "9" * 5000]
    refused += [bound.low] if bound.open else []
    refused += ["1.5"] if bound.kind is int else []
    return [str(v) for v in accepted], [str(v) for v in refused]


@pytest.mark.parametrize("flag", sorted(BOUNDS))
def test_each_range_accepts_its_edges_and_refuses_past_them(flag):
    bound = BOUNDS[flag]
    cast = Cast(flag.replace("_", "-"), bound.kind, bound)
    accepted, refused = edges(bound)
    for text in accepted:
        value = cast(text)
        assert value == text.strip() if isinstance(bound, Batch) else math.isfinite(value)
    for text in refused:
        with pytest.raises(FlagError) as caught:
            cast(text)
        assert f"--{flag.replace('_', '-')}" in str(caught.value) and "e.g. --" in caught.value.fix
        assert len(str(caught.value)) < 200                   # a huge value is not echoed whole
