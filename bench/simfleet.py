"""A simulated fleet: many lean agents in a few processes, on the REAL broker.

Each simulated agent is its own MQTT connection speaking the real contract: a
retained ``online`` birth and an ``offline`` Last Will on ``fleet/{name}/status``,
a retained heartbeat on ``fleet/{name}/heartbeat``, and QoS 1 replies (with the
command's id) to commands on its own command topic and on the manager's
broadcast topic; signed commands are verified and replays refused, as the
real handler does. A health-check also refreshes the retained heartbeat.

So that the simulator is never the bottleneck of a benchmark:
- the agents speak MQTT through a lean codec (``LeanAgent``: CONNECT with
  Will and credentials, SUBSCRIBE, PUBLISH/PUBACK at QoS 0/1, PINGREQ; v5 or
  3.1.1) instead of paho, whose pure-Python read path costs several times more;
- every agent of a process shares ONE selector loop;
- the fleet is split over ``--procs`` processes (default: one per 2,500 agents,
  at most the number of CPUs);
- a broadcast's payload is the same bytes for every agent: its decoding and
  signature check are done once per process, the replay check once per agent.

    python bench/simfleet.py --port 1883 --count 1000 --manager zephyr
    # prints one JSON line {"ready": 1000, ...} when every agent is up;
    # SIGTERM (or, with --stop-on-stdin-eof, closing stdin) stops it:
    # a clean goodbye, or with --crash the agents vanish and their Wills fire
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent_kit import contract, signing  # noqa: E402  (after the path tweak, for a plain script)
from agent_kit.config import handler_client_id  # noqa: E402

VERSION = "sim-1.0"
AGENTS_PER_PROCESS = 2500
KEEPALIVE = 120          # seconds; a PINGREQ goes out every KEEPALIVE / 2
# The agents' JSON, as contract.encode writes it (compact, same keys), from
# templates: a json.dumps per message cost the simulator more than the broker
# spent forwarding it. tests/fleet/test_simfleet.py checks them against the contract.
BEAT = ('{"v":%d,"ts":"%s","agent":"%s","ok":true,"uptime":%r,"mem_kb":20480,"cpu":0.1,'
        '"errors":{},"interval":%r,"version":"%s"}')
REPLY = '{"v":%d,"ts":"%s","agent":"%s","kind":"reply","id":"%s","verb":"%s","ok":true,"result":%s}'
RESULTS = {"version-report": '{"version":"%s"}' % VERSION}
CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, DISCONNECT = (
    0x10, 0x20, 0x30, 0x40, 0x82, 0x90, 0xC0, 0xE0)


# --- the MQTT wire format, just what an agent needs -----------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


class Wire:
    """Packet builders for one protocol level (5 = MQTT v5, 4 = 3.1.1)."""

    def __init__(self, level: int):
        self.level = level
        self.props = b"\x00" if level == 5 else b""   # an empty property list

    def connect(self, client_id: str, will: tuple, username: Optional[str],
                password: Optional[str]) -> bytes:
        flags = 0x02 | 0x04 | 0x08 | 0x20            # clean, Will at QoS 1, retained
        tail = self.props + _text(will[0]) + struct.pack("!H", len(will[1])) + will[1]
        if username:
            flags |= 0x80 | (0x40 if password else 0)
            tail += _text(username) + (_text(password) if password else b"")
        body = (_text("MQTT") + bytes([self.level, flags]) + struct.pack("!H", KEEPALIVE)
                + self.props + _text(client_id) + tail)
        return _packet(CONNECT, body)

    def subscribe(self, mid: int, filters: list) -> bytes:
        body = struct.pack("!H", mid) + self.props + b"".join(_text(f) + b"\x01" for f in filters)
        return _packet(SUBSCRIBE, body)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                mid: int = 0) -> bytes:
        head = _text(topic) + (struct.pack("!H", mid) if qos else b"") + self.props
        return _packet(PUBLISH | (qos << 1) | int(retain), head + payload)

    @staticmethod
    def puback(mid: int) -> bytes:
        return b"\x40\x02" + struct.pack("!H", mid)


def split_packets(buffer: bytearray) -> list:
    """Take every complete packet off the front of ``buffer``: [(first byte, body)]."""
    packets, start = [], 0
    while len(buffer) - start >= 2:
        length, multiplier, index = 0, 1, start + 1
        while True:
            if index >= len(buffer):
                del buffer[:start]
                return packets
            byte = buffer[index]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
        if len(buffer) - index < length:
            break
        packets.append((buffer[start], bytes(buffer[index:index + length])))
        start = index + length
    del buffer[:start]
    return packets


def parse_publish(first: int, body: bytes, level: int) -> tuple:
    """(topic, payload, qos, packet id) of a PUBLISH body."""
    qos = (first >> 1) & 3
    (size,) = struct.unpack_from("!H", body)
    topic, at = body[2:2 + size].decode("utf-8"), 2 + size
    mid = 0
    if qos:
        (mid,) = struct.unpack_from("!H", body, at)
        at += 2
    if level == 5:      # skip the properties: their length is a varint
        length, multiplier = 0, 1
        while True:
            byte = body[at]
            at += 1
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            if not byte & 0x80:
                break
        at += length
    return topic, body[at:], qos, mid


# --- one agent ----------------------------------------------------------------------

class LeanAgent:
    """One simulated agent: a non-blocking socket on the fleet's selector loop."""

    def __init__(self, fleet: "SimFleet", name: str, *, silent: bool = False):
        self.fleet, self.name, self.silent = fleet, name, silent
        self.started = time.monotonic()
        self.sock: Optional[socket.socket] = None
        self.inbox, self.outbox = bytearray(), bytearray()
        self.events = selectors.EVENT_READ
        self.ready = False
        self.answered = 0
        self.mid = 0
        self.keys = fleet.keys_for(name)          # {} when auth is off: commands unsigned
        self.replays = signing.ReplayCache()
        self.status_topic = contract.topic(name, "status")
        self.heartbeat_topic = contract.topic(name, "heartbeat")
        self.command_topic = contract.topic(name, "command")

    def _next_mid(self) -> int:
        self.mid = self.mid % 65535 + 1
        return self.mid

    def _state(self, state: str) -> bytes:
        return contract.encode(contract.make_state(self.name, state))

    # --- connection ---------------------------------------------------------------

    def connect(self) -> None:
        password = self.fleet.password_for(self.name)
        sock = socket.create_connection((self.fleet.host, self.fleet.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self.fleet.selector.register(sock, selectors.EVENT_READ, self)
        # the real handler's id: with auth on, derived from the secret (not guessable)
        self.send(self.fleet.wire.connect(
            handler_client_id(self.name, password), (self.status_topic, self._state("offline")),
            self.name if password else None, password))

    def send(self, data: bytes) -> None:
        """Queue ``data``; the fleet's loop writes each agent's queue once per round, so
        an answer (PUBACK, heartbeat, reply) leaves as one write, not three."""
        if self.sock is None:
            return
        if not self.outbox:
            self.fleet.dirty.append(self)
        self.outbox += data

    def flush(self) -> None:
        if self.sock is None or not self.outbox:
            return
        try:
            sent = self.sock.send(self.outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        del self.outbox[:sent]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.outbox else 0)
        if events != self.events:
            self.events = events
            self.fleet.selector.modify(self.sock, events, self)

    def close(self) -> None:
        if self.sock is not None:
            self.fleet.selector.unregister(self.sock)
            self.sock.close()
            self.sock = None

    def readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                self.close()
            return
        if not data:
            self.close()
            return
        self.inbox += data
        for first, body in split_packets(self.inbox):
            self._handle(first, body)

    def _handle(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBLISH:
            topic, payload, qos, mid = parse_publish(first, body, self.fleet.wire.level)
            if qos:
                self.send(Wire.puback(mid))
            self.on_command(topic, payload)
        elif kind == CONNACK and body[1] == 0:
            self._born()
        elif kind == SUBACK and not self.ready:
            self.ready = True
            self.fleet.agent_ready()

    def _born(self) -> None:
        wire = self.fleet.wire
        self.send(wire.subscribe(self._next_mid(), [self.command_topic,
                                                    contract.broadcast_topic(self.fleet.manager)]))
        self.send(wire.publish(self.status_topic, self._state("online"), retain=True,
                               mid=self._next_mid()))
        self.heartbeat()

    # --- the contract -------------------------------------------------------------

    def heartbeat(self) -> None:
        beat = BEAT % (contract.SCHEMA_VERSION, self.fleet.now(), self.name,
                       round(time.monotonic() - self.started, 1), float(self.fleet.interval),
                       VERSION)
        self.send(self.fleet.wire.publish(self.heartbeat_topic, beat.encode(),
                                          retain=True, mid=self._next_mid()))

    def on_command(self, topic: str, payload: bytes) -> None:
        scope = "broadcast" if topic.endswith("/broadcast") else "command"
        command = self.fleet.checked_command(payload, self.keys.get(scope))
        if command is None or self.silent:
            return      # a real agent would raise an alert; the simulation just drops it
        if self.keys.get(scope) and not self._fresh_and_new(command):
            return
        if command["verb"] == "health-check":
            self.heartbeat()
        # id and verb were checked (COMMAND_ID_RE, VERBS): nothing in them needs escaping
        result = RESULTS.get(command["verb"], "{}")
        reply = REPLY % (contract.SCHEMA_VERSION, self.fleet.now(), self.name, command["id"],
                         command["verb"], result)
        self.send(self.fleet.wire.publish(self.status_topic, reply.encode(),
                                          mid=self._next_mid()))
        self.answered += 1

    def _fresh_and_new(self, command: dict) -> bool:
        """Per agent, like the real handler: inside the window and never seen before
        (the signature was checked once per process; the window is checked again
        here because that check's verdict is cached)."""
        sent, now = contract.parse_rfc3339(command["ts"]).timestamp(), time.time()
        if abs(now - sent) > signing.DEFAULT_WINDOW or command["id"] in self.replays:
            return False
        self.replays.add(command["id"], expires=sent + signing.DEFAULT_WINDOW, now=now)
        return True

    def goodbye(self, clear: bool) -> None:
        wire = self.fleet.wire
        if clear:
            for topic in (self.status_topic, self.heartbeat_topic):
                self.send(wire.publish(topic, b"", retain=True, mid=self._next_mid()))
        else:
            self.send(wire.publish(self.status_topic, self._state("offline"), retain=True,
                                   mid=self._next_mid()))
        self.send(b"\xe0\x00" if wire.level == 4 else b"\xe0\x01\x00")


class SimFleet:
    """Many LeanAgents on one selector loop (one process's share of the fleet)."""

    def __init__(self, host: str, port: int, names: list, *, manager: str,
                 silent: int = 0, interval: float = 600.0, secrets_dir: Optional[Path] = None,
                 verify: bool = True, level: int = 5, silent_names: Optional[set] = None):
        self.host, self.port, self.manager, self.interval = host, port, manager, interval
        self.secrets_dir = Path(secrets_dir) if secrets_dir else None
        self.verify = verify
        self.wire = Wire(level)
        self.selector = selectors.DefaultSelector()
        self.stop_event = threading.Event()
        self.ready_count = 0
        self.all_ready = threading.Event()
        mute = silent_names if silent_names is not None else set(names[:silent])
        self.dirty: list = []            # agents with bytes queued since the last flush
        self._now: Optional[str] = None
        self.agents = [LeanAgent(self, n, silent=n in mute) for n in names]
        self._checked: dict = {}          # (payload, key) -> command or None

    # --- credentials (hatchery's state-dir layout: NAME.password, NAME.sigkey) ------

    def _read(self, file_name: str) -> Optional[str]:
        if self.secrets_dir is None:
            return None
        try:
            return (self.secrets_dir / file_name).read_text().strip() or None
        except FileNotFoundError:
            return None

    def password_for(self, name: str) -> Optional[str]:
        return self._read(f"{name}.password")

    def keys_for(self, name: str) -> dict:
        if not self.verify:
            return {}
        found = {"command": self._read(f"{name}.sigkey"), "broadcast": self._read("_broadcast.sigkey")}
        return {k: bytes.fromhex(v) for k, v in found.items() if v}

    def checked_command(self, payload: bytes, key: Optional[bytes]) -> Optional[dict]:
        """The valid (and, with a key, authentic and fresh) command, or None.

        Cached by payload: a broadcast reaches every agent of this process as
        the same bytes, so it is decoded and its signature checked once.
        """
        cache_key = (payload, key)
        if cache_key not in self._checked:
            if len(self._checked) > 256:
                self._checked.clear()
            self._checked[cache_key] = _check_command(payload, key)
        return self._checked[cache_key]

    def agent_ready(self) -> None:
        self.ready_count += 1
        if self.ready_count == len(self.agents):
            self.all_ready.set()

    # --- running ------------------------------------------------------------------

    def connect_all(self, batch: int = 100) -> None:
        """Connect every agent, serving the loop between batches so CONNACKs flow."""
        for i, agent in enumerate(self.agents):
            agent.connect()
            if i % batch == batch - 1:
                self.poll(0)

    def run(self, *, heartbeat_every: Optional[float] = None) -> None:
        """Serve every agent until ``stop_event`` is set."""
        next_ping = time.monotonic() + KEEPALIVE / 2
        next_beat = time.monotonic() + (heartbeat_every or 0)
        while not self.stop_event.is_set():
            self.poll(0.1)
            now = time.monotonic()
            if now >= next_ping:
                for agent in self.agents:
                    agent.send(b"\xc0\x00")
                next_ping = now + KEEPALIVE / 2
            if heartbeat_every and now >= next_beat:
                for agent in self.agents:
                    agent.heartbeat()
                next_beat = now + heartbeat_every

    def now(self) -> str:
        """The time for the messages of this round of the loop (one clock read per round)."""
        if self._now is None:
            self._now = contract.now_rfc3339()
        return self._now

    def poll(self, timeout: float) -> None:
        events_ready = self.selector.select(timeout)
        self._now = None
        for key, events in events_ready:
            agent = key.data
            if events & selectors.EVENT_READ:
                agent.readable()
            if events & selectors.EVENT_WRITE and agent not in self.dirty:
                agent.flush()
        self.flush()

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for agent in dirty:
            agent.flush()

    def shutdown(self, *, crash: bool = False, clear: bool = False) -> None:
        """Clean goodbye (retained offline, DISCONNECT), or vanish so the Wills fire."""
        for agent in self.agents:
            if crash:
                agent.close()
            else:
                agent.goodbye(clear)
        self._drain(2.0)
        for agent in self.agents:
            agent.close()

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(a.outbox for a in self.agents if a.sock):
            self.poll(0.05)
        time.sleep(0.05)     # let the broker read the last packets before we close


def _check_command(payload: bytes, key: Optional[bytes]) -> Optional[dict]:
    try:
        command = contract.parse_command(payload)
        if key:   # the same check as the real handler; the replay check is per agent
            signing.verify_command(command, key, seen=signing.ReplayCache())
    except contract.ContractError:
        return None
    return command


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards ``needed`` (up to the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed) if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def names_for(prefix: str, count: int) -> list:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def default_procs(count: int) -> int:
    return max(1, min(os.cpu_count() or 1, -(-count // AGENTS_PER_PROCESS)))


# --- processes ------------------------------------------------------------------------

def run_shard(args, names: list, silent_names: set) -> int:
    """Serve ``names`` in this process; print one ready line; run until stopped."""
    raise_fd_limit(len(names) + 256)
    fleet = SimFleet(args.host, args.port, names, manager=args.manager,
                     secrets_dir=args.secrets_dir, verify=not args.unsigned,
                     level=args.mqtt_level, silent_names=silent_names)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: fleet.stop_event.set())
    if args.stop_on_stdin_eof:
        threading.Thread(target=_stop_on_stdin_close, args=(fleet.stop_event,),
                         daemon=True).start()
    started = time.perf_counter()
    fleet.connect_all()
    while not fleet.all_ready.is_set() and time.perf_counter() - started < args.ready_timeout:
        fleet.poll(0.05)
    print(json.dumps({"ready": fleet.ready_count, "count": len(names), "pid": os.getpid(),
                      "seconds": round(time.perf_counter() - started, 3)}), flush=True)
    fleet.run(heartbeat_every=args.heartbeat_every)
    fleet.shutdown(crash=args.crash, clear=args.clear)
    return 0 if fleet.ready_count == len(names) else 1


def run_parent(args, argv: list) -> int:
    """Start one shard process per slice, report one ready line, stop them together."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.stop_on_stdin_eof:
        threading.Thread(target=_stop_on_stdin_close, args=(stop,), daemon=True).start()
    started = time.perf_counter()
    # --stop-on-stdin-eof: a shard stops when this process dies, however it dies
    shards = [subprocess.Popen([sys.executable, __file__, *argv, "--shard", f"{i}/{args.procs}",
                                "--stop-on-stdin-eof"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
              for i in range(args.procs)]
    lines = [json.loads(s.stdout.readline() or "{}") for s in shards]
    ready = sum(line.get("ready", 0) for line in lines)
    print(json.dumps({"ready": ready, "count": args.count, "procs": args.procs,
                      "pids": [s.pid for s in shards],
                      "seconds": round(time.perf_counter() - started, 3)}), flush=True)
    while not stop.wait(0.2) and all(s.poll() is None for s in shards):
        pass
    for shard in shards:
        if shard.poll() is None:
            shard.send_signal(signal.SIGTERM)
    for shard in shards:
        try:
            shard.wait(15)
        except subprocess.TimeoutExpired:
            shard.kill()
            shard.wait(5)
    return 0 if ready == args.count else 1


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--prefix", default="sim")
    parser.add_argument("--manager", default="zephyr")
    parser.add_argument("--silent", type=int, default=0, help="agents that never answer")
    parser.add_argument("--heartbeat-every", type=float, default=None)
    parser.add_argument("--crash", action="store_true", help="on exit vanish: Wills fire")
    parser.add_argument("--clear", action="store_true", help="on exit clear retained messages")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--secrets-dir", type=Path, default=None,
                        help="log in and verify signed commands with the credentials in this "
                             "hatchery state directory's secrets/ (auth on)")
    parser.add_argument("--unsigned", action="store_true",
                        help="with --secrets-dir: log in, but accept unsigned commands")
    parser.add_argument("--mqtt", choices=("5", "3.1.1"), default="5", help="protocol version")
    parser.add_argument("--procs", type=int, default=None,
                        help=f"processes (default: one per {AGENTS_PER_PROCESS} agents, "
                             "at most the CPU count)")
    parser.add_argument("--shard", default=None, help=argparse.SUPPRESS)   # I/N, internal
    parser.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="stop when stdin closes (a parent process holds it)")
    args = parser.parse_args(argv)
    args.mqtt_level = 5 if args.mqtt == "5" else 4
    args.procs = max(1, min(args.procs or default_procs(args.count), args.count))
    names = names_for(args.prefix, args.count)
    silent = set(names[:args.silent])
    if args.shard:
        index, total = (int(x) for x in args.shard.split("/"))
        return run_shard(args, names[index::total], silent)
    if args.procs == 1:
        return run_shard(args, names, silent)
    return run_parent(args, argv)


def _stop_on_stdin_close(stop: threading.Event) -> None:
    # The parent (a bench or a test) holds our stdin; when it dies, we stop.
    try:
        sys.stdin.read()
    except (OSError, ValueError):
        return
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
