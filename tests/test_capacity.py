"""Capacity planning: pure, facts in, fits out (no host, no engine)."""

from __future__ import annotations

import pytest

from hatchery.observe.capacity import (
    AgentUsage,
    HostResources,
    median_agent,
    parse_headroom,
    plan,
)

GB = 1024 * 1024


def usage(agent, host, mem_mb, cpu):
    return AgentUsage(agent, host, mem_mb * 1024, cpu, "runtime")


def test_fits_are_limited_by_the_tighter_resource():
    hosts = [HostResources("h1", 8 * GB, 6 * GB, 4.0), HostResources("h2", 8 * GB, 6 * GB, 1.0)]
    usages = [usage("a", "h1", 100, 0.1), usage("b", "h1", 100, 0.1), usage("c", "h2", 100, 0.1)]
    result = plan(hosts, usages, headroom=0.2)
    h1, h2 = result.hosts
    # memory: (6 GB - 1.6 GB) / 100 MB = 45; cpu: (3.8 - 0.8) / 0.1 = 30
    assert (h1.fits, h1.limited_by, h1.agents) == (30, "cpu", 2)
    # cpu on h2: free 0.9, keep 0.2 -> 7
    assert (h2.fits, h2.limited_by) == (7, "cpu")
    assert result.median.mem_kb == 100 * 1024 and result.warnings == []


def test_a_host_inside_its_headroom_is_warned_about_and_fits_nothing():
    hosts = [HostResources("nas", 2 * GB, int(0.1 * 2 * GB), 2.0)]
    result = plan(hosts, [usage("a", "nas", 500, 0.5)], headroom=0.2)
    assert result.hosts[0].fits == 0
    assert result.warnings == ["nas: past its 20% headroom: memory 10% free"]


def test_unknown_figures_give_unknown_fits_not_a_guess():
    result = plan([HostResources("far", None, None, None)], [usage("a", "far", 50, 0.1)])
    assert result.hosts[0].fits is None and result.hosts[0].limited_by == "unknown"
    empty = plan([HostResources("h", 8 * GB, 6 * GB, 4.0)], [])
    assert empty.hosts[0].fits is None, "no agent yet: no median size to plan with"


def test_median_ignores_missing_values():
    m = median_agent([usage("a", "h", 10, None), AgentUsage("b", "h", None, 0.2), usage("c", "h", 30, 0.4)])
    assert (m.mem_kb, m.cpu, m.sample) == (20 * 1024, pytest.approx(0.3), 3)


@pytest.mark.parametrize("text,expected", [("20%", 0.2), ("0%", 0.0), ("0.35", 0.35), (" 5% ", 0.05)])
def test_headroom_parses(text, expected):
    assert parse_headroom(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["100%", "-1%", "abc", "nan", "1.5", ""])
def test_headroom_out_of_range_is_refused(text):
    with pytest.raises(ValueError):
        parse_headroom(text)


def test_the_hosts_own_load_counts_when_it_is_more_than_the_agents():
    host = HostResources("busy", 8 * GB, 6 * GB, 4.0, cpu_busy=3.5)
    result = plan([host], [usage("a", "busy", 100, 0.1)], headroom=0.2)
    assert result.hosts[0].cpu_free == 0.5 and result.hosts[0].fits == 0
    assert result.warnings == ["busy: past its 20% headroom: cpu 12% free"]


def test_a_host_only_heartbeats_name_is_listed_with_unknown_size():
    result = plan([HostResources("h1", 8 * GB, 6 * GB, 4.0)],
                  [usage("a", "h1", 100, 0.1), AgentUsage("b", "far", 50 * 1024, 0.2, "heartbeat")])
    far = result.hosts[1]
    assert (far.host, far.agents, far.fits, far.problem) == ("far", 1, None, "no runtime figures for this host")
    assert [u["agent"] for u in far.as_dict()["agent_usage"]] == ["b"]


def test_a_host_with_nothing_to_spare_fits_none_even_of_idle_agents():
    idle = [usage("a", "h", 100, 0.0)]
    full = plan([HostResources("h", 8 * GB, 6 * GB, 2.0, cpu_busy=2.0)], idle, headroom=0.0)
    assert (full.hosts[0].fits, full.hosts[0].limited_by) == (0, "cpu")
    spare = plan([HostResources("h", 8 * GB, 6 * GB, 2.0, cpu_busy=0.5)], idle, headroom=0.0)
    assert spare.hosts[0].limited_by == "memory", "an idle agent costs no CPU: memory decides"
