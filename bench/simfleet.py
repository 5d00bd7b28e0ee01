"""A simulated fleet: many lightweight agents in one process, on the REAL broker.

Each simulated agent is a real paho client speaking the real contract: a
retained ``online`` birth and ``offline`` Last Will on ``fleet/{name}/status``,
a retained heartbeat on ``fleet/{name}/heartbeat``, and replies (with the
command's id) to commands on its own command topic and on the manager's
broadcast topic. A health-check also refreshes the retained heartbeat.

A thousand agents do not get a thousand threads: every client runs on ONE
selector loop through paho's external-loop API (``loop_read``,
``loop_write``, ``loop_misc`` and the socket register/unregister callbacks).

    python bench/simfleet.py --port 1883 --count 1000 --manager zephyr
    # prints one JSON line {"ready": 1000, ...} when every agent is up;
    # SIGTERM (or, with --stop-on-stdin-eof, closing stdin) stops it:
    # a clean goodbye, or with --crash the agents vanish and their Wills fire
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent_kit import contract, signing  # noqa: E402  (after the path tweak, for a plain script)
from agent_kit.config import handler_client_id  # noqa: E402

VERSION = "sim-1.0"


class SimAgent:
    """One simulated agent; all of its callbacks run on the fleet's loop thread."""

    def __init__(self, fleet: "SimFleet", name: str, *, silent: bool = False):
        self.fleet, self.name, self.silent = fleet, name, silent
        self.started = time.monotonic()
        self.ready = False
        self.answered = 0
        self.keys = fleet.keys_for(name)          # {} when auth is off: commands unsigned
        self.replays = signing.ReplayCache()
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        password = self.fleet.password_for(self.name)
        # the real handler's id: with auth on, derived from the secret (not guessable)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=handler_client_id(self.name, password),
                             protocol=mqtt.MQTTv5)
        client.will_set(contract.topic(self.name, "status"), self._state("offline"),
                        qos=1, retain=True)
        client.on_socket_open = self.fleet.socket_opened
        client.on_socket_close = self.fleet.socket_closed
        client.on_socket_register_write = self.fleet.want_write
        client.on_socket_unregister_write = self.fleet.done_writing
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if password:     # auth on: log in as ourselves, like the real handler
            client.username_pw_set(self.name, password)
        return client

    def _state(self, state: str) -> bytes:
        return contract.encode(contract.make_state(self.name, state))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            return
        client.subscribe([(contract.topic(self.name, "command"), 1),
                          (contract.broadcast_topic(self.fleet.manager), 1)])
        client.publish(contract.topic(self.name, "status"), self._state("online"), 1, True)
        self.heartbeat()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if not self.ready:
            self.ready = True
            self.fleet.agent_ready()

    def heartbeat(self) -> None:
        beat = {"v": contract.SCHEMA_VERSION, "ts": contract.now_rfc3339(), "agent": self.name,
                "ok": True, "uptime": round(time.monotonic() - self.started, 1),
                "mem_kb": 20480, "cpu": 0.1, "errors": {}, "interval": self.fleet.interval,
                "version": VERSION}
        self.client.publish(contract.topic(self.name, "heartbeat"), contract.encode(beat), 1, True)

    def _on_message(self, client, userdata, message) -> None:
        try:
            command = contract.parse_command(message.payload)
            key = self.keys.get("broadcast" if message.topic.endswith("/broadcast") else "command")
            if key:   # the same check as the real handler, so auth on costs what it costs
                signing.verify_command(command, key, seen=self.replays)
        except contract.ContractError:
            return   # a real agent would raise an alert; the simulation just drops it
        if self.silent:
            return
        if command["verb"] == "health-check":
            self.heartbeat()
        result = {"version": VERSION} if command["verb"] == "version-report" else {}
        reply = contract.make_reply(self.name, command, True, result=result)
        client.publish(contract.topic(self.name, "status"), contract.encode(reply), 1)
        self.answered += 1


class SimFleet:
    """Many SimAgents on one selector loop."""

    def __init__(self, host: str, port: int, names: list, *, manager: str,
                 silent: int = 0, interval: float = 600.0, secrets_dir: Optional[Path] = None,
                 verify: bool = True):
        self.host, self.port, self.manager, self.interval = host, port, manager, interval
        self.secrets_dir = Path(secrets_dir) if secrets_dir else None
        self.verify = verify
        self.selector = selectors.DefaultSelector()
        self.stop_event = threading.Event()
        self.ready_count = 0
        self.all_ready = threading.Event()
        self.agents = [SimAgent(self, n, silent=i < silent) for i, n in enumerate(names)]
        self.by_client = {a.client: a for a in self.agents}

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

    # --- selector bookkeeping (called by paho from inside our loop) ----------------

    def socket_opened(self, client, userdata, sock) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.selector.register(sock, selectors.EVENT_READ, client)

    def socket_closed(self, client, userdata, sock) -> None:
        try:
            self.selector.unregister(sock)
        except (KeyError, ValueError):
            pass

    def want_write(self, client, userdata, sock) -> None:
        self._events(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def done_writing(self, client, userdata, sock) -> None:
        self._events(sock, selectors.EVENT_READ, client)

    def _events(self, sock, events: int, client) -> None:
        try:
            self.selector.modify(sock, events, client)
        except (KeyError, ValueError):
            pass   # the socket is already gone

    def agent_ready(self) -> None:
        self.ready_count += 1
        if self.ready_count == len(self.agents):
            self.all_ready.set()

    # --- running ------------------------------------------------------------------

    def connect_all(self, batch: int = 50) -> None:
        """Connect every agent, serving the loop between batches so CONNACKs flow."""
        for i, agent in enumerate(self.agents):
            agent.client.connect(self.host, self.port, keepalive=60)
            if i % batch == batch - 1:
                self.poll(0)

    def run(self, *, heartbeat_every: Optional[float] = None) -> None:
        """Serve every agent until ``stop_event`` is set."""
        next_misc = next_beat = time.monotonic()
        while not self.stop_event.is_set():
            self.poll(0.1)
            now = time.monotonic()
            if now >= next_misc:        # keepalive pings, once a second is plenty
                for agent in self.agents:
                    agent.client.loop_misc()
                next_misc = now + 1.0
            if heartbeat_every and now >= next_beat:
                for agent in self.agents:
                    agent.heartbeat()
                next_beat = now + heartbeat_every

    def poll(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout):
            client = key.data
            if events & selectors.EVENT_READ:
                client.loop_read()
            if events & selectors.EVENT_WRITE and client.want_write():
                client.loop_write()

    def shutdown(self, *, crash: bool = False, clear: bool = False) -> None:
        """Clean goodbye (retained offline, DISCONNECT), or vanish so the Wills fire."""
        for agent in self.agents:
            if crash:
                sock = agent.client.socket()
                if sock:
                    self.socket_closed(agent.client, None, sock)
                    sock.close()
                continue
            if clear:
                for kind in ("status", "heartbeat"):
                    agent.client.publish(contract.topic(agent.name, kind), b"", 1, True)
            else:
                agent.client.publish(contract.topic(agent.name, "status"),
                                     agent._state("offline"), 1, True)
            agent.client.disconnect()
        self._drain(2.0)

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.selector.get_map():
            self.poll(0.05)


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE towards ``needed`` (up to the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, needed) if hard == resource.RLIM_INFINITY else min(max(soft, needed), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def names_for(prefix: str, count: int) -> list:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def main(argv: Optional[list] = None) -> int:
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
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.add_argument("--secrets-dir", type=Path, default=None,
                        help="log in and verify signed commands with the credentials in this "
                             "hatchery state directory's secrets/ (auth on)")
    parser.add_argument("--unsigned", action="store_true",
                        help="with --secrets-dir: log in, but accept unsigned commands")
    parser.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="stop when stdin closes (a parent process holds it)")
    args = parser.parse_args(argv)

    raise_fd_limit(args.count + 256)
    fleet = SimFleet(args.host, args.port, names_for(args.prefix, args.count),
                     manager=args.manager, silent=args.silent, secrets_dir=args.secrets_dir,
                     verify=not args.unsigned)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: fleet.stop_event.set())
    if args.stop_on_stdin_eof:
        threading.Thread(target=_stop_on_stdin_close, args=(fleet.stop_event,),
                         daemon=True).start()
    started = time.perf_counter()
    fleet.connect_all()
    while not fleet.all_ready.is_set() and time.perf_counter() - started < args.ready_timeout:
        fleet.poll(0.05)
    print(json.dumps({"ready": fleet.ready_count, "count": args.count,
                      "seconds": round(time.perf_counter() - started, 3)}), flush=True)
    fleet.run(heartbeat_every=args.heartbeat_every)
    fleet.shutdown(crash=args.crash, clear=args.clear)
    return 0 if fleet.ready_count == args.count else 1


def _stop_on_stdin_close(stop: threading.Event) -> None:
    # The parent (a bench or a test) holds our stdin; when it dies, we stop.
    try:
        sys.stdin.read()
    except (OSError, ValueError):
        return
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
