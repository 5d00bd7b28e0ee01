"""The operator boundary through the real CLI, for `invoke` and `hatchery` alike:
typos, bad values and closed pipes (exit 2 or 141, no traceback), JSON errors,
and the one JSON envelope on every task (parametrised over the namespace, so a
new task is covered without touching this file). One local fleet for all."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import free_port

from hatchery.tasks import namespace
from hatchery.tasks.flags import Batch, Cast

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]
HATCHERY = [str(Path(sys.executable).parent / "hatchery")]
ENVELOPE = ("task", "ok", "items", "problems", "timings")


def all_tasks(collection=namespace, prefix=""):
    for name in collection.tasks:
        yield prefix + name
    for name, sub in collection.collections.items():
        yield from all_tasks(sub, f"{prefix}{name}.")


def cli(inventory, *args, program=INVOKE, timeout=60) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    if inventory:
        env["FLEET_INVENTORY"] = str(inventory)
    return subprocess.run([*program, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def no_traceback(proc):
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def envelope_of(proc) -> dict:
    body = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert list(body)[:5] == list(ENVELOPE), body
    assert isinstance(body["items"], list) and isinstance(body["problems"], list)
    assert set(body["timings"]) >= {"at", "seconds"}
    assert all("message" in p for p in body["problems"])
    return body


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("boundary")
    inventory = directory / "fleet_inventory.yaml"
    inventory.write_text("\n".join([
        "broker:", "  runtime: local", f"  port: {free_port()}",
        "groups:", "  warm:", "    agents: [red]",
        "agents:", "  red:", "    version_command: 'echo 2.0'",
        "  green:", "    version_command: 'echo 2.1'", ""]))
    assert cli(inventory, "broker.deploy").returncode == 0
    assert cli(inventory, "agent.hatch").returncode == 0
    yield inventory
    cli(inventory, "agent.stop")
    cli(inventory, "broker.stop")


# --- typos ------------------------------------------------------------------------------

@pytest.mark.parametrize("program", [INVOKE, HATCHERY], ids=["invoke", "hatchery"])
def test_a_typoed_task_is_exit_2_with_a_suggestion(program):
    proc = cli(None, "fleet.verison-report", program=program)
    assert proc.returncode == 2, proc.stderr
    assert "unknown task 'fleet.verison-report'" in proc.stderr
    assert "did you mean fleet.version-report" in proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize("program", [INVOKE, HATCHERY], ids=["invoke", "hatchery"])
def test_a_typoed_flag_is_exit_2_with_a_suggestion(program):
    proc = cli(None, "fleet.version-report", "--nmae", "red", program=program)
    assert proc.returncode == 2, proc.stderr
    assert "unknown flag '--nmae' for fleet.version-report" in proc.stderr
    assert "did you mean --name" in proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize("program", [INVOKE, HATCHERY], ids=["invoke", "hatchery"])
def test_a_bad_value_is_exit_2_naming_the_flag(program):
    proc = cli(None, "fleet.version-report", "--timeout=abc", program=program)
    assert proc.returncode == 2 and "--timeout takes a number, not 'abc'" in proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize("args, valid", [
    (["fleet.monitor", "--kinds", "bogus"], "heartbeat, status, alert, command"),
    (["fleet.broadcast", "--verb", "bogus"], "health-check"),
    (["fleet.schedule", "--job", "bogus", "--check"], "collect, audit"),
    (["fleet.schedule", "--kind", "bogus", "--check"], "launchd, systemd, cron"),
    (["images.bootstrap", "--which", "bogus", "--check"], "agent-base"),
], ids=lambda v: v[1] if isinstance(v, list) else None)
def test_bad_enumerated_values_are_refused_with_the_valid_ones(fleet, args, valid):
    proc = cli(fleet, *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "bogus" in proc.stderr and valid in proc.stderr
    no_traceback(proc)


# --- numbers that cannot be, and flags left out ----------------------------------------------

def bounded_flags():
    """(task, flag, Bound) for every range-checked flag of every task, from the namespace."""
    for task in sorted(all_tasks()):
        one = namespace[task]
        clone = copy.copy(one)
        clone.help = dict(one.help)         # get_arguments consumes help
        for arg in clone.get_arguments():
            if isinstance(arg.kind, Cast):
                yield task, "--" + arg.name.replace("_", "-"), arg.kind.bound


def out_of_range(bound, turn: int) -> str:
    """One value past the range, a different kind each turn (the edges are unit-tested)."""
    if isinstance(bound, Batch):
        return ["0", "101%", "-3"][turn % 3]
    below = bound.low if bound.open else bound.low - (1 if bound.kind is int else 0.05)
    return [f"{below:g}", f"{bound.high * 10 + 1:g}", "nan", "-1"][turn % 4]


def test_every_numeric_flag_of_every_task_refuses_a_value_out_of_range(tmp_path):
    """Through real processes, both programs, text and --json: exit 2, no traceback, the fix."""
    inventory = tmp_path / "fleet_inventory.yaml"       # a value let through would fail otherwise
    inventory.write_text(f"broker:\n  runtime: local\n  port: {free_port()}\nagents:\n  red: {{}}\n")
    cases = [(task, flag, out_of_range(bound, turn), turn % 2 == 1, [INVOKE, HATCHERY][turn // 2 % 2])
             for turn, (task, flag, bound) in enumerate(bounded_flags())]
    assert len(cases) > 30 and {c[1] for c in cases} >= {"--timeout", "--threshold", "--batch",
                                                         "--port", "--lines", "--every", "--budget"}

    def run(case):
        task, flag, value, as_json, program = case
        return case, cli(inventory, task, f"{flag}={value}", *(["--json"] if as_json else []),
                         program=program)
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(run, cases))
    for (task, flag, value, as_json, _), proc in done:
        where = f"{task} {flag}={value}: {proc.stdout}{proc.stderr}"
        assert proc.returncode == 2, where
        no_traceback(proc)
        if as_json:
            error = envelope_of(proc)["error"]
            message, fix = error["message"], error["fix"]
        else:
            message, _, fix = proc.stderr.partition("\n  fix: ")
        assert message.removeprefix("error: ").startswith(f"{flag} "), where
        assert fix.startswith(f"e.g. {flag} ") and f"--help {task}" in fix, where


def test_the_bounds_hold_in_the_space_form_and_in_help():
    refused = cli(None, "fleet.bus-health", "--threshold", "-5")
    assert refused.returncode == 2 and "--threshold must be more than 0" in refused.stderr
    text = " ".join(cli(None, "--help", "fleet.heal").stdout.split())
    assert "--budget=INT restarts allowed per agent within --window before it is left down " \
           "(default: 5; from 0 to 1000 restarts)" in text


@pytest.mark.parametrize("args, missing, example", [
    (["agent.retire"], "agent.retire needs --name (the agent to retire)", "agent.retire --name NAME"),
    (["agent.rotate-credentials"], "agent.rotate-credentials needs --name", "--name NAME"),
    (["fleet.broadcast"], "fleet.broadcast needs --verb (one of health-check", "--verb VERB"),
    (["bus.record", "--out", "x.jsonl"], "bus.record needs --duration (seconds to record",
     "bus.record --duration 60"),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_a_required_flag_left_out_says_which_and_how(args, missing, example):
    proc = cli(None, *args)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {missing}"), proc.stderr
    assert f"fix: e.g. invoke {args[0]}" in proc.stderr and example in proc.stderr
    no_traceback(proc)
    body = envelope_of(cli(None, *args, "--json", program=HATCHERY))
    assert body["error"]["message"].startswith(missing) and "hatchery --help" in body["error"]["fix"]


def test_a_flag_without_its_value_says_so():
    proc = cli(None, "fleet.version-report", "--timeout")
    assert proc.returncode == 2 and "error: --timeout needs a value" in proc.stderr
    assert "fix: e.g. --timeout 5" in proc.stderr


# --- JSON errors ---------------------------------------------------------------------------

def test_an_inventory_error_under_json_lists_file_line_key_and_fix(tmp_path):
    bad = tmp_path / "fleet_inventory.yaml"
    bad.write_text("broker:\n  port: 99999\nagents:\n  Bad_Name: {}\n")
    proc = cli(bad, "fleet.version-report", "--json")
    assert proc.returncode == 2
    body = envelope_of(proc)
    assert body["task"] == "fleet.version-report" and body["ok"] is False
    assert body["error"]["type"] == "InventoryError" and body["error"]["exit_code"] == 2
    keys = {p["key"]: p for p in body["problems"]}
    assert keys["broker.port"]["line"] == 2 and keys["broker.port"]["file"].endswith(bad.name)
    assert all(p["fix"] for p in body["problems"])


def test_an_unreachable_broker_under_json_is_exit_3(tmp_path):
    inventory = tmp_path / "fleet_inventory.yaml"
    inventory.write_text(f"broker:\n  runtime: local\n  port: {free_port()}\n  auth: false\n"
                         "agents:\n  red: {}\n")
    proc = cli(inventory, "fleet.version-report", "--json", "--timeout", "1")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    body = envelope_of(proc)
    assert body["ok"] is False and body["error"]["type"] == "BusError" and body["error"]["fix"]


@pytest.mark.parametrize("program", [INVOKE, HATCHERY], ids=["invoke", "hatchery"])
def test_parse_errors_under_json_are_the_envelope(program):
    proc = cli(None, "fleet.version-report", "--json", "--timeout=abc", program=program)
    assert proc.returncode == 2
    body = envelope_of(proc)
    assert body["task"] == "fleet.version-report" and body["error"]["type"] == "UsageError"


# --- closed pipes -----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--list"], ["--help", "fleet.monitor"], ["agent.list"]])
def test_a_closed_pipe_ends_quietly(fleet, args):
    env = {**os.environ, "FLEET_INVENTORY": str(fleet)}
    proc = subprocess.Popen([*INVOKE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    proc.stdout.close()         # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 141 and err == ""


def test_head_1_through_a_shell_prints_no_traceback(fleet):
    proc = subprocess.run(["bash", "-o", "pipefail", "-c",
                           " ".join([*INVOKE, "fleet.version-report", "|", "head", "-1"])],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FLEET_INVENTORY": str(fleet)})
    assert proc.stdout.startswith("AGENT") and proc.returncode in (0, 141)
    no_traceback(proc)


# --- the envelope on every task ----------------------------------------------------------------

def task_args(task: str, tmp: Path) -> list:
    """What each task needs to run once, briefly and without changing the fleet."""
    return {
        "broker.deploy": ["--check"], "broker.stop": ["--check"],
        "agent.hatch": ["--check"], "agent.stop": ["--check"],
        "agent.retire": ["--name", "green", "--check"],
        "agent.rotate-credentials": ["--name", "green", "--check"],
        "agent.restart": ["--check"], "agent.logs": ["--name", "green", "--lines", "1"],
        "fleet.rollout": ["--check"], "fleet.heal": ["--check"],
        "fleet.collect": ["--timeout", "3"],
        "fleet.broadcast": ["--verb", "health-check"],
        "fleet.exporter": ["--rules"],
        "fleet.schedule": ["--check", "--kind", "cron", "--target-dir", str(tmp)],
        "bus.record": ["--duration", "0.5", "--out", str(tmp / "bus.jsonl")],
        "bus.audit": ["--listen", "0.5"],
        "images.bootstrap": ["--check"],
        "fleet.dashboard": ["--duration", "0.5", "--port", str(free_port())],
    }.get(task, [])


# Tasks the fixture's fleet cannot run: it has no swarm: section (a usage error, with its fix).
NEEDS_A_SWARM = ("swarm.up", "swarm.status")


@pytest.mark.parametrize("task", sorted(all_tasks()))
def test_every_task_prints_the_envelope_under_json(fleet, task, tmp_path):
    proc = cli(fleet, task, "--json", *task_args(task, tmp_path))
    allowed = (2,) if task in NEEDS_A_SWARM else (0, 1, 3)               # 3: no Docker engine
    assert proc.returncode in allowed, proc.stdout + proc.stderr
    body = envelope_of(proc)
    assert body["task"] == task
    assert body["ok"] is (proc.returncode == 0)
    no_traceback(proc)


def test_selectors_through_the_cli(fleet):
    body = envelope_of(cli(fleet, "fleet.version-report", "--json", "-g", "warm"))
    assert [r["agent"] for r in body["items"]] == ["red"]
    body = envelope_of(cli(fleet, "agent.list", "--json", "--pattern", "g*,r*"))
    assert [r["agent"] for r in body["items"]] == ["red", "green"]
    typo = cli(fleet, "fleet.health-check", "--name", "gren")
    assert typo.returncode == 2 and "did you mean green?" in typo.stderr


# --- the first hour: selectors, answers, long-running tasks ------------------------------------

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "


def test_the_verbs_show_their_answers_as_columns(fleet):
    status = cli(fleet, "fleet.status-report").stdout.splitlines()
    header = status[0].split()
    assert header[:3] == ["AGENT", "STATE", "RTT_MS"], status
    assert {"UPTIME", "MEM_KB", "PID", "COUNTERS.RECEIVED"} <= set(header)
    uptime = header.index("UPTIME")
    assert [line.split()[uptime].isdigit() for line in status[1:]] == [True, True]
    health = cli(fleet, "fleet.health-check").stdout.splitlines()[0].split()
    assert {"OK", "UPTIME", "MEM_KB"} <= set(health)
    versions = cli(fleet, "fleet.version-report").stdout.splitlines()
    assert versions[0].split() == ["AGENT", "STATE", "RTT_MS", "VERSION"]
    assert sorted(line.split()[-1] for line in versions[1:]) == ["2.0", "2.1"]


def test_agent_logs_takes_the_selectors_and_names_each_line(fleet):
    every = cli(fleet, "agent.logs", "--lines", "2")
    assert every.returncode == 0, every.stderr
    prefixes = {line.split(" | ")[0] for line in every.stdout.splitlines()}
    assert prefixes == {"red  ", "green"}, every.stdout          # padded to the longest name
    body = envelope_of(cli(fleet, "agent.logs", "-n", "red,green", "--lines", "1", "--json"))
    assert sorted(item["agent"] for item in body["items"]) == ["green", "red"]
    one = cli(fleet, "agent.logs", "-g", "warm", "--lines", "1")
    assert one.returncode == 0 and " | " not in one.stdout and one.stdout.count("\n") == 1


def test_agent_logs_follows_every_agent_until_the_duration(fleet):
    started = time.monotonic()
    proc = cli(fleet, "agent.logs", "--follow", "--duration", "1.5", "--lines", "1", "--json")
    assert proc.returncode == 0 and time.monotonic() - started < 15, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {line["agent"] for line in lines} == {"red", "green"} and all("line" in x for x in lines)


def test_several_new_names_are_enrolled_by_one_hatch(fleet):
    before = fleet.read_text()
    proc = cli(fleet, "agent.hatch", "--name", "client-c,client-d,worker-e", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("client-c", "client-d", "worker-e"):
        assert f"inventory agents.{name}" in proc.stdout and f"+  {name}:" in proc.stdout
    assert fleet.read_text() == before                          # --check wrote nothing
    typo = cli(fleet, "agent.hatch", "--name", "Red", "--check")
    assert typo.returncode == 2 and "did you mean red?" in typo.stderr


LONG_RUNNING = {
    "fleet.exporter": lambda: ["--port", str(free_port())],
    "fleet.dashboard": lambda: ["--port", str(free_port())],
    "fleet.heal": lambda: ["--watch", "--json"],
    "fleet.monitor": lambda: ["--stream", "--json"],
    "agent.logs": lambda: ["--follow", "--lines", "0"],
    "fleet.top": lambda: [],                    # not on a terminal: one frame, then exit
}


def test_every_long_running_task_takes_duration():
    from hatchery.tasks.flags import BOUNDS
    assert all(namespace[task].help.get("duration") for task in [*LONG_RUNNING, "bus.record"])
    assert BOUNDS["duration"].open and BOUNDS["duration"].low == 0


@pytest.mark.parametrize("task", sorted(LONG_RUNNING))
def test_a_long_running_task_ends_by_itself_after_its_duration(fleet, task):
    started = time.monotonic()
    proc = cli(fleet, task, "--duration", "1", *LONG_RUNNING[task]())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 1 <= time.monotonic() - started < 30 or task == "fleet.top"
    no_traceback(proc)


def test_fleet_top_on_a_terminal_ends_by_itself_after_its_duration(fleet):
    import pty
    import threading
    primary, secondary = pty.openpty()          # a terminal: the live view, not one frame
    env = {**os.environ, "FLEET_INVENTORY": str(fleet), "COLUMNS": "120", "LINES": "20"}
    started = time.monotonic()
    proc = subprocess.Popen([*HATCHERY, "fleet.top", "--duration", "1", "--refresh", "0.2"],
                            stdin=secondary, stdout=secondary, stderr=secondary, env=env)
    os.close(secondary)
    seen = bytearray()

    def drain():
        with contextlib.suppress(OSError):
            while chunk := os.read(primary, 4096):
                seen.extend(chunk)
    threading.Thread(target=drain, daemon=True).start()
    try:
        assert proc.wait(30) == 0, bytes(seen)[-2000:]
    finally:
        proc.kill()
        os.close(primary)
    assert 1 <= time.monotonic() - started < 30 and b"hatchery fleet" in seen and b"Traceback" not in seen


def test_the_exporter_stamps_its_lines(fleet):
    proc = cli(fleet, "fleet.exporter", "--port", str(free_port()), "--duration", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert [re.sub(STAMP, "", line, count=1) for line in lines][-1] == "fleet.exporter stopped"
    assert all(re.match(STAMP, line) for line in lines) and "serving http://" in lines[0]
