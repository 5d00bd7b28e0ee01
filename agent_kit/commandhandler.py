"""CommandHandler: what answers the fleet's commands inside every agent.

It listens on ``fleet/{name}/command`` and ``{manager}/broadcast``, answers the
four verbs of the contract on ``fleet/{name}/status`` and drops everything else,
counted by reason and reported on ``fleet/{name}/alert`` at a limited rate, never
echoed. It keeps a retained heartbeat and a retained online/offline state (birth
on connect, Last Will on a crash, explicit offline on a clean stop).

Slow verbs (version-report, config-reload) run on a worker thread so that the
paho network thread never blocks. The process around it (command line, the
one-handler lock, signals) is ``agent_kit.handler``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import queue
import threading
import time
from collections import OrderedDict

import paho.mqtt.client as mqtt

from . import __version__, actions, bus, contract, signing
from .alerts import DropAlerts
from .config import AgentConfig
from .metrics import Counters, CpuMeter, rss_kb
from .versionprobe import VersionProbe

log = logging.getLogger("agent_kit.handler")   # the handler's one logger (versionprobe writes to it too)

DROPPED = "dropped:"   # counter prefix: dropped:not-json, dropped:unknown-verb, ...
WORKERS = 2
QUEUE_SIZE = 64
TICK = 0.5             # housekeeping period: heartbeat due? suppressed alerts to flush?


class RecentIds:
    """The last few command ids, so a QoS 1 redelivery is not answered twice."""

    def __init__(self, size: int = 1024):
        self._ids: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, command_id: str) -> bool:
        with self._lock:
            return command_id in self._ids

    def add(self, command_id: str) -> bool:
        """True if the id is new."""
        with self._lock:
            if command_id in self._ids:
                return False
            self._ids[command_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


class CommandHandler:
    """The handler's core; many can run in one process (tests, benchmarks)."""

    def __init__(self, config: AgentConfig, *, password: str | None = None,
                 keys: dict | None = None, replay_file: str | None = None):
        """``password`` and ``keys`` ({"command": bytes, "broadcast": bytes}) default
        to what the config's files hold; with a key, unsigned commands are refused.
        ``replay_file``: where the replay cache persists across restarts (None: memory)."""
        self.config = config
        self._password = config.password() if password is None else password
        keys = keys if keys is not None else {"command": config.signing_key(),
                                              "broadcast": config.broadcast_key()}
        self._keys = {k: v for k, v in keys.items() if v}
        self._replays = signing.ReplayCache(path=replay_file if self._keys else None)
        self.name = config.name
        self.counters = Counters()
        self.started = time.monotonic()
        self.connected_since: str | None = None
        self.last_command: str | None = None
        self._cpu = CpuMeter()
        self._alerts = DropAlerts(config.alert_interval)
        self._seen = RecentIds()
        self._jobs: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._next_heartbeat = 0.0
        self._threads: list = []
        # the version heartbeats carry; when it changes, the next housekeeping tick tells
        self.versions = VersionProbe(config.name, config.version_command, config.command_timeout,
                                     on_change=self._beat_soon)
        self.topics = {kind: contract.topic(config.name, kind) for kind in contract.KINDS}
        self.broadcast = contract.broadcast_topic(config.manager)
        self.client = self._make_client()
        self._slow = {"version-report": self._version_report,
                      "config-reload": self._config_reload}
        self._fast = {"health-check": self._health_check,
                      "status-report": self._status_report}

    # --- lifecycle ----------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        will = contract.encode(self._state(contract.STATE_OFFLINE))
        client = bus.new_client(self.config.client_id, will=(self.topics["status"], will),
                                username=self.config.username, password=self._password,
                                ca_file=self.config.ca_file, reconnect_max=self.config.reconnect_max)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _state(self, state: str) -> dict:
        """Birth, Will or goodbye, naming this start's instance (when the runtime gave one)."""
        return contract.make_state(self.name, state, self.config.instance)

    def start(self) -> None:
        """Start workers and housekeeping, then connect (and reconnect) in the background."""
        for index in range(WORKERS):
            self._spawn(self._work, f"worker-{index}")
        self._spawn(self._housekeeping, "housekeeping")
        self.versions.refresh()
        bus.connect_in_background(self.client, self.config.broker_host, self.config.broker_port,
                                  keepalive=self.config.keepalive,
                                  session_expiry=self.config.session_expiry)

    def _spawn(self, target, role: str) -> None:
        thread = threading.Thread(target=target, name=f"{self.name}-{role}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 3.0) -> None:
        """Clean stop: retained offline state, DISCONNECT (so no Will), threads joined."""
        self._stopping.set()
        self.versions.stop()
        if self._connected.is_set():
            offline = contract.encode(self._state(contract.STATE_OFFLINE))
            try:
                bus.publish_and_wait(self.client, self.topics["status"], offline,
                                     retain=True, timeout=timeout)
            except bus.BusError as exc:
                log.warning("%s: offline state not confirmed: %s", self.name, exc)
        self.client.disconnect()
        self.client.loop_stop()
        for _ in range(WORKERS):
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)
        log.info("%s: stopped", self.name)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- paho callbacks (network thread: never block here) --------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.name, reason_code)
            return
        # subscriptions live in the session, but a fresh session has none: always ask
        client.subscribe([(self.topics["command"], 1), (self.broadcast, 1)])
        birth = self._state(contract.STATE_ONLINE)
        client.publish(self.topics["status"], contract.encode(birth), qos=1, retain=True)
        self.connected_since = contract.now_rfc3339()
        self._connected.set()
        self._publish_heartbeat()
        log.info("%s: connected to %s:%s (session present: %s)", self.name,
                 self.config.broker_host, self.config.broker_port, flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("%s: disconnected (%s); reconnecting", self.name, reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        self.handle_message(message.topic, message.payload, message.retain, message.dup,
                            bus.received_properties(message.properties))

    # --- commands -------------------------------------------------------------------

    def handle_message(self, topic: str, payload: bytes, retained: bool = False,
                       redelivery: bool = False, properties: dict | None = None) -> None:
        """Validate one message and answer it, queue it, or drop it.

        ``redelivery``: the broker's DUP flag (a QoS 1 resend after a reconnect).
        ``properties``: its MQTT v5 properties by name (contract.ALLOWED_PROPERTIES).
        """
        self.counters.add("received")
        try:
            if retained:  # a retained command would re-run on every reconnect
                raise contract.ContractError("retained")
            if properties and contract.disallowed_properties(topic, properties):
                raise contract.ContractError("bad-properties")
            command = contract.parse_command(payload, self.config.max_payload)
            if redelivery and command["id"] in self._seen:
                # The broker resending what we already took (persistent session)
                # is normal, not an attack. A replay by a peer arrives as a fresh
                # publish (no DUP flag): the replay cache catches and alerts it.
                self.counters.add("duplicates")
                return
            self._check_signature(topic, command)
        except contract.ContractError as exc:
            self._drop(exc.reason, topic, payload)
            return
        if not self._seen.add(command["id"]):  # only once authentic: a forgery cannot block an id
            self.counters.add("duplicates")
            return
        self.last_command = contract.now_rfc3339()
        verb = command["verb"]
        if verb in self._fast:
            self._answer(command, self._fast[verb])
        else:
            self._enqueue(command)

    def _check_signature(self, topic: str, command: dict) -> None:
        """With a key for this topic, only an authentic, fresh, new command passes.

        Forged, tampered, stale and replayed commands raise SignatureError
        (a ContractError): dropped, counted by reason and alerted like any other.
        """
        key = self._keys.get("broadcast" if topic == self.broadcast else "command")
        if key is not None:
            signing.verify_command(command, key, seen=self._replays)

    def _answer(self, command: dict, action) -> None:
        try:
            result = action()
        except actions.ActionError as exc:
            self._reply(command, ok=False, error=exc.code)
            self.counters.add("failed")
            return
        self._reply(command, ok=True, result=result)

    def _enqueue(self, command: dict) -> None:
        try:
            self._jobs.put_nowait(command)
        except queue.Full:  # refuse rather than block the network thread
            self._reply(command, ok=False, error="busy")
            self.counters.add("failed")

    def _work(self) -> None:
        while True:
            command = self._jobs.get()
            if command is None:
                return
            self._answer(command, self._slow[command["verb"]])

    def _reply(self, command: dict, ok: bool, result: dict | None = None,
               error: str | None = None) -> None:
        reply = contract.make_reply(self.name, command, ok, result, error, self.config.instance)
        self.counters.add("answered")  # before the publish: a reader of the reply sees it
        self.client.publish(self.topics["status"], contract.encode(reply), qos=1)
        log.info("%s: %s %s answered ok=%s", self.name, command["verb"], command["id"], ok)

    # --- the four verbs -----------------------------------------------------------------

    def _health_check(self) -> dict:
        beat = self._publish_heartbeat()
        return {k: v for k, v in beat.items() if k not in ("v", "ts", "agent")}

    def _version_report(self) -> dict:
        line = actions.version(self.config.version_command, self.config.command_timeout)
        self.versions.set_from(line)
        return {"version": line}

    def _config_reload(self) -> dict:
        method = actions.reload(self.config.reload, self.config.command_timeout)
        self.versions.refresh()     # a reload may have brought a new version of the agent
        return {"reloaded": True, "method": method}

    def _status_report(self) -> dict:
        """Operational status only: counters and times, nothing about the agent's work."""
        status = {
            "uptime": self.uptime(), "pid": os.getpid(), "handler_version": __version__,
            "python": platform.python_version(), "counters": self.counter_report(),
            "last_command": self.last_command, "connected_since": self.connected_since,
            "heartbeat_interval": self.config.heartbeat_interval,
            "mem_kb": rss_kb(),
        }
        return {k: v for k, v in status.items() if v is not None}

    def counter_report(self) -> dict:
        counts = self.counters.snapshot()
        names = ("received", "answered", "failed", "duplicates", "alerts")
        report = {name: counts.get(name, 0) for name in names}
        report["dropped"] = self.counters.with_prefix(DROPPED)
        return report

    def uptime(self) -> int:
        return int(time.monotonic() - self.started)

    # --- heartbeat --------------------------------------------------------------------

    def heartbeat(self) -> dict:
        dropped = sum(self.counters.with_prefix(DROPPED).values())
        return contract.make_heartbeat(
            self.name, True, self.uptime(), mem_kb=rss_kb(), cpu=self._cpu.sample(),
            errors={"dropped": dropped, "failed": self.counters.get("failed")},
            interval=self.config.heartbeat_interval, version=self.versions.slug,
            instance=self.config.instance)

    def _publish_heartbeat(self) -> dict:
        # Due again before the beat is read: a version found while it is built (the probe's
        # thread calls _beat_soon) then asks for the next tick. Set after, it was overwritten,
        # and the version waited a whole interval.
        self._next_heartbeat = time.monotonic() + self.config.heartbeat_interval
        beat = self.heartbeat()
        self.client.publish(self.topics["heartbeat"], contract.encode(beat), qos=1, retain=True)
        return beat

    def _beat_soon(self) -> None:
        self._next_heartbeat = 0.0

    def _housekeeping(self) -> None:
        tick = min(TICK, self.config.heartbeat_interval)
        while not self._stopping.wait(tick):
            if self.connected and time.monotonic() >= self._next_heartbeat:
                self._publish_heartbeat()
            summary = self._alerts.flush()
            if summary:
                self._publish_alert(summary)

    # --- drops and alerts -------------------------------------------------------------

    def _drop(self, reason: str, topic: str, payload: bytes) -> None:
        # Never echo a dropped payload: its size and a short digest are enough to match logs.
        self.counters.add(DROPPED + reason)
        digest = hashlib.sha256(payload).hexdigest()[:16]
        fields = self._alerts.note(reason, len(payload), digest, topic)
        if fields:
            self._publish_alert(fields)

    def _publish_alert(self, fields: dict) -> None:
        alert = contract.make_alert(self.name, "dropped-message", **fields)
        self.client.publish(self.topics["alert"], contract.encode(alert), qos=1)
        self.counters.add("alerts")
        log.warning("%s: dropped a message on %s (%s, %d bytes, sha256 %s); %d dropped in "
                    "all, %d not alerted", self.name, fields["topic"], fields["reason"],
                    fields["size"], fields["digest"], fields["count"], fields["suppressed"])
