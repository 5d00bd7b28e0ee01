"""Prometheus text exposition (format 0.0.4), written directly: families in, bytes out.

At 10,000 agents ``prometheus_client.generate_latest`` spent most of a
/metrics scrape building a Metric object, a Sample tuple and a label dict per
value and formatting them back apart. Here each sample becomes its line as it
is added: one f-string, with label values escaped only when they hold one of
the three characters the format escapes.

    up = Family("hatchery_agent_up", "1 while online", labels=("agent",))
    up.add(("client-a",), 1)
    body = render([up])

The output is what ``generate_latest`` writes for the same families (``# HELP``
and ``# TYPE`` per family, counters' samples and headers named ``*_total``,
values as Go formats floats); tests/test_metrics_text.py reads it back with
prometheus_client's own parser.
"""

from __future__ import annotations

from typing import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GAUGE, COUNTER = "gauge", "counter"


class Family:
    """One metric family and its samples, rendered as they are added."""

    __slots__ = ("name", "kind", "help", "labels", "_sample", "_lines")

    def __init__(self, name: str, help: str, *, kind: str = GAUGE, labels: Sequence[str] = ()):
        if kind not in (GAUGE, COUNTER):
            raise ValueError(f"unsupported metric type {kind!r}")
        if kind == COUNTER and name.endswith("_total"):
            name = name[:-len("_total")]
        self.name, self.kind, self.help, self.labels = name, kind, help, tuple(labels)
        self._sample = f"{name}_total" if kind == COUNTER else name
        self._lines: list = []

    def add(self, values: Sequence[str], value: float) -> None:
        """One sample: label values in the order of ``labels``, and its value."""
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name}: {len(values)} label values for {len(self.labels)} labels")
        if self.labels:
            pairs = ",".join(f'{name}="{escape_label(str(v))}"'
                             for name, v in zip(self.labels, values))
            self._lines.append(f"{self._sample}{{{pairs}}} {go_float(value)}\n")
        else:
            self._lines.append(f"{self._sample} {go_float(value)}\n")

    def add_one(self, value_of_label: str, value: float) -> None:
        """``add`` for a family with exactly one label (the common case: ``agent``)."""
        self._lines.append(f'{self._sample}{{{self.labels[0]}="{escape_label(value_of_label)}"}} '
                           f"{go_float(value)}\n")

    def text(self) -> str:
        head = self._sample if self.kind == COUNTER else self.name
        return (f"# HELP {head} {escape_help(self.help)}\n# TYPE {head} {self.kind}\n"
                + "".join(self._lines))


def render(families: Iterable[Family]) -> bytes:
    """The exposition text of ``families``, in the order given."""
    return "".join(family.text() for family in families).encode("utf-8")


def escape_label(value: str) -> str:
    """A label value as the format writes it: backslash, double quote and newline escaped."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped (quotes stay)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def go_float(value: float) -> str:
    """A value as Go prints a float64 (what Prometheus and prometheus_client write)."""
    text = repr(float(value))
    dot = text.find(".")
    if dot < 0:                     # inf, nan, or already an exponent (1e+16)
        return _SPECIAL.get(text, text)
    if dot > 6 and text[0] != "-":  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
