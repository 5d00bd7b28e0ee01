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
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
# What a swarm node must accept from the others: cluster management, node gossip, VXLAN.
SWARM_PORTS = (("tcp", 2377), ("tcp", 7946), ("udp", 7946), ("udp", 4789))


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _free_subnet() -> int:
    used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route").stdout
    candidates = [s for s in range(100, 250) if f"10.250.{s}." not in used]
    if not candidates:
        raise RuntimeError("no free 10.250.x.0/24 subnet")
    return secrets.choice(candidates)


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
    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: list = field(default_factory=list)
    made_netns: list = field(default_factory=list)
    made_links: list = field(default_factory=list)
    root: Path | None = None
    control_ip: str = ""
    home: Path | None = None      # $HOME for the control side: ~/.ssh/config names every host
    shim_dir: Path | None = None  # an `ssh` first on $PATH that reads that config

    def start(self) -> "MultiHost":
        if not os.path.exists(SSHD):
            raise RuntimeError("sshd is not installed: apt-get install -y openssh-server")
        # short: a unix socket path is limited to 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix=f"hty{self.tag}-", dir="/tmp"))
        # in memory: three engines' image layers are thousands of small files, which
        # take ~20 s to delete from disk on a busy machine; unmounting takes none
        sh("mount", "-t", "tmpfs", "-o", "mode=0700,size=6g", f"hty{self.tag}", str(self.root))
        subnet = _free_subnet()
        lan = self._netns("lan")
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
        name = f"hty{self.tag}{suffix}"
        sh("ip", "netns", "add", name)
        self.made_netns.append(name)
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        return name

    def _wire(self, lan: str, netns: str | None, address: str, suffix: str) -> None:
        """A veth pair: one end on the lan bridge, the other in ``netns`` (None: root) with ``address``."""
        outer, inner = f"hty{self.tag}{suffix}l", f"hty{self.tag}{suffix}h"
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
        _stop(host.dockerd, timeout=20)

    def restore(self, host: Host) -> None:
        """A lost host comes back: on the lan again, its engine started (it rejoins its swarm)."""
        self.partition(host, cut=False)
        self.restart_dockerd(host)

    def partition(self, host: Host, cut: bool = True) -> None:
        """Cut ``host`` off the lan (its link down) or heal it: its processes keep running."""
        sh("ip", "netns", "exec", host.netns, "ip", "link", "set", self._inner(host),
           "down" if cut else "up")

    def _inner(self, host: Host) -> str:
        return f"hty{self.tag}{host.name[1:]}h"

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
        _stop(host.sshd)

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
        _stop(host.dockerd, timeout=20)

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

    # --- clean-up --------------------------------------------------------------------------

    def close(self) -> None:
        if self.hosts:
            with ThreadPoolExecutor(len(self.hosts)) as pool:   # each engine takes seconds to stop
                list(pool.map(self._close_host, self.hosts))
        for link in self.made_links:
            sh("ip", "link", "del", link, check=False)
        for name in reversed(self.made_netns):
            sh("ip", "netns", "del", name, check=False)
        if self.root is not None:
            sh("umount", "-l", str(self.root), check=False)
            shutil.rmtree(self.root, ignore_errors=True)

    def _close_host(self, host: Host) -> None:
        self._remove_containers(host)
        _stop(host.dockerd, timeout=20)
        _stop(host.sshd)
        _kill_strays(host.root)
        _unmount_under(host.root)

    def leftovers(self) -> list:
        """What close() missed: namespaces, interfaces, mounts, processes of this run ([] when clean)."""
        tag = f"hty{self.tag}"
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


def _stop(proc: subprocess.Popen | None, timeout: float = 5) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _kill_strays(root: Path) -> None:
    """containerd and its shims outlive a dockerd that had to be killed: end them by id
    (found by this run's own directory in their command line)."""
    for pid in sh("pgrep", "-f", str(root), check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _unmount_under(root: Path) -> None:
    """dockerd leaves overlay and netns mounts under its data/exec roots when killed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(root))]
    for mount in sorted(mounts, key=len, reverse=True):
        sh("umount", "-l", mount, check=False)
