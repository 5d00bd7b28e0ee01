"""Fleet benchmark baselines: hatchery's broadcast against the article's two older ways.

For each fleet size, in ONE run against the same simulated fleet
(``bench/simfleet.py``) on the same fresh Mosquitto (both started with
``bench/fleet_bench.py``'s helpers), it measures the time until every agent's
health is in:

- **hatchery**: one broadcast health-check (``fleet.collect``), median of a few rounds;
- **shell way** (the article's ``bus-command`` in a loop): per agent, one
  ``mosquitto_sub -C 1 -W`` process on its status topic and, once that is
  subscribed, one ``mosquitto_pub`` process with a contract command; agents one
  after another; and the *fan-out* variant: every sub first, then every pub;
- **SSH polling** (the article's old way): a REAL sshd on a loopback port; per
  agent one Fabric ``Connection`` that reads that agent's health JSON; agents
  one after another; and a ``ThreadingGroup`` variant in batches.

A sequential sweep that would run past its time budget is cut after a fixed
sample and extrapolated linearly: the output says so (``extrapolated``).

    .venv/bin/python bench/baselines.py [--sizes 10,100,1000] [--out bench/results/baselines.json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import getpass
import json
import os
import platform
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import paramiko
from fabric import Config, Connection, ThreadingGroup
from fabric.exceptions import GroupException

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet_bench  # noqa: E402  (a sibling script; it puts the repo root on sys.path)

from agent_kit import contract  # noqa: E402
from hatchery.bus import commands as fleet  # noqa: E402
from hatchery.bus.client import BusClient  # noqa: E402

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
STDBUF = shutil.which("stdbuf") or "/usr/bin/stdbuf"
LOOPBACK = "127.0.0.1"
RESULTS = Path(__file__).resolve().parent / "results" / "baselines.json"

HATCHERY_ROUNDS = 5
SWEEP_BUDGET_S = 60.0      # a sequential sweep longer than this is sampled...
SWEEP_SAMPLE = 100         # ...on this many agents, then extrapolated
GROUP_BATCH = 25           # concurrent SSH handshakes per ThreadingGroup batch (measured best)
FANOUT_MAX = 1000          # concurrent mosquitto_sub processes at most
REPLY_TIMEOUT_S = 5        # mosquitto_sub -W for one agent
SSH_TIMEOUT_S = 10
GROUP_TIMEOUT_S = 30        # a batch of handshakes shares one Python process (and its GIL)


# --- a sweep: ask agents batch by batch, within a time budget -------------------

@dataclass
class Sweep:
    """How long asking every agent took (or would take, when extrapolated)."""

    agents: int
    asked: int
    answered: int
    measured_ms: float
    ms: float                  # for the whole fleet; measured_ms unless extrapolated
    extrapolated: bool
    missing: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sweep(names: list, ask: Callable[[list], dict], *, batch: int = 1,
          budget_s: float = SWEEP_BUDGET_S, sample: int = SWEEP_SAMPLE) -> Sweep:
    """Call ``ask(chunk) -> {name: answer}`` chunk by chunk; stop early past the budget.

    Once ``sample`` agents are asked, the sweep stops if the projected total
    exceeds ``budget_s`` (and always once the budget itself is spent); the
    time for the whole fleet is then extrapolated from the agents asked.
    """
    started = time.perf_counter()
    answers, asked = {}, 0
    for chunk in _chunks(names, batch):
        elapsed = time.perf_counter() - started
        if asked and (elapsed > budget_s or
                      (asked >= sample and elapsed * len(names) / asked > budget_s)):
            break
        answers.update(ask(chunk))
        asked += len(chunk)
    measured = (time.perf_counter() - started) * 1000
    return Sweep(agents=len(names), asked=asked, answered=len(answers), measured_ms=measured,
                 ms=measured * len(names) / max(asked, 1), extrapolated=asked < len(names),
                 missing=[n for n in names[:asked] if n not in answers][:20])   # a sample


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- hatchery: one broadcast, every reply in --------------------------------------

def hatchery_broadcast(inv, bus: BusClient, rounds: int = HATCHERY_ROUNDS) -> dict:
    """fleet_bench's way: ``fleet.collect`` until every reply is in; median of ``rounds``."""
    times, answered = [], []
    for _ in range(rounds):
        result, ms = fleet_bench.timed(lambda: fleet.collect(inv, timeout=10.0, bus=bus))
        times.append(ms)
        answered.append(len(result.answered))
    return {"agents": len(inv.agents), "ms": round(statistics.median(times), 2),
            "rounds_ms": [round(t, 1) for t in times], "answered": min(answered)}


# --- the article's shell way: a mosquitto_pub / mosquitto_sub process per message ---

def _sub_argv(port: int, name: str, timeout_s: int) -> list:
    # -R: skip the retained birth on the status topic; -d: print SUBACK, so we
    # publish the moment the sub listens (a shell script would sleep instead);
    # stdbuf -oL: a pipe is block-buffered, and we must see that line at once.
    return [STDBUF, "-oL", MOSQUITTO_SUB, "-h", LOOPBACK, "-p", str(port), "-V", "mqttv5",
            "-q", "1", "-t", contract.topic(name, "status"),
            "-C", "1", "-W", str(timeout_s), "-R", "-d"]


def _pub_argv(port: int, name: str, command: dict) -> list:
    return [MOSQUITTO_PUB, "-h", LOOPBACK, "-p", str(port), "-V", "mqttv5", "-q", "1",
            "-t", contract.topic(name, "command"), "-m", contract.encode(command).decode()]


def _start_sub(port: int, name: str, timeout_s: int) -> subprocess.Popen:
    return subprocess.Popen(_sub_argv(port, name, timeout_s), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_subscribed(sub: subprocess.Popen) -> bool:
    # Bounded: mosquitto_sub -W ends the process, and the pipe with it.
    for line in sub.stdout:
        if line.startswith("Subscribed"):
            return True
    return False


def _reply_from(sub: subprocess.Popen, command: dict, timeout_s: float) -> Optional[dict]:
    """The contract reply to ``command`` that ``sub`` printed, or None."""
    try:
        output, _ = sub.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        sub.kill()
        sub.communicate(timeout=5)
        return None
    for line in output.splitlines():
        if line.startswith("{"):
            return _matching_reply(line.encode(), command)
    return None


def _matching_reply(data: bytes, command: dict) -> Optional[dict]:
    try:
        reply = contract.validate_status(contract.decode(data))
    except contract.ContractError:
        return None
    return reply if reply.get("kind") == "reply" and reply["id"] == command["id"] else None


def _command_for(tag: str) -> dict:
    return contract.make_command("health-check", f"{tag}-{secrets.token_hex(4)}")


def _stop_all(procs: list) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def shell_ask_one(port: int, name: str, *, timeout_s: int = REPLY_TIMEOUT_S) -> dict:
    """One agent the shell way: sub (listening), then pub, then wait for the reply."""
    command = _command_for("sh")
    sub = _start_sub(port, name, timeout_s)
    try:
        if not _wait_subscribed(sub):
            return {}
        subprocess.run(_pub_argv(port, name, command), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=timeout_s, check=False)
        reply = _reply_from(sub, command, timeout_s + 1)
        return {name: reply} if reply else {}
    finally:
        _stop_all([sub])


def shell_ask_fanout(port: int, names: list, *, timeout_s: int) -> dict:
    """Every sub first (each listening), then every pub, then collect the replies."""
    commands = {n: _command_for("fan") for n in names}
    subs = {n: _start_sub(port, n, timeout_s) for n in names}
    pubs = []
    try:
        listening = [n for n in names if _wait_subscribed(subs[n])]
        pubs = [subprocess.Popen(_pub_argv(port, n, commands[n]), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for n in listening]
        for pub in pubs:
            pub.wait(timeout_s)
        replies = {n: _reply_from(subs[n], commands[n], timeout_s + 1) for n in listening}
        return {n: r for n, r in replies.items() if r}
    finally:
        _stop_all(list(subs.values()) + pubs)


def shell_way(port: int, names: list, **limits) -> Sweep:
    """The article's loop of ``bus-command``: one agent after another."""
    return sweep(names, lambda chunk: shell_ask_one(port, chunk[0]), **limits)


def shell_fanout(port: int, names: list, **limits) -> Sweep:
    batch = min(len(names), FANOUT_MAX)
    timeout_s = REPLY_TIMEOUT_S + batch // 40    # spawning a thousand subs takes seconds
    return sweep(names, lambda chunk: shell_ask_fanout(port, chunk, timeout_s=timeout_s),
                 batch=batch, **limits)


# --- SSH polling: a real sshd on loopback, a Fabric connection per agent -----------

class AgentConnection(Connection):
    """A Connection standing for one agent.

    Fabric's Connection equals any other with the same host, user and port, so
    a ThreadingGroup's result (a dict keyed by connection) would merge all of
    ours: here every agent sits behind the same sshd. One agent, one key.
    """

    def __init__(self, *args, agent: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.agent = agent

    __eq__ = object.__eq__
    __hash__ = object.__hash__

@dataclass
class SshTarget:
    """A running sshd on loopback and what a client needs to reach it (host key pinned)."""

    port: int
    user: str
    client_key: Path
    host_key: paramiko.PKey
    config: Config

    def connection(self, agent: str = "", env: Optional[dict] = None) -> AgentConnection:
        config = self.config.clone()
        if env:
            config.run.env = env
        conn = AgentConnection(LOOPBACK, user=self.user, port=self.port, config=config,
                               agent=agent, connect_timeout=SSH_TIMEOUT_S,
                               connect_kwargs={"key_filename": str(self.client_key),
                                               "look_for_keys": False, "allow_agent": False})
        # Fabric auto-adds unknown host keys; we know ours, so pin it and refuse others.
        conn.client.get_host_keys().add(f"[{LOOPBACK}]:{self.port}", self.host_key.get_name(),
                                        self.host_key)
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return conn


def _keygen(path: Path) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "hatchery-bench",
                    "-f", str(path)], check=True, timeout=30, stdin=subprocess.DEVNULL)


def _public_key(path: Path) -> paramiko.PKey:
    kind, blob = path.read_text().split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


def _sshd_config(root: Path, port: int, user: str, max_startups: int) -> str:
    return (f"Port {port}\nListenAddress {LOOPBACK}\nHostKey {root}/host_key\n"
            f"AuthorizedKeysFile {root}/authorized_keys\nPidFile {root}/sshd.pid\n"
            f"AllowUsers {user}\nStrictModes no\nUsePAM no\nUseDNS no\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nX11Forwarding no\nAllowTcpForwarding no\n"
            # the default 10:30:100 drops concurrent handshakes: the group variant needs more
            f"MaxStartups {max_startups}\nLogLevel ERROR\n")


def _fabric_config(root: Path) -> Config:
    # Hermetic: no ~/.ssh/config, no /etc/fabric.yml, no ~/.fabric.yml.
    return Config(ssh_config=paramiko.SSHConfig(), system_prefix=str(root / "no-system-"),
                  user_prefix=str(root / "no-user-"), overrides={"run": {"hide": True}})


@contextlib.contextmanager
def ssh_server(root: Path, *, max_startups: int = GROUP_BATCH * 2) -> Iterator[SshTarget]:
    """A real sshd on a free loopback port with generated host and client keys under ``root``."""
    if not os.path.exists(SSHD):
        raise RuntimeError("sshd is not installed: apt-get install -y openssh-server")
    root.mkdir(parents=True, exist_ok=True)
    _keygen(root / "host_key")
    _keygen(root / "client_key")
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    port, user = fleet_bench.free_port(), getpass.getuser()
    (root / "sshd_config").write_text(_sshd_config(root, port, user, max_startups))
    Path("/run/sshd").mkdir(exist_ok=True)      # sshd's privilege-separation directory
    with (root / "sshd.log").open("ab") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        fleet_bench.wait_port(port)
        yield SshTarget(port, user, root / "client_key", _public_key(root / "host_key.pub"),
                        _fabric_config(root))
    finally:
        fleet_bench.stop(proc)


def write_health_files(directory: Path, names: list) -> Path:
    """Each agent's health endpoint, as a file: its contract heartbeat."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        beat = contract.make_heartbeat(name, True, 1.0, mem_kb=20480, version="sim-1.0")
        (directory / f"{name}.json").write_bytes(contract.encode(beat))
    return directory


def _heartbeat_from(stdout: str, name: str) -> Optional[dict]:
    try:
        beat = contract.validate_heartbeat(contract.decode(stdout.strip().encode()))
    except contract.ContractError:
        return None
    return beat if beat["agent"] == name else None


def ssh_ask_one(target: SshTarget, name: str, health_dir: Path) -> dict:
    """One agent the old way: connect, read its health, disconnect."""
    command = f"cat {shlex.quote(str(health_dir / (name + '.json')))}"
    try:
        with target.connection(name) as conn:
            result = conn.run(command, warn=True, in_stream=False, timeout=SSH_TIMEOUT_S)
    except (paramiko.SSHException, OSError):
        return {}
    beat = _heartbeat_from(result.stdout, name) if result.ok else None
    return {name: beat} if beat else {}


def ssh_ask_group(target: SshTarget, names: list, health_dir: Path) -> dict:
    """A batch at once through a ThreadingGroup: one connection (and thread) per agent."""
    # Every "host" runs the same command, as on a real fleet; the agent's name
    # rides in the environment because here all of them share one sshd.
    conns = [target.connection(n, env={"HATCHERY_AGENT": n}) for n in names]
    group = ThreadingGroup.from_connections(conns)
    command = f'cat {shlex.quote(str(health_dir))}/"$HATCHERY_AGENT".json'
    try:
        results = group.run(command, warn=True, in_stream=False, timeout=GROUP_TIMEOUT_S)
    except GroupException as exc:
        results = exc.result
    finally:
        group.close()
    answers = {}
    for conn, result in results.items():
        beat = None if isinstance(result, Exception) else _heartbeat_from(result.stdout, conn.agent)
        if beat:
            answers[conn.agent] = beat
    return answers


def ssh_polling(target: SshTarget, names: list, health_dir: Path, **limits) -> Sweep:
    """The article's poller: SSH into each agent in turn."""
    return sweep(names, lambda chunk: ssh_ask_one(target, chunk[0], health_dir), **limits)


def ssh_group(target: SshTarget, names: list, health_dir: Path, **limits) -> Sweep:
    return sweep(names, lambda chunk: ssh_ask_group(target, chunk, health_dir),
                 batch=GROUP_BATCH, **limits)


# --- one fleet size: everything against the same broker and fleet -----------------

def bench_size(count: int, *, budget_s: float = SWEEP_BUDGET_S) -> dict:
    manager = f"bench-{secrets.token_hex(3)}"
    limits = {"budget_s": budget_s, "sample": SWEEP_SAMPLE}
    with tempfile.TemporaryDirectory(prefix="hatchery-baselines-") as tmp, \
            contextlib.ExitStack() as cleanup:
        root = Path(tmp)
        broker, port = fleet_bench.start_broker(root, count)
        cleanup.callback(fleet_bench.stop, broker)
        sim, ramp_s = fleet_bench.start_simfleet(port, count, manager)
        cleanup.callback(_stop_simfleet, sim)
        inv = fleet_bench.inventory_for(port, count, manager)
        names = list(inv.agents)
        target = cleanup.enter_context(ssh_server(root / "ssh"))
        health_dir = write_health_files(root / "health", names)
        with BusClient(LOOPBACK, port, client_id=f"{manager}-bench") as bus:
            hatchery = hatchery_broadcast(inv, bus)
        return {"agents": count, "simfleet_ramp_s": ramp_s, "hatchery": hatchery,
                "shell_way": shell_way(port, names, **limits).as_dict(),
                "shell_fanout": shell_fanout(port, names, **limits).as_dict(),
                "ssh_polling": ssh_polling(target, names, health_dir, **limits).as_dict(),
                "ssh_group": ssh_group(target, names, health_dir, **limits).as_dict()}


def _stop_simfleet(sim: subprocess.Popen) -> None:
    sim.stdin.close()           # simfleet stops when its stdin closes
    fleet_bench.stop(sim)


# --- output ------------------------------------------------------------------------

BASELINES = [("shell_way", "shell way, sequential"), ("shell_fanout", "shell way, fan-out"),
             ("ssh_polling", "SSH polling, sequential"), ("ssh_group", "SSH ThreadingGroup")]


def _cell(row: dict, key: str) -> str:
    base = row[key]
    ratio = base["ms"] / row["hatchery"]["ms"] if row["hatchery"]["ms"] else float("inf")
    mark = " extrapolated" if base["extrapolated"] else ""
    return f"{base['ms']:,.0f} (×{ratio:,.0f}; {base['answered']}/{base['asked']}{mark})"


def markdown(results: list) -> str:
    titles = ["agents", "hatchery broadcast ms (answered)"] + \
             [f"{title} ms (ratio; answered/asked)" for _, title in BASELINES]
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for row in results:
        hatchery = row["hatchery"]
        cells = [str(row["agents"]), f"{hatchery['ms']:,.1f} ({hatchery['answered']})"]
        cells += [_cell(row, key) for key, _ in BASELINES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--out", type=Path, default=RESULTS, help="write the JSON results here")
    parser.add_argument("--budget", type=float, default=SWEEP_BUDGET_S,
                        help="seconds a baseline sweep may take before it is sampled")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [bench_size(int(n), budget_s=args.budget) for n in args.sizes.split(",")]
    document = {"command": ".venv/bin/python bench/baselines.py --sizes " + args.sizes,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "mosquitto": fleet_bench._mosquitto_version(),
                            "ssh": _sshd_version()},
                "seconds": round(time.perf_counter() - started, 1), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(markdown(results))
    print(f"\nratios: baseline time / hatchery median; 'extrapolated': {SWEEP_SAMPLE} agents "
          f"measured, the whole fleet estimated linearly. JSON: {args.out}")
    return 0


def _sshd_version() -> str:
    out = subprocess.run([SSHD, "-V"], capture_output=True, text=True, timeout=5)
    text = (out.stderr or out.stdout).strip()      # OpenSSH prints its version on stderr
    return text.splitlines()[0] if text else "unknown"


if __name__ == "__main__":
    sys.exit(main())
