"""DNS registration of the broker's name: a hosts file, or dnsmasq's addn-hosts file.

Every provider offers ``plan_register(name, address)``, ``plan_unregister(name)``
(both return a ``Change``, ``none`` when already as wanted) and ``lookup(name)``.
Entries live in a clearly marked block, so hand-written lines around it are
never touched:

    # BEGIN hatchery managed
    192.0.2.10 mqtt-broker
    # END hatchery managed
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import struct
from pathlib import Path
from typing import Optional

from hatchery.core.plan import Action, Change, text_diff
from hatchery.core.process import running_pid
from hatchery.errors import DnsError, UsageError

BEGIN, END = "# BEGIN hatchery managed", "# END hatchery managed"


# --- the managed block ----------------------------------------------------------------

def read_block(text: str) -> dict:
    """name -> address from the managed block of a hosts-format text."""
    entries, inside = {}, False
    for line in text.splitlines():
        if line.strip() in (BEGIN, END):
            inside = line.strip() == BEGIN
        elif inside and line.strip() and not line.lstrip().startswith("#"):
            address, *names = line.split()
            entries.update({n: address for n in names})
    return entries


def write_block(text: str, entries: dict) -> str:
    """``text`` with its managed block replaced by ``entries`` (appended if absent, dropped if empty)."""
    outside, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.strip() in (BEGIN, END):
            inside = line.strip() == BEGIN
        elif not inside:
            outside.append(line)
    body = "".join(outside)
    if body and not body.endswith("\n"):
        body += "\n"
    if not entries:
        return body
    lines = [f"{address} {name}\n" for name, address in sorted(entries.items())]
    return body + BEGIN + "\n" + "".join(lines) + END + "\n"


def hosts_lookup(text: str, name: str) -> Optional[str]:
    """The first address a hosts-format text gives ``name``."""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and name in fields[1:]:
            return fields[0]
    return None


def check_address(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise UsageError(f"{address!r} is not an IP address",
                         "set broker.dns_options.address to the broker's IP address") from None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise DnsError(f"cannot read {path}: {exc.strerror}", "check the file's permissions") from None


def _write(path: Path, text: str) -> None:
    """Replace atomically; in place when the file is a bind mount (/etc/hosts in a container)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        tmp = path.with_name(f".{path.name}.hatchery-{secrets.token_hex(3)}")
        tmp.write_text(text)
        tmp.chmod(mode)
        try:
            tmp.replace(path)
        except OSError:
            tmp.unlink()
            path.write_text(text)
    except OSError as exc:
        raise DnsError(f"cannot write {path}: {exc.strerror}",
                       "run with permission to write it (sudo), or set another path in dns_options") from None


# --- providers ------------------------------------------------------------------------------

class HostsFile:
    """Entries in a hosts file (``/etc/hosts`` unless told otherwise)."""

    kind = "hosts"

    def __init__(self, hosts_file: str = "/etc/hosts"):
        self.path = Path(hosts_file)

    def plan_register(self, name: str, address: str) -> Change:
        address = check_address(address)
        return self._plan(name, address, f"{name} -> {address}")

    def plan_unregister(self, name: str) -> Change:
        return self._plan(name, None, f"{name} removed")

    def lookup(self, name: str) -> Optional[str]:
        return hosts_lookup(_read(self.path), name)

    def _plan(self, name: str, address: Optional[str], what: str) -> Change:
        text = _read(self.path)
        entries = read_block(text)
        if entries.get(name) == address:
            return Change(f"dns {name}", Action.NONE, f"{self.kind}: already {what}")
        entries.pop(name, None)
        if address:
            entries[name] = address
        wanted = write_block(text, entries)
        action = Action.REMOVE if address is None else (Action.UPDATE if name in read_block(text) else Action.CREATE)
        return Change(f"dns {name}", action, f"{self.kind}: {what}", text_diff(text, wanted, str(self.path)),
                      lambda: self._apply(wanted, what))

    def _apply(self, wanted: str, what: str) -> str:
        _write(self.path, wanted)
        return f"{self.path}: {what}"


class Dnsmasq(HostsFile):
    """Entries in a dnsmasq ``addn-hosts`` file; dnsmasq re-reads it on SIGHUP."""

    kind = "dnsmasq"

    def __init__(self, addn_hosts: str = "/etc/hatchery/hosts", pid_file: str = "/run/dnsmasq/dnsmasq.pid",
                 server: str = "127.0.0.1", port: int = 53, timeout: float = 2.0):
        super().__init__(addn_hosts)
        self.pid_file, self.server, self.port, self.timeout = Path(pid_file), server, int(port), timeout

    def lookup(self, name: str) -> Optional[str]:
        """Ask dnsmasq itself, so a missed reload shows."""
        answers = resolve(name, self.server, self.port, timeout=self.timeout)
        return answers[0] if answers else None

    def _apply(self, wanted: str, what: str) -> str:
        pid = self._pid()        # before writing: a failed reload must leave work to redo
        detail = super()._apply(wanted, what)
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise DnsError(f"cannot signal dnsmasq (pid {pid} from {self.pid_file}): {exc.strerror}",
                           "is dnsmasq running? restart it, or fix dns_options.pid_file") from None
        return f"{detail}; dnsmasq (pid {pid}) reloaded"

    def _pid(self) -> int:
        """The running dnsmasq's pid, never anything else we could signal.

        0 would signal our own process group, -1 every process we may signal
        (all of them, as root), 1 is init, and a stale pid file names whatever
        program got that pid since: only a live process whose command line says
        dnsmasq qualifies.
        """
        try:
            pid = int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            raise DnsError(f"no dnsmasq pid in {self.pid_file}",
                           "start dnsmasq with --pid-file, or set dns_options.pid_file") from None
        if pid <= 1 or running_pid(self.pid_file, "dnsmasq") != pid:
            raise DnsError(f"{self.pid_file} names pid {pid}, which is not a running dnsmasq; "
                           "not signalling it",
                           "is dnsmasq running? restart it, or fix dns_options.pid_file")
        return pid


PROVIDERS = {"hosts": HostsFile, "dnsmasq": Dnsmasq}
_OPTIONS = {"hosts": ("hosts_file",), "dnsmasq": ("addn_hosts", "pid_file", "server", "port", "timeout")}


def make_provider(kind: str, **options):
    """The provider ``kind`` with its options (others, like ``address``, are for the caller)."""
    if kind not in PROVIDERS:
        raise UsageError(f"unknown DNS provider {kind!r}", f"use one of: {', '.join(PROVIDERS)}")
    return PROVIDERS[kind](**{k: v for k, v in options.items() if k in _OPTIONS[kind]})


# --- a small DNS client (A records), so lookups ask the server, not the OS cache ----------

A, IN = 1, 1


def resolve(name: str, server: str, port: int = 53, timeout: float = 2.0) -> list:
    """IPv4 addresses the DNS server at ``server:port`` gives ``name`` (empty when none)."""
    query_id = secrets.randbits(16)
    packet = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", A, IN)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, (server, port))
            reply = sock.recv(4096)
        except OSError as exc:
            raise DnsError(f"no answer from the DNS server {server}:{port}: {exc}",
                           "is dnsmasq running and listening there?") from None
    return parse_reply(reply, query_id)


def _encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.strip(".").split(".")) + b"\0"


def parse_reply(reply: bytes, query_id: int) -> list:
    got_id, flags, questions, answers, _, _ = struct.unpack("!HHHHHH", reply[:12])
    if got_id != query_id or not flags & 0x8000:
        raise DnsError("the DNS server sent an unrelated reply", "retry; check nothing else answers on that port")
    if flags & 0x000F:              # NXDOMAIN, REFUSED, ...: no address
        return []
    offset = 12
    for _ in range(questions):
        offset = _skip_name(reply, offset) + 4
    found = []
    for _ in range(answers):
        offset = _skip_name(reply, offset)
        rtype, _, _, length = struct.unpack("!HHIH", reply[offset:offset + 10])
        offset += 10
        if rtype == A and length == 4:
            found.append(socket.inet_ntoa(reply[offset:offset + 4]))
        offset += length
    return found


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:   # a compression pointer ends the name
            return offset + 2
        offset += length + 1
