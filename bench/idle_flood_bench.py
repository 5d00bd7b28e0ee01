"""How long an idle-socket flood locks agents out of the broker, and what it costs the broker.

    .venv/bin/python bench/idle_flood_bench.py --label 2.0.11 [--mosquitto /usr/sbin/mosquitto]
        [--lib-path DIR] [--mode hold|sustained] [--limit 200] [--sockets 400]
        [--attack 150] [--after 20] [--nofile N] [--lan [--firewall]] [--out FILE]

A real Mosquitto (``--mosquitto``, e.g. a newer build unpacked in a throw-away
directory; ``--lib-path`` for its libraries) with ``max_connections --limit``
and a password file. An agent (a raw paho client with its password) tries to
log in every 0.5 s; from second 2 a neighbour opens ``--sockets`` TCP
connections that never send a byte, for ``--attack`` seconds:

- ``hold``: opened once and held (the broker's own idle timeout is what ends it);
- ``sustained``: every one the broker closes is opened again at once.

Reported: how long the agent was locked out (and whether it got back in
during the attack), the broker's CPU time during the attack, its peak fds and
RSS, and when the broker closed the neighbour's sockets. Default: all on
127.0.0.1. ``--lan`` (root) puts the broker, the neighbour and the agent in
network namespaces of their own (tests/security/netlab.py), and ``--firewall``
loads hatchery's rendered per-address rules (hatchery/configs/firewall.py)
into the broker's namespace only. Prints JSON; appends it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fleet_bench import cpu_seconds, rss_kb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PORT = 18830        # inside --lan namespaces nothing else listens; otherwise a free port
PASSWORD_USER = "alpha"


# --- the neighbour and the agent, each its own process (in its own namespace with --lan) ----

class Neighbour:
    """Non-blocking idle connections (up to 256 handshakes at a time), never a byte sent."""

    def __init__(self, host: str, port: int, sources: list):
        self.target, self.sources = (host, port), sources or [None]
        self.selector = selectors.DefaultSelector()
        self.connecting: dict = {}      # socket -> started
        self.held: dict = {}            # socket -> established at
        self.idle_ages: list = []       # how long the broker kept one it accepted (> 2 s)
        self.stats = {"opened": 0, "failed": 0, "closed_by_broker": 0}
        self.attempts = 0

    def start_one(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        source = self.sources[self.attempts % len(self.sources)]
        self.attempts += 1
        if source:
            sock.bind((source, 0))
        sock.setblocking(False)
        sock.connect_ex(self.target)
        self.connecting[sock] = time.monotonic()
        self.selector.register(sock, selectors.EVENT_WRITE)

    def step(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout):
            sock = key.fileobj
            if sock in self.connecting:
                self._established(sock)
            elif sock in self.held:
                self._maybe_closed(sock)
        now = time.monotonic()
        for sock, began in list(self.connecting.items()):
            if now - began > 3:           # dropped by a firewall: give up on this one
                self._forget(sock, self.connecting)
                self.stats["failed"] += 1

    def _established(self, sock) -> None:
        del self.connecting[sock]
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.selector.unregister(sock)
            sock.close()
            self.stats["failed"] += 1
            return
        self.held[sock] = time.monotonic()
        self.stats["opened"] += 1
        self.selector.modify(sock, selectors.EVENT_READ)

    def _maybe_closed(self, sock) -> None:
        try:
            data = sock.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            age = time.monotonic() - self.held[sock]
            if age > 2:
                self.idle_ages.append(age)
            self._forget(sock, self.held)
            self.stats["closed_by_broker"] += 1

    def _forget(self, sock, table: dict) -> None:
        del table[sock]
        self.selector.unregister(sock)
        sock.close()

    def close(self) -> dict:
        self.stats["held_at_end"] = len(self.held)
        self.stats["idle_closed"] = len(self.idle_ages)
        self.stats["idle_closed_after_s"] = ([round(min(self.idle_ages), 1),
                                              round(max(self.idle_ages), 1)]
                                             if self.idle_ages else None)
        for sock in [*self.connecting, *self.held]:
            sock.close()
        return self.stats


def flood(host: str, port: int, count: int, mode: str, start_at: float, seconds: float,
          sources: list) -> dict:
    """From ``start_at`` (epoch) for ``seconds``: hold ``count`` idle connections.
    hold: open ``count`` in all, never again; sustained: reopen whatever closes."""
    time.sleep(max(0.0, start_at - time.time()))
    neighbour = Neighbour(host, port, sources)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done = neighbour.stats["opened"] + len(neighbour.connecting)
        have = len(neighbour.held) + len(neighbour.connecting)
        wanted = count - (have if mode == "sustained" else done)
        for _ in range(max(0, min(wanted, 256 - len(neighbour.connecting)))):
            neighbour.start_one()
        neighbour.step(0.1)
    return neighbour.close()


def probe(host: str, port: int, password: str, until: float, interval: float = 0.5) -> list:
    """Try an agent's login every ``interval`` s until ``until`` (epoch): [(epoch, ok)]."""
    import paho.mqtt.client as mqtt
    timeline = []
    while time.time() < until:
        began = time.time()
        timeline.append((began, _login(mqtt, host, port, password)))
        time.sleep(max(0.0, interval - (time.time() - began)))
    return timeline


def _login(mqtt, host: str, port: int, password: str) -> bool:
    done = threading.Event()
    result = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(PASSWORD_USER, password)

    def on_connect(c, u, flags, reason, props):
        result["ok"] = not reason.is_failure
        done.set()
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
        client.loop_start()
        done.wait(2)
        return bool(result.get("ok"))
    except OSError:
        return False
    finally:
        client.disconnect()
        client.loop_stop()


# --- the orchestration ----------------------------------------------------------------------

def broker_conf(workdir: Path, port: int, limit: int, bind: str) -> tuple:
    from hatchery.security import passwords as pw
    secret = pw.new_secret()
    passwd = workdir / "passwd"
    pw.write_private(passwd, pw.render_password_file({PASSWORD_USER: pw.hash_password(secret)}))
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"per_listener_settings false\nlistener {port} {bind}\n"
                    f"max_connections {limit}\nallow_anonymous false\npassword_file {passwd}\n"
                    f"user {'root' if os.geteuid() == 0 else os.environ.get('USER', 'nobody')}\n"
                    f"log_dest file {workdir}/mosquitto.log\nlog_type all\n"
                    "connection_messages true\n")
    return conf, secret


class Sampler(threading.Thread):
    """The broker's CPU seconds, open fds and RSS from /proc, every 0.25 s: (epoch, cpu, fds, kB)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            try:
                self.samples.append((time.time(), cpu_seconds([self.pid]),
                                     len(os.listdir(f"/proc/{self.pid}/fd")), rss_kb(self.pid) or 0))
            except OSError:
                return


def lockout(timeline: list, start: float, end: float) -> dict:
    """How the agent's logins fared from the attack's ``start`` to its ``end`` (epochs)."""
    during = [(t, ok) for t, ok in timeline if start <= t < end]
    first_fail = next((t for t, ok in during if not ok), None)
    back = next((t for t, ok in timeline if ok and first_fail is not None and t > first_fail), None)
    last = back if back is not None else timeline[-1][0]
    return {"logins_during_attack": len(during),
            "failed_logins_during_attack": sum(1 for _, ok in during if not ok),
            "locked_out_s": None if first_fail is None else round(last - first_fail, 1),
            "first_failure_s": None if first_fail is None else round(first_fail - start, 1),
            "back_in_at_s": None if back is None else round(back - start, 1),
            "back_in_during_attack": back is not None and back < end}


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="hty-flood-"))
    env = dict(os.environ, LD_LIBRARY_PATH=args.lib_path) if args.lib_path else None
    lan = None
    if args.lan:
        from tests.security.netlab import Lan
        lan = Lan().start()
        for index in range(1, args.sources):     # more addresses for the neighbour
            lan.run("neighbour", "ip", "addr", "add", f"{_source(lan, index)}/24", "dev", "eth1")
    try:
        return _run(args, workdir, env, lan)
    finally:
        if lan is not None:
            lan.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _source(lan, index: int) -> str:
    return lan.address("neighbour") if index == 0 else f"10.251.{lan.subnet}.{100 + index}"


def _run(args, workdir: Path, env, lan) -> dict:
    from hatchery.core.ports import free_port
    host = lan.address("broker") if lan else "127.0.0.1"
    port = PORT if lan else free_port()
    conf, secret = broker_conf(workdir, port, args.limit, host)
    argv = [args.mosquitto, "-c", str(conf)]
    limits = {"preexec_fn": _fd_limit(args.nofile)} if args.nofile else {}
    broker = (lan.spawn("broker", argv, env=env, **limits) if lan
              else subprocess.Popen(argv, env=env, **limits))
    try:
        if lan and args.firewall:
            rules = workdir / "broker.nft"
            rules.write_text(firewall_rules(args, port))
            lan.run("broker", "nft", "-f", str(rules))
        return _attack(args, lan, broker, host, port, secret)
    finally:
        broker.terminate()
        broker.wait(10)


def _attack(args, lan, broker, host: str, port: int, secret: str) -> dict:
    time.sleep(1.0)
    sampler = Sampler(broker.pid)
    sampler.start()
    start = time.time() + 3.0
    end = start + args.attack
    me = [sys.executable, str(Path(__file__).resolve()), "--host", host, "--port", str(port)]
    prober = _role(lan, "agent", me + ["--role", "probe", "--until", str(end + args.after)],
                   secret)
    sources = ",".join(_source(lan, i) for i in range(args.sources)) if lan else ""
    flooder = _role(lan, "neighbour", me + ["--role", "flood", "--sockets", str(args.sockets),
                                            "--mode", args.mode, "--start-at", str(start),
                                            "--seconds", str(args.attack),
                                            "--source-addresses", sources], None)
    flood_stats = json.loads(flooder.communicate()[0])
    timeline = json.loads(prober.communicate()[0])
    sampler.stop.set()
    sampler.join()
    counters = (lan.run("broker", "nft", "list", "ruleset", check=False).stdout
                if lan and args.firewall else "")
    return _report(args, start, end, flood_stats, timeline, sampler.samples, counters)


def _fd_limit(nofile: int):
    def apply() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    return apply


def firewall_rules(args, port: int) -> str:
    from hatchery.configs.firewall import render_rules
    return render_rules(ports=(port,), per_source=args.per_source, rate=args.rate)


def _role(lan, host: str, argv: list, secret) -> subprocess.Popen:
    env = dict(os.environ, HATCHERY_BENCH_SECRET=secret) if secret else None
    if lan:
        return lan.spawn(host, argv, stdout=subprocess.PIPE, env=env)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)


def _report(args, start: float, end: float, flood_stats: dict, timeline: list, samples: list,
            counters: str) -> dict:
    during = [s for s in samples if start + 1.0 <= s[0] <= end]
    cpu = (during[-1][1] - during[0][1]) if len(during) > 1 else 0.0
    span = (during[-1][0] - during[0][0]) if len(during) > 1 else 1.0
    report = {"label": args.label, "mode": args.mode, "limit": args.limit,
              "sockets": args.sockets, "attack_s": args.attack, "nofile": args.nofile or None,
              "lan": args.lan, "sources": args.sources if args.lan else 1,
              "firewall": args.firewall, "per_source": args.per_source if args.firewall else None,
              **lockout(timeline, start, end), "neighbour": flood_stats,
              "broker_cpu_percent_during_attack": round(100 * cpu / span, 1),
              "broker_peak_fds": max((s[2] for s in samples), default=0),
              "broker_peak_rss_kb": max((s[3] for s in samples), default=0)}
    if counters:
        report["firewall_drops"] = [" ".join(line.split()[:3] + line.split()[-5:])
                                    for line in counters.splitlines() if "drop" in line]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("flood", "probe"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--start-at", type=float, default=0)
    parser.add_argument("--until", type=float, default=0)
    parser.add_argument("--source-addresses", default="")
    parser.add_argument("--label", default="packaged")
    parser.add_argument("--mosquitto", default="/usr/sbin/mosquitto")
    parser.add_argument("--lib-path", default="")
    parser.add_argument("--mode", choices=("hold", "sustained"), default="hold")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=400)
    parser.add_argument("--attack", type=float, default=150)
    parser.add_argument("--after", type=float, default=20)
    parser.add_argument("--nofile", type=int, default=0, help="the broker's fd limit")
    parser.add_argument("--lan", action="store_true")
    parser.add_argument("--sources", type=int, default=1, help="the neighbour's addresses (--lan)")
    parser.add_argument("--firewall", action="store_true")
    parser.add_argument("--per-source", type=int, default=16)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.role == "flood":
        sources = [a for a in args.source_addresses.split(",") if a]
        print(json.dumps(flood(args.host, args.port, args.sockets, args.mode, args.start_at,
                               args.seconds, sources)))
        return
    if args.role == "probe":
        secret = os.environ["HATCHERY_BENCH_SECRET"]
        print(json.dumps(probe(args.host, args.port, secret, args.until)))
        return
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "a") as out:
            out.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
