"""Figures for the security building blocks (not a test: run it by hand).

    .venv/bin/python -m tests.security.bench_security
    .venv/bin/python -m tests.security.bench_security --only audit --repeat 5

On a shared machine even CPU time is noisy; instructions are not. The audit's
cost per message, in instructions (the difference of two runs takes out the
start-up and the writing of the record, which a run of 0 messages also does):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m tests.security.bench_security --only audit --messages 3000
    (the same with --messages 0; (Ir of 3000 - Ir of 0) / 3000)

1. bus.audit throughput over a recorded session of 100k messages.
2. The broker's auth cost: QoS 1 request/reply round trip, p50 over 1,000,
   anonymous versus password file + ACL (TCP_NODELAY on broker and clients),
   and the CONNECT round trip (PBKDF2 check) with and without a password.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import tempfile
import time
from pathlib import Path

from agent_kit import contract
from hatchery.observe.audit import audit_record
from hatchery.observe.record import RotatingLog, entry
from hatchery.security import acl
from hatchery.security import passwords as pw
from tests.security.secbroker import Probe, start_secure_broker

MESSAGES = 100_000
ROUND_TRIPS = 1_000


def _session_message(i: int) -> tuple:
    agent = f"agent-{i % 20}"
    ts = contract.now_rfc3339()
    if i % 10 == 0:
        return (contract.topic(agent, "status"),
                {"v": 1, "ts": ts, "agent": agent, "kind": "reply", "id": f"c-{i}",
                 "verb": "status-report", "ok": True,
                 "result": {"uptime": i, "mem_kb": 51200, "version": "openclaw-1.4.2",
                            "ip": "172.18.0.5", "errors": 0}})
    if i % 1000 == 1:   # a few planted violations
        return contract.topic(agent, "alert"), {"v": 1, "ts": ts, "agent": agent,
                                                 "kind": "alert", "code": "x",
                                                 "reason": "mail jane.roe@example.org"}
    return contract.topic(agent, "heartbeat"), {
        "v": 1, "ts": ts, "agent": agent, "ok": True, "uptime": 86400 + i, "mem_kb": 51200,
        "cpu": 0.5, "errors": {"cron": 0}, "interval": 600, "version": "openclaw-1.4.2"}


def bench_audit(workdir: Path, repeat: int = 1, messages: int = MESSAGES) -> dict:
    """The best of ``repeat`` audits of one record, by CPU time (the machine is shared,
    so wall time is noisy; CPU time of this process is what the audit costs)."""
    path = workdir / "bus.jsonl"
    log = RotatingLog(path, max_bytes=8 * 1024 * 1024, keep=10)
    for i in range(messages):
        topic, payload = _session_message(i)
        log.write(entry(topic, json.dumps(payload).encode(), retain=False, when=time.time()))
    log.close()
    runs = []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = audit_record(path, manager="zephyr")
        runs.append((time.process_time() - cpu, time.perf_counter() - started))
    cpu_seconds, seconds = min(runs)
    return {"messages": result.messages, "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu_seconds, 2),
            "messages_per_cpu_s": round(result.messages / max(cpu_seconds, 1e-6)),
            "findings": result.counts()}


def _round_trips(broker, manager_creds, agent_creds, agent: str) -> list:
    responder = Probe(broker, *agent_creds)
    responder.connect()
    responder.client.on_message = lambda c, u, msg: c.publish(
        contract.topic(agent, "status"), msg.payload, qos=1)
    responder.subscribe(contract.topic(agent, "command"))
    caller = Probe(broker, *manager_creds)
    caller.connect()
    caller.subscribe(contract.topic(agent, "status"))
    samples = []
    for i in range(ROUND_TRIPS + 50):
        started = time.perf_counter()
        caller.client.publish(contract.topic(agent, "command"), str(i).encode(), qos=1)
        while True:
            try:
                _, payload = caller.receive(timeout=5)
            except queue.Empty:
                raise TimeoutError("no reply") from None
            if payload == str(i).encode():
                break
        if i >= 50:                     # warm-up excluded
            samples.append((time.perf_counter() - started) * 1000)
    caller.close()
    responder.close()
    return samples


def _connect_times(broker, creds, n: int = 200) -> list:
    samples = []
    for _ in range(n):
        probe = Probe(broker, *creds)
        started = time.perf_counter()
        assert not probe.connect().is_failure
        samples.append((time.perf_counter() - started) * 1000)
        probe.close()
    return samples


def _summary(samples: list) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 3), "n": len(ordered)}


def bench_auth(workdir: Path) -> dict:
    agent = "bench-a"
    open_broker = start_secure_broker(workdir / "open", anonymous=True)
    users = acl.fleet_users("zephyr", [agent])
    secrets = {u: pw.new_secret() for u in users}
    pw.write_private(workdir / "passwd", pw.render_password_file(
        {u: pw.hash_password(s) for u, s in secrets.items()}))
    pw.write_private(workdir / "acl", acl.render_acl(acl.fleet_grants("zephyr", [agent])))
    auth_broker = start_secure_broker(workdir / "auth", password_file=workdir / "passwd",
                                      acl_file=workdir / "acl")
    try:
        anonymous = (None, None)
        manager, agent_creds = ("zephyr", secrets["zephyr"]), (agent, secrets[agent])
        return {
            "qos1_round_trip_anonymous": _summary(
                _round_trips(open_broker, anonymous, anonymous, agent)),
            "qos1_round_trip_password_acl": _summary(
                _round_trips(auth_broker, manager, agent_creds, agent)),
            "connect_anonymous": _summary(_connect_times(open_broker, anonymous)),
            "connect_password": _summary(_connect_times(auth_broker, manager)),
        }
    finally:
        open_broker.stop()
        auth_broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("audit", "auth"), help="run one of the two")
    parser.add_argument("--repeat", type=int, default=1, help="audits of the record (best kept)")
    parser.add_argument("--messages", type=int, default=MESSAGES, help="messages in the record")
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "audit"):
            figures["audit"] = bench_audit(Path(tmp), max(1, args.repeat), max(0, args.messages))
        if args.only in (None, "auth"):
            figures["auth"] = bench_auth(Path(tmp))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
