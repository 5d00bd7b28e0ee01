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


def test_what_an_agent_only_told_us_is_cut_to_its_host_and_does_not_decide_the_headroom():
    host = HostResources("h", 8 * GB, 6 * GB, 4.0, cpu_busy=1.0)
    forged = AgentUsage("a", "h", 2 ** 53, float(2 ** 53), "heartbeat")
    result = plan([host], [forged, usage("b", "h", 100, 0.5)], headroom=0.2)
    row = result.hosts[0]
    assert row.agents_mem_kb == 8 * GB + 100 * 1024 and row.agents_cpu == 4.5
    assert row.cpu_free == 3.0 and result.warnings == []
    # a host that gives no load of its own has only the agents' word: cut to its size
    blind = plan([HostResources("h", 8 * GB, 6 * GB, 4.0)], [forged], headroom=0.2)
    assert blind.hosts[0].cpu_free == 0.0


@pytest.mark.parametrize("total,available", [(8 * GB, None), (None, 6 * GB), (None, None)],
                         ids=["free unknown", "total unknown", "both unknown"])
def test_a_host_whose_free_memory_is_unknown_does_not_fit_agents_on_its_cpus_word(total, available):
    # a swarm node that is down, or an engine whose /proc could not be read, still says its CPUs
    node = HostResources("n1", total, available, 8.0, kind="node", problem="free memory unknown")
    known = HostResources("h1", 8 * GB, 6 * GB, 8.0)
    result = plan([node, known], [usage("a", "h1", 100, 0.1)], headroom=0.2)
    unknown, fine = result.hosts
    assert (unknown.fits, unknown.limited_by) == (None, "unknown")
    assert unknown.as_dict()["fits"] is None and fine.fits == 45
    assert set(unknown.as_dict()) == set(fine.as_dict())       # the JSON keys do not change


def test_a_host_with_unknown_memory_and_no_cpu_to_spare_fits_none():
    node = HostResources("n1", 8 * GB, None, 2.0, cpu_busy=2.0, kind="node")
    row = plan([node], [usage("a", "n1", 100, 0.1)], headroom=0.2).hosts[0]
    assert (row.fits, row.limited_by) == (0, "cpu"), "out of CPU is certain whatever its memory"


def test_the_views_say_unknown_for_a_host_whose_free_memory_is_unknown():
    import json

    from hatchery.core.results import envelope
    from hatchery.observe.capacitywatch import CapacityWatch
    from hatchery.observe.resources import CapacityReport, Facts

    hosts = [HostResources("n1", 8 * GB, None, 8.0, kind="node", problem="node down: free memory unknown"),
             HostResources("h1", 8 * GB, 6 * GB, 8.0)]
    usages = [usage("a", "h1", 100, 0.1)]
    result = CapacityReport(plan(hosts, usages, headroom=0.2), Facts(hosts, usages))
    node_row, host_row = result.rows()
    assert (node_row["fits"], node_row["limited_by"]) == ("?", "unknown")      # the text table
    assert node_row["warning"] == "node down: free memory unknown" and host_row["fits"] == 45
    items = json.loads(json.dumps(envelope("fleet.capacity", result, seconds=0.1)))["items"]
    assert (items[0]["fits"], items[0]["limited_by"]) == (None, "unknown")  # --json: null
    watch = CapacityWatch(inv=None)
    watch.plan, watch.gathered_at = result.plan, 0.0
    metrics = watch.render().decode()
    assert 'hatchery_host_agent_fits{host="h1"} 45' in metrics
    assert 'hatchery_host_agent_fits{host="n1"}' not in metrics            # absent: unknown
    assert 'hatchery_host_cpus{host="n1"} 8' in metrics                    # what is known stays
