"""observe/metrics_text: the exposition text reads back, with prometheus_client's own
parser, as exactly the families and samples that went in, whatever the label values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from hatchery.observe.metrics_text import COUNTER, Family, go_float, render


def parsed(body: bytes) -> dict:
    """{family name: (type, help, [(sample name, labels, value)])} as Prometheus reads it."""
    return {f.name: (f.type, f.documentation, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(body.decode("utf-8"))}


def official(families: list) -> bytes:
    """The same families through prometheus_client's generate_latest."""
    class Collector:
        def collect(self):
            for kind, name, help_text, labels, samples in families:
                cls = CounterMetricFamily if kind == COUNTER else GaugeMetricFamily
                family = cls(name, help_text, labels=list(labels))
                for values, value in samples:
                    family.add_metric(list(values), value)
                yield family

        def describe(self):
            return []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


def ours(families: list) -> bytes:
    rendered = []
    for kind, name, help_text, labels, samples in families:
        family = Family(name, help_text, kind=kind, labels=labels)
        for values, value in samples:
            family.add(values, value)
        rendered.append(family)
    return render(rendered)


def test_gauges_and_counters_read_back_as_given():
    up = Family("hatchery_agent_up", "1 while online", labels=("agent",))
    up.add(("client-a",), 1)
    up.add(("client-b",), 0.0)
    errors = Family("hatchery_agent_errors", "by code", labels=("agent", "code"))
    errors.add(("client-a", "bad-json"), 3)
    messages = Family("hatchery_bus_messages", "seen", kind=COUNTER, labels=("kind",))
    messages.add(("heartbeat",), 10_000)
    auth = Family("hatchery_broker_auth_failures_total", "refused logins", kind=COUNTER)
    auth.add((), 0)
    assert parsed(render([up, errors, messages, auth])) == {
        "hatchery_agent_up": ("gauge", "1 while online",
                              [("hatchery_agent_up", {"agent": "client-a"}, 1.0),
                               ("hatchery_agent_up", {"agent": "client-b"}, 0.0)]),
        "hatchery_agent_errors": ("gauge", "by code", [
            ("hatchery_agent_errors", {"agent": "client-a", "code": "bad-json"}, 3.0)]),
        "hatchery_bus_messages": ("counter", "seen", [
            ("hatchery_bus_messages_total", {"kind": "heartbeat"}, 10000.0)]),
        "hatchery_broker_auth_failures": ("counter", "refused logins", [
            ("hatchery_broker_auth_failures_total", {}, 0.0)]),
    }


HOSTILE = ['say "hi"', "back\\slash", "two\nlines", 'all \\ " \n at once', "}{,=", "ünïcödé ✓",
           "\\n literally", '"', "\\", "trailing\\"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_label_values_survive_exactly(value):
    """An agent chooses its error codes: whatever it sends must come back as one label value
    of one sample, never a second sample or a broken line."""
    family = Family("hatchery_agent_errors", 'help with \\ and\nnewline and "quotes"',
                    labels=("agent", "code"))
    family.add(("client-a", value), 1)
    family.add(("client-b", "plain"), 2)
    result = parsed(render([family]))
    assert result["hatchery_agent_errors"][1] == 'help with \\ and\nnewline and "quotes"'
    assert result["hatchery_agent_errors"][2] == [
        ("hatchery_agent_errors", {"agent": "client-a", "code": value}, 1.0),
        ("hatchery_agent_errors", {"agent": "client-b", "code": "plain"}, 2.0)]


@pytest.mark.parametrize("value, text", [
    (1, "1.0"), (0, "0.0"), (-2.5, "-2.5"), (12345678.5, "1.23456785e+07"), (1e-07, "1e-07"),
    (2 ** 53, "9.007199254740992e+15"), (12345678901, "1.2345678901e+10"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
    (float("nan"), "NaN"), (True, "1.0")])
def test_values_are_formatted_as_prometheus_client_formats_them(value, text):
    from prometheus_client.utils import floatToGoString
    assert go_float(value) == text == floatToGoString(value)


def test_a_family_converts_to_prometheus_client_for_a_registry():
    family = Family("hatchery_bus_messages", "seen", kind=COUNTER, labels=("kind",))
    family.add(("heartbeat",), 3)
    converted = family.to_prometheus()
    assert converted.name == "hatchery_bus_messages" and converted.type == "counter"
    assert [(s.name, s.labels, s.value) for s in converted.samples] == \
        [("hatchery_bus_messages_total", {"kind": "heartbeat"}, 3)]


def test_a_family_with_no_samples_still_declares_itself():
    assert parsed(render([Family("hatchery_agent_rtt", "none yet", labels=("agent",))])) == \
        {"hatchery_agent_rtt": ("gauge", "none yet", [])}


def test_wrong_label_counts_and_types_are_refused():
    family = Family("x", "y", labels=("agent",))
    with pytest.raises(ValueError):
        family.add(("a", "b"), 1)
    with pytest.raises(ValueError):
        Family("x", "y", kind="histogram")


label_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
numbers = st.one_of(st.floats(allow_nan=False), st.integers(-2 ** 53, 2 ** 53))
families = st.lists(st.tuples(
    st.sampled_from(["gauge", "counter"]),
    st.sampled_from(["hatchery_a", "hatchery_b", "hatchery_c"]),
    label_text,
    st.sampled_from([(), ("agent",), ("agent", "code")]),
), min_size=1, max_size=3, unique_by=lambda f: f[1])


@settings(max_examples=150, deadline=None)
@given(families.flatmap(lambda fs: st.tuples(*[
    st.lists(st.tuples(st.tuples(*[label_text] * len(f[3])), numbers), max_size=4,
             unique_by=lambda s: s[0]).map(lambda samples, f=f: (*f, samples)) for f in fs])))
def test_same_families_and_samples_as_generate_latest(spec):
    """Random names of kinds, help texts, label values and numbers: what Prometheus reads
    from our text is what it reads from prometheus_client's."""
    spec = list(spec)
    mine, theirs = parsed(ours(spec)), parsed(official(spec))
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert mine[name][:2] == theirs[name][:2]
        assert [(n, labels, _comparable(v)) for n, labels, v in mine[name][2]] == \
            [(n, labels, _comparable(v)) for n, labels, v in theirs[name][2]]


def _comparable(value: float):
    return "nan" if math.isnan(value) else value


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.floats(), st.integers(-2 ** 64, 2 ** 64)))
def test_any_number_is_formatted_as_prometheus_client_formats_it(value):
    from prometheus_client.utils import floatToGoString
    assert go_float(value) == floatToGoString(value)
