"""A small LAN of network namespaces: a broker host, a hostile neighbour, an agent host.

Every end of every link lives in a namespace this module made: nothing is
added to the root namespace's links, addresses, routes or firewall, so a
firewall loaded into the broker's namespace (``nft -f`` inside it) guards that
namespace only. ``close()`` kills what ``spawn`` started and deletes the
namespaces, which removes their links and firewall tables with them.

    lan = Lan(("broker", "neighbour", "agent")).start()
    try:
        proc = lan.spawn("broker", ["mosquitto", "-c", conf])
        lan.address("broker")          # 10.251.S.2
    finally:
        lan.close()

Needs root and iproute2. A plain module (imported by tests and bench/).
"""

from __future__ import annotations

import secrets
import signal
import subprocess
from dataclasses import dataclass, field


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _free_subnet() -> int:
    used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route").stdout
    candidates = [s for s in range(10, 250) if f"10.251.{s}." not in used]
    if not candidates:
        raise RuntimeError("no free 10.251.x.0/24 subnet")
    return secrets.choice(candidates)


@dataclass
class Lan:
    """Namespaces on one bridge (itself in a namespace); ``start()`` then ``close()`` (always)."""

    hosts: tuple = ("broker", "neighbour", "agent")
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: int = 0
    made: list = field(default_factory=list)
    procs: list = field(default_factory=list)

    def netns(self, host: str) -> str:
        return f"s2{self.tag}{host[:4]}"

    def address(self, host: str) -> str:
        return f"10.251.{self.subnet}.{self.hosts.index(host) + 2}"

    def start(self) -> "Lan":
        try:
            self.subnet = _free_subnet()
            lan = self._add("lan0")
            sh("ip", "-n", lan, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", lan, "link", "set", "br0", "up")
            for index, host in enumerate(self.hosts):
                ns = self._add(host)
                inner, outer = f"eth{index}", f"p{index}"
                sh("ip", "-n", ns, "link", "add", inner, "type", "veth",
                   "peer", "name", outer, "netns", lan)
                sh("ip", "-n", lan, "link", "set", outer, "master", "br0", "up")
                sh("ip", "-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", inner)
                sh("ip", "-n", ns, "link", "set", inner, "up")
        except BaseException:
            self.close()
            raise
        return self

    def _add(self, host: str) -> str:
        name = self.netns(host)
        sh("ip", "netns", "add", name)
        self.made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def run(self, host: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.netns(host), *argv, check=check)

    def spawn(self, host: str, argv: list, **popen) -> subprocess.Popen:
        """A process in ``host``'s namespace (``ip netns exec`` execs it: same pid)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns(host), *argv],
                                start_new_session=True, **popen)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            _stop(proc)
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)
        self.made.clear()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
