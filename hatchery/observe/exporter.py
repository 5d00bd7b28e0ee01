"""A Prometheus exporter fed from the bus (Phase 3 of the ADR).

``BusMetrics`` folds bus messages into the one ``FleetState`` (``observe``),
which validates every payload, and renders the exposition text itself
(``render``, through ``observe.metrics_text``: at 10,000 agents
prometheus_client's ``generate_latest`` took most of a second), so every
scrape reads the state as it is at that moment. It is also a
prometheus_client collector (``collect``) for a registry:

- Stale series are the classic failure of MQTT exporters: when an agent goes
  offline (its Will, or a clean goodbye) its heartbeat-derived series close and
  only ``up 0`` and its last-seen time stay.
- Only contract-valid heartbeats are exported, and one agent cannot mint
  unbounded series: its first ``ERROR_CODES_PER_AGENT`` error codes get a
  series each, every later one is summed into ``code="other"`` and counted in
  ``hatchery_exporter_folded_error_codes_total``.
- The operator's intent: a retired agent is not exported at all, a stopped one
  is marked (``hatchery_agent_stopped``) so the offline alert leaves it alone.

``serve`` also registers ``observe.capacitywatch``: fleet.capacity's numbers
per host (``hatchery_host_*``), gathered every minute on a thread of their own.
"""

from __future__ import annotations

import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from agent_kit import contract, messages
from hatchery.bus.client import BusClient, Message
from hatchery.core.intent import IntentBook, read_intent
from hatchery.core.render import render
from hatchery.inventory.model import Inventory
from hatchery.observe import capacitywatch
from hatchery.observe.fleetstate import AgentFacts, FleetState
from hatchery.observe.metrics_text import COUNTER, Family
from hatchery.observe.scrape import ScrapeText

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

RULES_TEMPLATE = "prometheus/rules.yml.j2"
# Alert codes the agents raise when they drop a command that broke the contract
# (agent_kit.handler sends "dropped-message").
DROP_PREFIXES = ("dropped", "bad-command", "unknown-verb", "oversized", "not-json")
HEAL_PREFIX = "heal-"    # alert codes of fleet.heal (operate.heal.CODES) on fleet/{manager}/alert
# Mosquitto 2.0 (connection_messages true) logs a refused login as exactly this line,
# after the timestamp of log_timestamp_format (ours: %Y-%m-%dT%H:%M:%S) or its default
# (epoch seconds). Anchored at both ends: a client id is free text that also appears in
# other lines ("New client connected from ... as <id> (...)", "Client <id> disconnected.").
AUTH_FAILURE_RE = re.compile(r"\A(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}|\d{1,12}): "
                             r"Client [^\n]{1,65535} disconnected, not authorised\.\Z")
CODES_PER_AGENT = 32        # distinct alert codes exported per agent; the rest count as OTHER_CODE
ERROR_CODES_PER_AGENT = 16  # heartbeat error codes exported per agent; the rest sum into OTHER_CODE
OTHER_CODE = "other"
INTENT_EVERY = 5.0          # seconds a read of the operator's intent is reused across scrapes


class BusMetrics:
    """Bus messages in (``observe``), Prometheus metric families out (``collect``)."""

    def __init__(self, inv: Inventory, clock=time.time, intent=None):
        self.inv, self.clock = inv, clock
        self.state = FleetState.for_inventory(inv, clock=clock)
        self.lock = threading.Lock()
        self.messages: dict = {}        # kind -> count
        self.alerts: dict = {}          # (agent, code) -> count
        self.dropped: dict = {}         # agent -> dropped bad commands
        self.heals: dict = {}           # (agent, action) -> fleet.heal actions
        self.auth_failures = 0          # from the broker's log, when we are given it
        self.bad_series: dict = {}      # agent -> scrapes that left out its series
        self.error_codes: dict = {}     # agent -> {code: None}: its exported codes, first seen first
        self.folded: dict = {}          # agent -> error codes summed into OTHER_CODE
        self._beats: dict = {}          # agent -> the heartbeat its codes were counted from
        self._read_intent = intent or (lambda: read_intent(inv))
        self._book, self._book_at = IntentBook(), float("-inf")
        self._scrape = ScrapeText(self)

    # --- input ------------------------------------------------------------------

    def observe(self, message: Message) -> None:
        self.state.observe(message)       # validates, folds; an empty payload clears
        route = _route(message.topic, self.inv.manager)
        if route is None or not message.payload:
            return
        agent, kind = route
        with self.lock:
            self.messages[kind] = self.messages.get(kind, 0) + 1
            if kind == "heartbeat":
                self._heartbeat_codes(agent)
            elif kind == "alert":
                self._alert(agent, message.payload)

    def observe_log_line(self, line: str) -> None:
        """Count a refused login in a Mosquitto log line (the bus never carries them)."""
        if AUTH_FAILURE_RE.fullmatch(line.rstrip("\r\n")):
            with self.lock:
                self.auth_failures += 1

    def _heartbeat_codes(self, agent: str) -> None:
        """A new valid heartbeat: pin its first error codes, count the ones past the cap."""
        # A peek, not facts() (a copy under the state's lock): the heartbeat is an immutable
        # value, replaced whole, so reading the reference is safe from any thread.
        facts = self.state.agents.get(agent)
        beat = facts.beat if facts is not None else None
        if beat is None or beat is self._beats.get(agent):
            return                      # refused by the contract, or not tracked
        self._beats[agent] = beat
        codes = self.error_codes.setdefault(agent, {})
        for code in beat.errors:
            if code not in codes and code != OTHER_CODE and len(codes) < ERROR_CODES_PER_AGENT:
                codes[code] = None
        folded = sum(1 for code in beat.errors if code not in codes)
        if folded:
            self.folded[agent] = self.folded.get(agent, 0) + folded

    def _alert(self, agent: str, payload: bytes) -> None:
        manager = agent == self.inv.manager
        try:
            alert = messages.decode(agent, "alert", payload, about_others=manager)
        except contract.ContractError:
            return                      # counted by the fleet state
        if manager:                     # fleet/{manager}/alert: fleet.heal's actions
            if alert.code.startswith(HEAL_PREFIX) and alert.agent in self.inv.agents:
                key = (alert.agent, alert.code[len(HEAL_PREFIX):])
                self.heals[key] = self.heals.get(key, 0) + 1
            return
        if agent not in self.state.agents:
            return                      # past the fleet state's cap on agents outside the inventory
        key = (agent, alert.code)
        if key not in self.alerts and sum(1 for a, _ in self.alerts if a == agent) >= CODES_PER_AGENT:
            key = (agent, OTHER_CODE)   # one agent cannot mint unbounded series
        self.alerts[key] = self.alerts.get(key, 0) + 1
        if alert.code.startswith(DROP_PREFIXES):
            # The agent's alerts are rate limited and carry its running total of
            # drops in ``count``: export that total (it resets when the agent
            # restarts, which Prometheus counters handle).
            total = alert.count if alert.count is not None else self.dropped.get(agent, 0) + 1
            self.dropped[agent] = total

    # --- output -----------------------------------------------------------------

    def describe(self) -> list:
        return []   # families depend on the agents seen; no fixed description

    def intent(self) -> IntentBook:
        now = self.clock()
        if now - self._book_at >= INTENT_EVERY:
            self._book, self._book_at = self._read_intent(), now
        return self._book

    def families(self) -> list:
        """Every metric family, as it is now (``metrics_text.Family``)."""
        book, agents = self.intent(), self.state.snapshot()
        with self.lock:
            return [*self._agent_families(agents, self.clock(), book),
                    *self._bus_families(agents, book.retired)]

    def render(self) -> bytes:
        """The exposition text one GET /metrics answers with (``observe.scrape``: the
        same as ``families()`` rendered whole, re-rendering only agents that changed)."""
        return self._scrape.render()

    def collect(self):
        """prometheus_client's collector protocol: the same families, for a registry."""
        for family in self.families():
            yield family.to_prometheus()

    @staticmethod
    def agent_family_map() -> dict:
        """The per-agent families, empty, by key, in exposition order (observe.scrape.AGENT_KEYS)."""
        return {
            "up": Family("hatchery_agent_up", "1 while the agent's retained state is "
                         "online (0 after its Last Will)", labels=["agent"]),
            "seen": Family("hatchery_agent_last_seen_timestamp_seconds",
                           "Time of the agent's last message", labels=["agent"]),
            "interval": Family("hatchery_agent_heartbeat_interval_seconds",
                               "Expected heartbeat interval (inventory)", labels=["agent"]),
            "stopped": Family("hatchery_agent_stopped", "1 while the operator has stopped the agent "
                              "(agent.stop): its offline state is on purpose", labels=["agent"]),
            **_live_families()}

    def _agent_families(self, agents: list, now: float, book: IntentBook) -> list:
        families = self.agent_family_map()
        for facts in agents:
            if facts.name in book.retired:
                continue                # agent.retire: gone for good, not exported at all
            # One agent's values are checked as a whole before any is added: a
            # value that cannot be exported costs that agent its series (counted
            # in hatchery_exporter_dropped_series), never the whole scrape.
            try:
                samples = self._agent_samples(facts, now, facts.name in book.stopped)
            except (ArithmeticError, ValueError, TypeError):
                self.bad_series[facts.name] = self.bad_series.get(facts.name, 0) + 1
                continue
            for key, labels, value in samples:
                families[key].add(labels, value)
        return list(families.values())

    def _agent_samples(self, facts: AgentFacts, now: float, stopped: bool) -> list:
        name = facts.name
        online = facts.online is True or (facts.online is None and facts.beat is not None)
        samples = [("up", [name], 1.0 if online else 0.0)]
        spec = self.inv.agents.get(name)
        if spec is not None:
            samples.append(("interval", [name], float(spec.heartbeat_interval)))
        if stopped:
            samples.append(("stopped", [name], 1.0))
        last = _last_seen(facts)
        if last is not None:
            samples.append(("seen", [name], last))
        if online:   # closed on offline: never export a dead agent's last values
            samples += _live_samples(facts, now, self.error_codes.get(name, {}))
        return [(key, labels, _finite(value)) for key, labels, value in samples]

    def _bus_families(self, agents: list, retired: frozenset) -> list:
        def counter(name: str, doc: str, labels: list, values: dict) -> Family:
            family = Family(name, doc, kind=COUNTER, labels=labels)
            for key, count in sorted(values.items()):
                key = key if isinstance(key, tuple) else (key,)
                if not (labels and labels[0] == "agent" and key[0] in retired):
                    family.add(key, count)
            return family

        invalid_agents = {f.name: f.invalid for f in agents if f.invalid}
        auth = Family("hatchery_broker_auth_failures", "Logins the broker refused (from its log)",
                      kind=COUNTER)
        auth.add((), self.auth_failures)
        return [
            counter("hatchery_bus_messages", "Bus messages seen, by kind", ["kind"], self.messages),
            counter("hatchery_bus_invalid_messages", "Messages that broke the contract, by kind",
                    ["kind"], self.state.invalid_by_kind),
            counter("hatchery_agent_invalid_messages", "Messages from the agent that broke the "
                    "contract (dropped, never exported)", ["agent"], invalid_agents),
            counter("hatchery_bus_alerts", "Alerts raised by agents", ["agent", "code"], self.alerts),
            counter("hatchery_agent_dropped_commands", "Bad commands agents dropped (their running "
                    "total, from their rate-limited alerts)", ["agent"], self.dropped),
            auth,
            counter("hatchery_exporter_dropped_series", "Scrapes that left out an agent's series "
                    "because a value could not be exported", ["agent"], self.bad_series),
            counter("hatchery_exporter_folded_error_codes", "Heartbeat error codes past the "
                    f"first {ERROR_CODES_PER_AGENT} of an agent, summed into code=\"other\"",
                    ["agent"], self.folded),
            counter("hatchery_heal_actions", "fleet.heal actions on an agent (restart, failed, "
                    "gave-up)", ["agent", "action"], self.heals)]


def _route(topic: str, manager: str) -> Optional[tuple]:
    """(agent, kind) of a fleet topic, ("*", "command") for the broadcast; None otherwise."""
    if topic == contract.broadcast_topic(manager):
        return "*", "command"
    return contract.parse_topic(topic)


def _last_seen(facts: AgentFacts) -> Optional[float]:
    """The newest ts the agent put on its retained topics, never later than when we last
    heard from it plus the slack (a ts dated in the future must not look fresh)."""
    announced = facts.last_announced()
    if announced is None:
        return facts.last_seen
    return min(announced, (facts.last_seen or announced) + contract.FUTURE_SLACK_S)


def _live_families() -> dict:
    def gauge(name, doc, labels=("agent",)):
        return Family(name, doc, labels=labels)
    return {
        "age": gauge("hatchery_agent_heartbeat_age_seconds", "Seconds since the last heartbeat"),
        "uptime": gauge("hatchery_agent_uptime_seconds", "Agent uptime from its heartbeat"),
        "mem": gauge("hatchery_agent_memory_bytes", "Agent memory from its heartbeat"),
        "cpu": gauge("hatchery_agent_cpu", "Agent CPU use from its heartbeat"),
        "errors": gauge("hatchery_agent_errors", "Error counts from the agent's heartbeat (its "
                        f"first {ERROR_CODES_PER_AGENT} codes; the rest summed into code=\"other\")",
                        ("agent", "code")),
        "rtt": gauge("hatchery_agent_command_rtt_seconds", "Last command round trip seen"),
    }


def _live_samples(facts: AgentFacts, now: float, codes: dict) -> list:
    name, beat, samples = facts.name, facts.beat, []
    if beat is not None:
        # a heartbeat dated in the future ages from its arrival (plus the slack), like any other
        sent = min(beat.ts, (facts.beat_received or beat.ts) + contract.FUTURE_SLACK_S)
        samples += [("age", [name], max(0.0, now - sent)), ("uptime", [name], float(beat.uptime))]
        if beat.mem_kb is not None:
            samples.append(("mem", [name], float(beat.mem_kb) * 1024))
        if beat.cpu is not None:
            samples.append(("cpu", [name], float(beat.cpu)))
        samples += _error_samples(name, beat.errors, codes)
    if facts.rtt_ms is not None:
        samples.append(("rtt", [name], facts.rtt_ms / 1000))
    return samples


def _error_samples(name: str, errors: dict, codes: dict) -> list:
    """One sample per pinned code the heartbeat carries; the rest summed into OTHER_CODE."""
    samples = [("errors", [name, code], float(errors[code])) for code in codes if code in errors]
    rest = [count for code, count in errors.items() if code not in codes]
    if rest:
        samples.append(("errors", [name, OTHER_CODE], float(sum(rest))))
    return samples


def _finite(value) -> float:
    """``value`` as a finite float; ValueError otherwise (OverflowError for huge ints)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def registry_for(metrics: BusMetrics) -> CollectorRegistry:
    """A private registry holding only the bus metrics (no process/GC noise)."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return registry


def exporter_filters(manager: str) -> list:
    """Everything under fleet/ and the manager's broadcasts (for round trips)."""
    return [f"{contract.FLEET_PREFIX}/+/+", contract.broadcast_topic(manager)]


def serve(inv: Inventory, bus: BusClient, *, port: int = 9883, addr: str = "127.0.0.1",
          stop: Optional[threading.Event] = None, on_ready=None,
          broker_log: Optional[Path] = None,
          capacity_every: Optional[float] = capacitywatch.EVERY) -> BusMetrics:
    """Feed metrics from the bus (and the broker's log) and serve /metrics until ``stop``;
    the capacity gauges are gathered every ``capacity_every`` seconds (None: not at all)."""
    from hatchery.observe.metrics_http import start_server

    metrics = BusMetrics(inv)
    stop = stop or threading.Event()
    if broker_log:
        threading.Thread(target=follow_log, args=(broker_log, metrics.observe_log_line, stop),
                         daemon=True).start()
    with bus.listen(exporter_filters(inv.manager), metrics.observe, qos=0):
        render = metrics.render
        if capacity_every:
            watch = capacitywatch.CapacityWatch(inv, metrics.state, capacity_every)
            watch.start(stop)
            render = lambda: metrics.render() + watch.render()   # noqa: E731
        server, thread = start_server(port, addr, render)
        try:
            if on_ready:
                on_ready(server.server_address)
            stop.wait()
        finally:
            server.shutdown()
            thread.join(5)
    return metrics


def follow_log(path: Path, on_line, stop: threading.Event, poll: float = 1.0) -> None:
    """``tail -F`` lite: feed new lines of ``path`` to ``on_line`` until ``stop``."""
    position = path.stat().st_size if path.exists() else 0
    while not stop.wait(poll):
        if not path.exists():
            continue
        if path.stat().st_size < position:
            position = 0   # rotated or truncated
        with path.open("r", errors="replace") as log:
            log.seek(position)
            for line in log:
                on_line(line)
            position = log.tell()


def render_rules(*, stale_factor: float = 2.0, alert_rate_per_min: float = 5.0,
                 auth_failures_per_5m: float = 3.0, for_duration: str = "5m",
                 full_within_days: float = 7.0, growth_window: str = "6h",
                 inventory=None) -> str:
    """The Prometheus recording and alerting rules (templates/prometheus/rules.yml.j2);
    a host is "full soon" when ``predict_linear`` over ``growth_window`` puts it past its
    headroom within ``full_within_days``."""
    return render(RULES_TEMPLATE, {"stale_factor": stale_factor,
                                   "alert_rate_per_min": alert_rate_per_min,
                                   "auth_failures_per_5m": auth_failures_per_5m,
                                   "for_duration": for_duration,
                                   "full_within_s": int(full_within_days * 86400),
                                   "full_within_days": f"{full_within_days:g}",
                                   "growth_window": growth_window}, inventory=inventory)
