"""Pure logic: alert rate limiting, verb actions, metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from agent_kit import actions, contract, metrics
from agent_kit.alerts import DropAlerts
from agent_kit.config import ReloadConfig


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_first_drop_alerts_then_the_window_suppresses():
    clock = Clock()
    alerts = DropAlerts(10, clock)
    first = alerts.note("not-json", 5, "abcd1234", "fleet/a/command")
    assert first["count"] == 1 and first["suppressed"] == 0 and first["reason"] == "not-json"
    assert all(alerts.note("unknown-verb", 9, "ffff0000", "t") is None for _ in range(99))
    clock.now += 10
    second = alerts.note("oversized", 5000, "00001111", "t")
    assert (second["count"], second["suppressed"], second["reason"]) == (101, 99, "oversized")


def test_flush_reports_suppressed_drops_after_the_window():
    clock = Clock()
    alerts = DropAlerts(10, clock)
    alerts.note("not-json", 1, "aaaaaaaa", "t")
    alerts.note("bad-id", 2, "bbbbbbbb", "t")
    assert alerts.flush() is None  # window still open
    clock.now += 10
    summary = alerts.flush()
    assert (summary["count"], summary["suppressed"], summary["reason"]) == (2, 1, "bad-id")
    clock.now += 100
    assert alerts.flush() is None  # nothing new


def test_first_line_is_printable_and_bounded():
    assert actions.first_line("\n\n  v1.2.3 \x1b[0m\nmore") == "v1.2.3 [0m"
    assert len(actions.first_line("x" * 500)) == 128
    assert actions.first_line("\n \n") == ""


@pytest.mark.parametrize("text, slug", [
    ("Python 3.11.7", "python-3.11.7"),
    ("OpenClaw v2.4 (build 77)\nsecond line", "openclaw-v2.4-build-77"),
    ("  node.js v20.11.0  ", "node.js-v20.11.0"),
    ("\x1b[31mv1.2\x1b[0m", "31mv1.2-0m"),          # escapes leave only printable words
    ("-v1.0-", "v1.0"),
    ("x" * 64, "x" * 64),
    ("x" * 65, None),                                   # too long for a slug: refused, not cut
    ("\u65e5\u672c\u8a9e", None),                      # nothing left
    ("", None),
    ("\u202e1.0", "1.0"),
])
def test_version_slug(text, slug):
    assert actions.version_slug(text) == slug
    if slug is not None:
        assert contract.is_slug(slug)


def test_version_runs_shell_strings_and_argv():
    assert actions.version("echo 'agent 1.2'; echo second", 5) == "agent 1.2"
    assert actions.version((sys.executable, "-c", "print('py-ok')"), 5) == "py-ok"


@pytest.mark.parametrize("command, timeout, code", [
    (None, 5, "no-version-command"),
    ("exit 3", 5, "version-failed"),
    ("true", 5, "version-empty"),
    (("/nonexistent/binary",), 5, "version-not-runnable"),
    ("sleep 5 & sleep 5; echo late", 0.3, "version-timeout"),
])
def test_version_failures_have_short_codes(command, timeout, code):
    started = time.monotonic()
    with pytest.raises(actions.ActionError) as caught:
        actions.version(command, timeout)
    assert caught.value.code == code
    assert time.monotonic() - started < 3  # a timeout kills the group, pipes and all


def test_reload_signals_the_pid_in_the_pid_file(tmp_path):
    child = subprocess.Popen([sys.executable, "-c",
                              "import signal, sys, time\n"
                              "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(42))\n"
                              "print('ready', flush=True)\n"
                              "time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ready\n"
        pid_file = tmp_path / "agent.pid"
        pid_file.write_text(f"{child.pid}\n")
        assert actions.reload(ReloadConfig(signal="USR1", pid_file=str(pid_file)), 5) == "signal"
        assert child.wait(5) == 42
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("content, code", [
    (None, "pid-file-unreadable"), ("abc", "bad-pid"), ("1", "bad-pid"), ("-5", "bad-pid"),
    ("999999999", "no-such-process"),
])
def test_reload_signal_failures(tmp_path, content, code):
    pid_file = tmp_path / "agent.pid"
    if content is not None:
        pid_file.write_text(content)
    with pytest.raises(actions.ActionError) as caught:
        actions.reload(ReloadConfig(signal="HUP", pid_file=str(pid_file)), 5)
    assert caught.value.code == code


def test_reload_command_and_missing_reload(tmp_path):
    marker = tmp_path / "reloaded"
    assert actions.reload(ReloadConfig(command=f"touch {marker}"), 5) == "command"
    assert marker.exists()
    with pytest.raises(actions.ActionError, match="reload-failed"):
        actions.reload(ReloadConfig(command="false"), 5)
    with pytest.raises(actions.ActionError, match="no-reload-configured"):
        actions.reload(None, 5)


def test_metrics_are_plausible_numbers():
    assert 1000 < metrics.rss_kb() < 2_000_000
    assert metrics.host_uptime() > 0
    assert metrics.load_average() >= 0
    assert metrics.host_mem_used_kb() > 0
    meter = metrics.CpuMeter()
    sum(i * i for i in range(300_000))  # burn a little CPU
    assert 0 < meter.sample() <= 2 * os.cpu_count()
    fields = metrics.host_heartbeat_fields()
    assert set(fields) == {"uptime", "mem_kb", "cpu"}


def test_counters_by_prefix():
    counters = metrics.Counters()
    counters.add("dropped:not-json")
    counters.add("dropped:not-json")
    counters.add("received", 3)
    assert counters.with_prefix("dropped:") == {"not-json": 2}
    assert counters.get("received") == 3 and counters.get("missing") == 0


class PublishedBeats:
    """Stands for the MQTT client: records what is published, connects nowhere."""

    def __init__(self):
        self.sent = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, payload))


def test_a_version_found_while_a_heartbeat_is_built_goes_out_at_the_next_tick():
    """The probe's thread may find the version between the beat being read (no version
    yet) and it being sent: that beat is then due again at once, not an interval later."""
    from agent_kit.commandhandler import CommandHandler
    from agent_kit.config import AgentConfig
    handler = CommandHandler(AgentConfig(name="racer", heartbeat_interval=600), password="")
    handler.client = PublishedBeats()
    built = handler.heartbeat

    def found_meanwhile():
        beat = built()
        handler.versions._set("agent-1.0")          # what the probe's thread does
        return beat
    handler.heartbeat = found_meanwhile
    assert "version" not in handler._publish_heartbeat()
    assert handler._next_heartbeat <= time.monotonic()          # due at the next tick
    handler.heartbeat = built
    assert handler._publish_heartbeat()["version"] == "agent-1.0"
    assert handler._next_heartbeat > time.monotonic() + 500     # then an interval away
    assert len(handler.client.sent) == 2
