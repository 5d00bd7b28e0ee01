"""A Prometheus exporter fed from the bus (Phase 3 of the ADR).

``BusMetrics`` folds bus messages into per-agent state (``observe``) and is a
prometheus_client custom collector (``collect``), so every scrape reads the
state as it is at that moment. Stale series are the classic failure of
MQTT exporters: when an agent goes offline (its Will, or a clean goodbye) we
stop exporting its heartbeat-derived series and keep only ``up 0`` and its
last-seen time.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from agent_kit import contract
from hatchery.bus.client import BusClient, Message
from hatchery.core.render import render
from hatchery.inventory.model import Inventory

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

RULES_TEMPLATE = "prometheus/rules.yml.j2"
# Alert codes the agents raise when they drop a command that broke the contract
# (agent_kit.handler sends "dropped-message").
DROP_PREFIXES = ("dropped", "bad-command", "unknown-verb", "oversized", "not-json")
HEAL_PREFIX = "heal-"    # alert codes of fleet.heal (operate.heal.CODES) on fleet/{manager}/alert
# Mosquitto 2.0 logs this (connection_messages true) when it refuses a login.
AUTH_FAILURE_MARK = "not authorised"
PENDING_LIMIT = 10000   # commands awaiting a reply we remember, at most
CODES_PER_AGENT = 32    # distinct alert codes exported per agent; the rest count as OTHER_CODE
OTHER_CODE = "other"


@dataclass
class AgentState:
    online: Optional[bool] = None       # None: no retained state seen
    last_seen: Optional[float] = None   # wall time of the last message from it
    beat_ts: Optional[float] = None     # heartbeat's own ts, epoch seconds
    heartbeat: dict = field(default_factory=dict)
    rtt: Optional[float] = None         # last command round trip, seconds


class BusMetrics:
    """Bus messages in (``observe``), Prometheus metric families out (``collect``)."""

    def __init__(self, inv: Inventory, clock=time.time):
        self.inv, self.clock = inv, clock
        self.lock = threading.Lock()
        self.agents: dict = {n: AgentState() for n in inv.agents}
        self.messages: dict = {}        # kind -> count
        self.invalid: dict = {}         # kind -> count
        self.alerts: dict = {}          # (agent, code) -> count
        self.dropped: dict = {}         # agent -> dropped bad commands
        self.heals: dict = {}           # (agent, action) -> fleet.heal actions
        self.commands: dict = {}        # command id -> wall time first seen
        self.auth_failures = 0          # from the broker's log, when we are given it
        self.broadcast_topic = contract.broadcast_topic(inv.manager)
        self.bad_series: dict = {}      # agent -> scrapes that left out its series

    # --- input ------------------------------------------------------------------

    def observe(self, message: Message) -> None:
        kind, agent = self._route(message.topic)
        if kind is None or not message.payload:
            return
        with self.lock:
            self.messages[kind] = self.messages.get(kind, 0) + 1
            try:
                payload = contract.decode(message.payload)
                self._fold(kind, agent, payload, message.received)
            except contract.ContractError:
                self.invalid[kind] = self.invalid.get(kind, 0) + 1

    def observe_log_line(self, line: str) -> None:
        """Count refused logins in a Mosquitto log line (the bus never carries them)."""
        if AUTH_FAILURE_MARK in line:
            with self.lock:
                self.auth_failures += 1

    def _route(self, topic: str) -> tuple:
        if topic == self.broadcast_topic:
            return "command", None
        parsed = contract.parse_topic(topic)
        return (parsed[1], parsed[0]) if parsed else (None, None)

    def _fold(self, kind: str, agent: Optional[str], payload: dict, at: float) -> None:
        if kind == "command":
            self._remember_command(contract.validate_command(payload), at)
            return
        if agent == self.inv.manager:
            self._fold_manager(kind, payload)
            return
        state = self.agents.setdefault(agent, AgentState())
        if kind == "heartbeat":
            contract.check_schema(payload, contract.HEARTBEAT_SCHEMA)
            state.heartbeat = payload
            state.beat_ts = _agent_time(payload["ts"], at)
            state.last_seen = max(state.last_seen or 0, state.beat_ts)
            state.online = True if state.online is None else state.online
        elif kind == "alert":
            self._count_alert(agent, contract.check_schema(payload, contract.ALERT_SCHEMA))
        else:
            self._fold_status(state, payload, at)

    def _fold_status(self, state: AgentState, payload: dict, at: float) -> None:
        status = contract.classify_status(payload)
        if status == "state":
            contract.check_schema(payload, contract.STATE_SCHEMA)
            state.online = payload["state"] == contract.STATE_ONLINE
            state.last_seen = max(state.last_seen or 0, _agent_time(payload["ts"], at))
        elif status == "reply":
            contract.check_schema(payload, contract.REPLY_SCHEMA)
            state.last_seen = at
            sent = self.commands.get(payload["id"])
            if sent is not None:
                state.rtt = max(0.0, at - sent)

    def _fold_manager(self, kind: str, payload: dict) -> None:
        """fleet/{manager}/alert carries fleet.heal's actions, each naming the healed agent."""
        if kind != "alert":
            return
        alert = contract.validate_alert(payload)
        if alert["code"].startswith(HEAL_PREFIX) and alert["agent"] in self.inv.agents:
            key = (alert["agent"], alert["code"][len(HEAL_PREFIX):])
            self.heals[key] = self.heals.get(key, 0) + 1

    def _remember_command(self, command: dict, at: float) -> None:
        if len(self.commands) >= PENDING_LIMIT:   # forget the oldest half
            for key in list(self.commands)[: PENDING_LIMIT // 2]:
                del self.commands[key]
        self.commands.setdefault(command["id"], at)

    def _count_alert(self, agent: str, alert: dict) -> None:
        key = (agent, alert["code"])
        if key not in self.alerts and sum(1 for a, _ in self.alerts if a == agent) >= CODES_PER_AGENT:
            key = (agent, OTHER_CODE)   # one agent cannot mint unbounded series
        self.alerts[key] = self.alerts.get(key, 0) + 1
        if alert["code"].startswith(DROP_PREFIXES):
            # The agent's alerts are rate limited and carry its running total of
            # drops in ``count``: export that total (it resets when the agent
            # restarts, which Prometheus counters handle).
            self.dropped[agent] = alert.get("count", self.dropped.get(agent, 0) + 1)

    # --- output -----------------------------------------------------------------

    def describe(self) -> list:
        return []   # families depend on the agents seen; no fixed description

    def collect(self):
        with self.lock:
            yield from self._agent_families(self.clock())
            yield from self._bus_families()

    def _agent_families(self, now: float):
        from prometheus_client.core import GaugeMetricFamily  # only when serving
        up = GaugeMetricFamily("hatchery_agent_up", "1 while the agent's retained state is "
                               "online (0 after its Last Will)", labels=["agent"])
        seen = GaugeMetricFamily("hatchery_agent_last_seen_timestamp_seconds",
                                 "Time of the agent's last message", labels=["agent"])
        interval = GaugeMetricFamily("hatchery_agent_heartbeat_interval_seconds",
                                     "Expected heartbeat interval (inventory)", labels=["agent"])
        live = _live_families()
        families = {"up": up, "seen": seen, "interval": interval, **live}
        for name, state in self.agents.items():
            # One agent's values are checked as a whole before any is added: a
            # value that cannot be exported costs that agent its series (counted
            # in hatchery_exporter_dropped_series), never the whole scrape.
            try:
                samples = self._agent_samples(name, state, now)
            except (ArithmeticError, ValueError, TypeError):
                self.bad_series[name] = self.bad_series.get(name, 0) + 1
                continue
            for key, labels, value in samples:
                families[key].add_metric(labels, value)
        yield from (up, seen, interval, *live.values())

    def _agent_samples(self, name: str, state: AgentState, now: float) -> list:
        samples = [("up", [name], 1.0 if state.online else 0.0)]
        spec = self.inv.agents.get(name)
        if spec is not None:
            samples.append(("interval", [name], float(spec.heartbeat_interval)))
        if state.last_seen is not None:
            samples.append(("seen", [name], state.last_seen))
        if state.online:   # closed on offline: never export a dead agent's last values
            samples += _live_samples(name, state, now)
        return [(key, labels, _finite(value)) for key, labels, value in samples]

    def _bus_families(self):
        from prometheus_client.core import CounterMetricFamily
        messages = CounterMetricFamily("hatchery_bus_messages", "Bus messages seen, by kind",
                                       labels=["kind"])
        for kind, count in sorted(self.messages.items()):
            messages.add_metric([kind], count)
        invalid = CounterMetricFamily("hatchery_bus_invalid_messages",
                                      "Messages that broke the contract, by kind", labels=["kind"])
        for kind, count in sorted(self.invalid.items()):
            invalid.add_metric([kind], count)
        alerts = CounterMetricFamily("hatchery_bus_alerts", "Alerts raised by agents",
                                     labels=["agent", "code"])
        for (agent, code), count in sorted(self.alerts.items()):
            alerts.add_metric([agent, code], count)
        dropped = CounterMetricFamily("hatchery_agent_dropped_commands",
                                      "Bad commands agents dropped (their running total, "
                                      "from their rate-limited alerts)",
                                      labels=["agent"])
        for agent, count in sorted(self.dropped.items()):
            dropped.add_metric([agent], count)
        auth = CounterMetricFamily("hatchery_broker_auth_failures",
                                   "Logins the broker refused (from its log)")
        auth.add_metric([], self.auth_failures)
        bad = CounterMetricFamily("hatchery_exporter_dropped_series",
                                  "Scrapes that left out an agent's series because a value "
                                  "could not be exported", labels=["agent"])
        for agent, count in sorted(self.bad_series.items()):
            bad.add_metric([agent], count)
        heals = CounterMetricFamily("hatchery_heal_actions",
                                    "fleet.heal actions on an agent (restart, failed, gave-up)",
                                    labels=["agent", "action"])
        for (agent, action), count in sorted(self.heals.items()):
            heals.add_metric([agent, action], count)
        yield from (messages, invalid, alerts, dropped, auth, bad, heals)


def _live_families() -> dict:
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name, doc, labels=("agent",)):
        return GaugeMetricFamily(name, doc, labels=list(labels))
    return {
        "age": gauge("hatchery_agent_heartbeat_age_seconds", "Seconds since the last heartbeat"),
        "uptime": gauge("hatchery_agent_uptime_seconds", "Agent uptime from its heartbeat"),
        "mem": gauge("hatchery_agent_memory_bytes", "Agent memory from its heartbeat"),
        "cpu": gauge("hatchery_agent_cpu", "Agent CPU use from its heartbeat"),
        "errors": gauge("hatchery_agent_errors", "Error counts from the agent's heartbeat",
                        ("agent", "code")),
        "rtt": gauge("hatchery_agent_command_rtt_seconds", "Last command round trip seen"),
    }


def _live_samples(name: str, state: AgentState, now: float) -> list:
    beat, samples = state.heartbeat, []
    if state.beat_ts is not None:
        samples.append(("age", [name], max(0.0, now - state.beat_ts)))
    if "uptime" in beat:
        samples.append(("uptime", [name], float(beat["uptime"])))
    if "mem_kb" in beat:
        samples.append(("mem", [name], float(beat["mem_kb"]) * 1024))
    if "cpu" in beat:
        samples.append(("cpu", [name], float(beat["cpu"])))
    for code, count in sorted((beat.get("errors") or {}).items()):
        if isinstance(count, (int, float)) and not isinstance(count, bool):
            samples.append(("errors", [name, str(code)], float(count)))
    if state.rtt is not None:
        samples.append(("rtt", [name], state.rtt))
    return samples


def _finite(value) -> float:
    """``value`` as a finite float; ValueError otherwise (OverflowError for huge ints)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _agent_time(ts: str, received: float) -> float:
    """An agent's timestamp, never later than when we received it plus the slack:
    a heartbeat dated in the future must go stale like any other."""
    return min(contract.parse_rfc3339(ts).timestamp(), received + contract.FUTURE_SLACK_S)


def registry_for(metrics: BusMetrics) -> CollectorRegistry:
    """A private registry holding only the bus metrics (no process/GC noise)."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return registry


def exporter_filters(manager: str) -> list:
    return [f"{contract.FLEET_PREFIX}/+/+", contract.broadcast_topic(manager)]


def serve(inv: Inventory, bus: BusClient, *, port: int = 9883, addr: str = "127.0.0.1",
          stop: Optional[threading.Event] = None, on_ready=None,
          broker_log: Optional[Path] = None) -> BusMetrics:
    """Feed metrics from the bus (and the broker's log) and serve /metrics until ``stop``."""
    from prometheus_client import start_http_server

    metrics = BusMetrics(inv)
    stop = stop or threading.Event()
    if broker_log:
        threading.Thread(target=follow_log, args=(broker_log, metrics.observe_log_line, stop),
                         daemon=True).start()
    with bus.listen(exporter_filters(inv.manager), metrics.observe, qos=0):
        server, thread = start_http_server(port, addr, registry_for(metrics))
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
                 inventory=None) -> str:
    """The Prometheus alerting rules (templates/prometheus/rules.yml.j2)."""
    return render(RULES_TEMPLATE, {"stale_factor": stale_factor,
                                   "alert_rate_per_min": alert_rate_per_min,
                                   "auth_failures_per_5m": auth_failures_per_5m,
                                   "for_duration": for_duration}, inventory=inventory)
