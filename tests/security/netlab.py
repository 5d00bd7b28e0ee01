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

The namespaces are claimed and made by tests/hosts/namespaces.py, like the
multi-host harness's: ``start()`` first sweeps those of runs that were killed.

Needs root and iproute2. A plain module (imported by tests and bench/).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from tests.hosts.namespaces import claim_netns, free_subnet, release, remove_netns, run_tag, sh, stop, sweep


@dataclass
class Lan:
    """Namespaces on one bridge (itself in a namespace); ``start()`` then ``close()`` (always)."""

    hosts: tuple = ("broker", "neighbour", "agent")
    tag: str = field(default_factory=run_tag)      # hty + 4 hex
    subnet: int = 0
    made: list = field(default_factory=list)
    procs: list = field(default_factory=list)

    def netns(self, host: str) -> str:
        return f"{self.tag}{host[:4]}"

    def address(self, host: str) -> str:
        return f"10.251.{self.subnet}.{self.hosts.index(host) + 2}"

    def start(self) -> "Lan":
        sweep()                         # what runs killed before left
        try:
            self.subnet = free_subnet("10.251")
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
        self.made.append(claim_netns(self.netns(host)))
        return self.made[-1]

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
            stop(proc)
        for name in reversed(self.made):
            remove_netns(name)
        release(self.made)
        self.made.clear()

