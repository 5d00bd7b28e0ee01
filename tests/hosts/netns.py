"""Several real hosts on one machine: network namespaces, each with its own dockerd and sshd.

Topology (one /24 under 10.250.0.0/16, picked free at start)::

    root namespace (the control side) 10.250.S.1 ─┐
    host h1 (netns, dockerd, sshd)    10.250.S.2 ──┤ bridge in its own "lan" namespace
    host h2 ...                       10.250.S.3 ──┤ (no routing, no iptables in the
    host h3 ...                       10.250.S.4 ──┘  root namespace are touched)

Each engine is started with ``nsenter --net=`` (``ip netns exec`` remounts /sys
and dockerd fails with "Devices cgroup isn't mounted"). Each sshd sets
``DOCKER_HOST`` for its sessions, so ``ssh://root@10.250.S.N`` reaches that
host's engine the way a real host's would. The control side reaches the hosts
only over SSH (and MQTT). ``MultiHost.close()`` removes everything it made, and
runs even when setting up failed half way; ``leftovers()`` lists what it missed.
A run that was killed before its ``close()`` is cleaned up by the next one's
``start()`` (``namespaces.sweep()``: only namespaces whose maker is dead).

``MultiHost(swarm=True)`` makes engines fit for a Docker Swarm: each dockerd runs
with ``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` (no registry here: without it every
task start first waits ~23 s on a failed registry lookup), the swarm's ports are
opened in each host's firewall (2377/tcp, 7946/tcp+udp, 4789/udp), and
``load_images()`` copies images to every engine by ``docker save | load``. The
swarm itself is formed by the code under test (invoke swarm.up).

A plain module (not a conftest.py: see tests/docker/dockerhelpers.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from namespaces import (claim_netns, free_subnet, release, remove_netns, run_tag, sh, stop,
                        sweep, unmount_under)

SSHD = "/usr/sbin/sshd"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
# What a swarm node must accept from the others: cluster management, node gossip, VXLAN.
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))


@dataclass
class Host:
    name: str                 # h1, h2, ...
    netns: str
    address: str
    root: Path                # its dockerd data, sshd config, remote state
    bridge_ip: str            # the engine's docker0 (--bip)
    dockerd: subprocess.Popen | None = None
    sshd: subprocess.Popen | None = None

    @property
    def socket(self) -> str:
        return f"unix://{self.root}/docker.sock"

    @property
    def docker_host(self) -> str:
        return f"ssh://root@{self.address}"

    @property
    def remote_dir(self) -> str:
        return str(self.root / "remote")

    def nsenter(self, *argv: str) -> list:
        return ["nsenter", f"--net=/var/run/netns/{self.netns}", *argv]


@dataclass
class MultiHost:
    """N hosts; ``start()`` then ``close()`` (always)."""

    count: int = 3
    swarm: bool = False           # engines fit for a swarm (see the module's docstring)
    tag: str = field(default_factory=run_tag)          # hty + 4 hex: every name this run makes
    hosts: list = field(default_factory=list)
    made_netns: list = field(default_factory=list)
    made_links: list = field(default_factory=list)
    root: Path | None = None
    control_ip: str = ""
    home: Path | None = None      # $HOME for the control side: ~/.ssh/config names every host
    shim_dir: Path | None = None  # an `ssh` first on $PATH that reads that config
    swept: object = None          # what the start-up sweep removed of runs killed before

    def start(self) -> "MultiHost":
        if not os.path.exists(SSHD):
            raise RuntimeError("sshd is not installed: apt-get install -y openssh-server")
        self.swept = sweep()           # namespaces, engines and mounts of killed runs
        # short: a unix socket path is limited to 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp"))
        lan = self._netns("lan")       # claimed with the root: a sweep finds the mount by it
        # in memory: three engines' image layers are thousands of small files, which
        # take ~20 s to delete from disk on a busy machine; unmounting takes none
        sh("mount", "-t", "tmpfs", "-o", "mode=0700,size=6g", self.tag, str(self.root))
        subnet = free_subnet("10.250", first=100)
        sh("ip", "netns", "exec", lan, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", lan, "ip", "link", "set", "br0", "up")
        self.control_ip = f"10.250.{subnet}.1"
        self._wire(lan, None, self.control_ip, "c")
        self._keys()
        for index in range(1, self.count + 1):
            host = Host(f"h{index}", self._netns(f"h{index}"), f"10.250.{subnet}.{index + 1}",
                        self.root / f"h{index}", f"172.30.{100 + index}.1/24")
            host.root.mkdir()
            self.hosts.append(host)
            self._wire(lan, host.netns, host.address, f"{index}")
            if self.swarm:
                self._open_swarm_ports(host)
            self.start_sshd(host)
            self.start_dockerd(host)
        for host in self.hosts:
            self._wait_engine(host)
        self._ssh_config()
        return self

    # --- network ---------------------------------------------------------------------------

    def _netns(self, suffix: str) -> str:
        name = claim_netns(f"{self.tag}{suffix}", root=self.root)
        self.made_netns.append(name)
        return name

    def _wire(self, lan: str, netns: str | None, address: str, suffix: str) -> None:
        """A veth pair: one end on the lan bridge, the other in ``netns`` (None: root) with ``address``."""
        outer, inner = f"{self.tag}{suffix}l", f"{self.tag}{suffix}h"
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        self.made_links.append(inner)          # deleting one end deletes both
        sh("ip", "link", "set", outer, "netns", lan)
        sh("ip", "netns", "exec", lan, "ip", "link", "set", outer, "master", "br0", "up")
        run = ["ip", "netns", "exec", netns] if netns else []
        if netns:
            sh("ip", "link", "set", inner, "netns", netns)
        sh(*run, "ip", "addr", "add", f"{address}/24", "dev", inner)
        sh(*run, "ip", "link", "set", inner, "up")

    def _open_swarm_ports(self, host: Host) -> None:
        """Accept the swarm's ports from the lan (a namespace starts with no rules; this says
        what a real host's firewall must let through, and survives dockerd's own rules)."""
        lan = f"{self.control_ip.rsplit('.', 1)[0]}.0/24"
        for proto, port in SWARM_PORTS:
            sh("ip", "netns", "exec", host.netns, "iptables", "-I", "INPUT", "-s", lan, "-p", proto,
               "--dport", str(port), "-j", "ACCEPT")

    def lose(self, host: Host) -> None:
        """The host dies: cut off the lan first (nothing it does later reaches anyone), then
        its containers and its engine end, as in a power loss."""
        self.partition(host)
        ids = sh("docker", "-H", host.socket, "ps", "-q", check=False).stdout.split()
        if ids:
            sh("docker", "-H", host.socket, "kill", *ids, check=False)
        stop(host.dockerd, timeout=20)

    def restore(self, host: Host) -> None:
        """A lost host comes back: on the lan again, its engine started (it rejoins its swarm)."""
        self.partition(host, cut=False)
        self.restart_dockerd(host)

    def partition(self, host: Host, cut: bool = True) -> None:
        """Cut ``host`` off the lan (its link down) or heal it: its processes keep running."""
        sh("ip", "netns", "exec", host.netns, "ip", "link", "set", self._inner(host),
           "down" if cut else "up")

    def _inner(self, host: Host) -> str:
        return f"{self.tag}{host.name[1:]}h"

    # --- sshd ------------------------------------------------------------------------------

    def _keys(self) -> None:
        for key in ("host_key", "user_key"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / key))
        (self.root / "authorized_keys").write_text((self.root / "user_key.pub").read_text())

    def start_sshd(self, host: Host) -> None:
        conf = host.root / "sshd_config"
        conf.write_text(
            f"Port 22\nListenAddress {host.address}\nHostKey {self.root}/host_key\n"
            f"AuthorizedKeysFile {self.root}/authorized_keys\nPidFile {host.root}/sshd.pid\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nSubsystem sftp internal-sftp\n"
            f"SetEnv DOCKER_HOST={host.socket}\n")
        Path("/run/sshd").mkdir(exist_ok=True)     # sshd's privilege-separation directory
        host.sshd = subprocess.Popen(host.nsenter(SSHD, "-D", "-e", "-f", str(conf)),
                                     stdout=subprocess.DEVNULL,
                                     stderr=(host.root / "sshd.log").open("w"))

    def stop_sshd(self, host: Host) -> None:
        stop(host.sshd)

    def _ssh_config(self) -> None:
        self.home = self.root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        entries = "".join(
            f"Host {h.address}\n  User root\n  IdentityFile {self.root}/user_key\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n  ConnectTimeout 5\n" for h in self.hosts)
        (self.home / ".ssh" / "config").write_text(entries)
        self.shim_dir = self.root / "bin"
        self.shim_dir.mkdir()
        shim = self.shim_dir / "ssh"
        # OpenSSH takes ~ from the password database, not $HOME: name the config with -F.
        shim.write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {self.home}/.ssh/config \"$@\"\n")
        shim.chmod(0o755)

    # --- dockerd ---------------------------------------------------------------------------

    def start_dockerd(self, host: Host) -> None:
        argv = host.nsenter(DOCKERD, "--data-root", str(host.root / "data"),
                            "--exec-root", str(host.root / "exec"), "-H", host.socket,
                            "--pidfile", str(host.root / "dockerd.pid"), "--bip", host.bridge_ip)
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"} if self.swarm else None
        host.dockerd = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env,
                                        stderr=(host.root / "dockerd.log").open("a"),
                                        start_new_session=True)

    def restart_dockerd(self, host: Host) -> None:
        """Start a stopped engine again (same data root: it rejoins its swarm) and wait for it."""
        self.start_dockerd(host)
        self._wait_engine(host)

    def stop_dockerd(self, host: Host) -> None:
        stop(host.dockerd, timeout=20)

    def _wait_engine(self, host: Host, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sh("docker", "-H", host.socket, "version", check=False).returncode != 0:
            if host.dockerd.poll() is not None or time.monotonic() > deadline:
                log = (host.root / "dockerd.log").read_text()[-2000:]
                raise RuntimeError(f"dockerd of {host.name} did not start:\n{log}")
            time.sleep(0.3)

    def load_images(self, *images: str) -> dict:
        """Copy ``images`` from this machine's engine to every host's (``docker save | load``,
        one archive, loaded in parallel); {host: seconds}."""
        archive = self.root / "images.tar"
        sh("docker", "save", "-o", str(archive), *images)
        try:
            with ThreadPoolExecutor(len(self.hosts)) as pool:
                return dict(zip((h.name for h in self.hosts), pool.map(
                    lambda h: self._load(h, archive), self.hosts)))
        finally:
            archive.unlink(missing_ok=True)

    def _load(self, host: Host, archive: Path) -> float:
        started = time.monotonic()
        sh("docker", "-H", host.socket, "load", "-i", str(archive))
        return round(time.monotonic() - started, 1)

    def docker(self, host: Host, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """``docker`` against ``host``'s engine (the harness's view, not the code under test's)."""
        return sh("docker", "-H", host.socket, *argv, check=check)

    def env(self) -> dict:
        """What the control side's environment needs: $HOME and the ssh shim first on $PATH."""
        return {"HOME": str(self.home), "PATH": f"{self.shim_dir}:{os.environ['PATH']}"}

    @contextmanager
    def control_side(self):
        """This process as the control side while the hosts are in use: ``env()`` set and no
        SSH agent; afterwards the environment restored and the cached engine connections
        (SSH tunnels to these hosts) forgotten."""
        from hatchery.runtime.docker import forget_connections
        wanted = self.env()
        saved = {key: os.environ.get(key) for key in (*wanted, "SSH_AUTH_SOCK")}
        os.environ.update(wanted)
        os.environ.pop("SSH_AUTH_SOCK", None)
        try:
            yield self
        finally:
            forget_connections()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # --- clean-up --------------------------------------------------------------------------

    def close(self) -> None:
        if self.hosts:
            with ThreadPoolExecutor(len(self.hosts)) as pool:   # each engine takes seconds to stop
                list(pool.map(self._close_host, self.hosts))
        for link in self.made_links:
            sh("ip", "link", "del", link, check=False)
        for name in reversed(self.made_netns):
            remove_netns(name)
        if self.root is not None:
            sh("umount", "-l", str(self.root), check=False)
            shutil.rmtree(self.root, ignore_errors=True)
        release(self.made_netns)       # last: a sweep elsewhere must not race this clean-up

    def _close_host(self, host: Host) -> None:
        self._remove_containers(host)
        stop(host.dockerd, timeout=20)
        stop(host.sshd)
        _kill_strays(host.root)
        unmount_under(host.root)

    def leftovers(self) -> list:
        """What close() missed: namespaces, interfaces, mounts, processes of this run ([] when clean)."""
        tag = self.tag
        found = [f"netns {n}" for n in sh("ip", "netns", "list").stdout.split() if n.startswith(tag)]
        found += [f"link {line.split(':')[1].strip()}" for line in sh("ip", "-o", "link").stdout.splitlines()
                  if f" {tag}" in line]
        if self.root is not None:
            found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1].startswith(str(self.root))]
            found += [f"process {pid}" for pid in sh("pgrep", "-f", str(self.root), check=False).stdout.split()]
            found += [f"directory {self.root}"] if self.root.exists() else []
        return found

    def _remove_containers(self, host: Host) -> None:
        if host.dockerd is None or host.dockerd.poll() is not None:
            return
        ids = sh("docker", "-H", host.socket, "ps", "-aq", check=False).stdout.split()
        if ids:
            sh("docker", "-H", host.socket, "rm", "-f", *ids, check=False)


def _kill_strays(root: Path) -> None:
    """containerd and its shims outlive a dockerd that had to be killed: end them by id
    (found by this run's own directory in their command line)."""
    for pid in sh("pgrep", "-f", str(root), check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass

