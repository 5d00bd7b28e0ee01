"""The last hour of the fleet, held in memory and bounded: what the dashboard and top draw.

Three fixed-size stores, fed by ``live.FleetModel`` and read by any thread:

- ``Sparks``: per agent, the last hour of memory, CPU and round trip in
  ``SPARK_SLOTS`` slots of ``SPARK_STEP`` seconds (the last value seen in each
  slot). Each agent's ring is two flat ``array``s: 4 bytes of slot number and
  3 x 4 bytes of values (float32) per slot, allocated once: ``SPARK_BYTES``
  (2,880) bytes of numbers a ring, 3,144 bytes with the objects around them
  on CPython 3.11 (``tests/views/test_history.py`` measures it). Agents are
  bounded by the fleet state (the inventory plus ``fleetstate.MAX_EXTRA_AGENTS``).
- ``FleetCounts``: the fleet's verdict counts in ``FLEET_SLOTS`` slots of
  ``FLEET_STEP`` seconds; within a slot ``online`` keeps its lowest count and
  every other verdict its highest, so a dip of a few seconds still shows.
- ``Timeline``: the last ``EVENTS_KEPT`` events (state changes, alerts, heal
  actions, rollout batches, retirements), each numbered, so a reader asks for
  the ones after the last it has.

Everything kept is a number, a verdict, a contract slug or a fleet name (the
one exception, a lease's owner, comes from our own intent file and is shown
as text).
"""

from __future__ import annotations

import json
import threading
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Optional

SPARK_STEP = 20.0           # seconds per sparkline slot
SPARK_SLOTS = 180           # an hour
SERIES = ("mem_kb", "cpu", "rtt_ms")
SPARK_BYTES = SPARK_SLOTS * (4 + 4 * len(SERIES))
FLEET_STEP = 10.0
FLEET_SLOTS = 360           # an hour
COUNTED = ("online", "unhealthy", "stale", "offline", "missing", "unknown", "stopped")
EVENTS_KEPT = 500
_NAN = float("nan")


class Ring:
    """One agent's hour: ``stamps[i]`` is the slot number held at i (0: empty)."""

    __slots__ = ("stamps", "values")

    def __init__(self):
        self.stamps = array("I", bytes(4 * SPARK_SLOTS))
        self.values = array("f", [_NAN]) * (SPARK_SLOTS * len(SERIES))

    def put(self, at: float, sample: tuple) -> None:
        slot = int(at // SPARK_STEP)
        index = slot % SPARK_SLOTS
        base = index * len(SERIES)
        if self.stamps[index] != slot:
            self.stamps[index] = slot
            for k in range(len(SERIES)):
                self.values[base + k] = _NAN
        for k, value in enumerate(sample):
            if value is not None:
                self.values[base + k] = value

    def series(self, first: int, last: int) -> dict:
        """{series: [value or None per slot from ``first`` to ``last``]}."""
        stamps, values, width = self.stamps, self.values.tolist(), len(SERIES)
        out = {name: [] for name in SERIES}
        columns = [(out[name], k, 0 if name == "mem_kb" else 3 if name == "cpu" else 1)
                   for k, name in enumerate(SERIES)]
        for slot in range(first, last + 1):
            index = slot % SPARK_SLOTS
            held = stamps[index] == slot
            for found, k, digits in columns:
                value = values[index * width + k] if held else _NAN
                # NaN is the one value unequal to itself: an empty slot or series
                found.append(None if value != value else (int(value) if digits == 0 else round(value, digits)))
        return out

    def nbytes(self) -> int:
        return self.stamps.itemsize * len(self.stamps) + self.values.itemsize * len(self.values)


class Sparks:
    """Per-agent rings (thread-safe)."""

    def __init__(self):
        self._rings: dict = {}
        self._lock = threading.Lock()

    def put(self, agent: str, at: float, mem_kb=None, cpu=None, rtt_ms=None) -> None:
        with self._lock:
            ring = self._rings.get(agent)
            if ring is None:
                ring = self._rings[agent] = Ring()
            ring.put(at, (mem_kb, cpu, rtt_ms))

    def forget(self, agent: str) -> None:
        with self._lock:
            self._rings.pop(agent, None)

    def since(self, now: float, first: Optional[int] = None) -> dict:
        """{"step", "first", "last", "agents": {name: {series: [..]}}}: the slots from
        ``first`` (default: an hour ago) to now; agents with nothing in them are left out."""
        head, parts = self._window(now, first), list(self.encoded(now, first))
        return {**head, "agents": {name: json.loads(text) for name, text in parts}}

    def _window(self, now: float, first: Optional[int]) -> dict:
        last = int(now // SPARK_STEP)
        first = max(last - SPARK_SLOTS + 1, first if first is not None else 0)
        return {"step": SPARK_STEP, "first": first, "last": last}

    def encoded(self, now: float, first: Optional[int] = None):
        """(name, its series as JSON text) per agent with data in the window, one at a time:
        a first load of a thousand agents never holds all their numbers as objects at once."""
        window = self._window(now, first)
        first, last = window["first"], window["last"]
        with self._lock:
            rings = list(self._rings.items())
        for name, ring in rings:
            if any(first <= s <= last for s in ring.stamps):
                yield name, json.dumps(ring.series(first, last), separators=(",", ":"))

    def __len__(self) -> int:
        return len(self._rings)


class FleetCounts:
    """The fleet's verdict counts over the last hour (thread-safe)."""

    def __init__(self):
        self.stamps = array("I", bytes(4 * FLEET_SLOTS))
        self.counts = array("I", bytes(4 * FLEET_SLOTS * len(COUNTED)))
        self._lock = threading.Lock()

    def put(self, at: float, counts: dict) -> None:
        slot = int(at // FLEET_STEP)
        index = slot % FLEET_SLOTS
        base = index * len(COUNTED)
        with self._lock:
            fresh = self.stamps[index] != slot
            self.stamps[index] = slot
            for k, verdict in enumerate(COUNTED):
                value = min(int(counts.get(verdict, 0)), 0xFFFFFFFF)
                if fresh:
                    self.counts[base + k] = value
                elif verdict == "online":
                    self.counts[base + k] = min(self.counts[base + k], value)
                else:
                    self.counts[base + k] = max(self.counts[base + k], value)

    def since(self, now: float, first: Optional[int] = None) -> dict:
        last = int(now // FLEET_STEP)
        first = max(last - FLEET_SLOTS + 1, first if first is not None else 0)
        out = {verdict: [] for verdict in COUNTED}
        with self._lock:
            for slot in range(first, last + 1):
                index = slot % FLEET_SLOTS
                held = self.stamps[index] == slot
                for k, verdict in enumerate(COUNTED):
                    out[verdict].append(self.counts[index * len(COUNTED) + k] if held else None)
        return {"step": FLEET_STEP, "first": first, "last": last, "counts": out}


@dataclass(frozen=True)
class Event:
    seq: int
    at: float
    kind: str                   # state | alert | heal | rollout | lease | retired
    agent: Optional[str]        # None: about several agents (a rollout batch)
    text: str                   # verdicts, slugs and names only

    def as_dict(self) -> dict:
        return {"seq": self.seq, "at": round(self.at, 3), "kind": self.kind, "agent": self.agent,
                "text": self.text}


class Timeline:
    """The last EVENTS_KEPT events, oldest first (thread-safe)."""

    def __init__(self, kept: int = EVENTS_KEPT):
        self._events: deque = deque(maxlen=kept)
        self._seq = 0
        self._lock = threading.Lock()

    def add(self, at: float, kind: str, agent: Optional[str], text: str) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, at, kind, agent, text)
            self._events.append(event)
            return event

    def after(self, seq: int = 0, limit: int = EVENTS_KEPT) -> list:
        """Events numbered after ``seq`` (the newest ``limit`` of them), oldest first."""
        with self._lock:
            found = [e for e in self._events if e.seq > seq]
        return found[-limit:]

    @property
    def seq(self) -> int:
        return self._seq


class History:
    """The three stores together, as the dashboard's /history route serves them."""

    def __init__(self):
        self.sparks = Sparks()
        self.fleet = FleetCounts()
        self.timeline = Timeline()

    def as_json(self, now: float, *, spark_from: Optional[int] = None,
                fleet_from: Optional[int] = None, after: int = 0) -> dict:
        return json.loads(self.encode(now, spark_from=spark_from, fleet_from=fleet_from, after=after))

    def encode(self, now: float, *, spark_from: Optional[int] = None,
               fleet_from: Optional[int] = None, after: int = 0) -> bytes:
        """The /history answer as JSON bytes, built agent by agent (strict: no NaN)."""
        def dump(value) -> str:
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        window = self.sparks._window(now, spark_from)
        agents = ",".join(f"{dump(name)}:{text}" for name, text in self.sparks.encoded(now, spark_from))
        sparks = dump(window)[:-1] + ',"agents":{' + agents + "}}"
        rest = {"fleet": self.fleet.since(now, fleet_from),
                "events": [e.as_dict() for e in self.timeline.after(after)], "seq": self.timeline.seq}
        return ('{"now":' + dump(now) + ',"sparks":' + sparks + "," + dump(rest)[1:]).encode()
