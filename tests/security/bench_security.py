"""Figures for the security building blocks (not a test: run it by hand).

    .venv/bin/python -m tests.security.bench_security

1. bus.audit throughput over a recorded session of 100k messages.
2. The broker's auth cost: QoS 1 request/reply round trip, p50 over 1,000,
   anonymous versus password file + ACL (TCP_NODELAY on broker and clients),
   and the CONNECT round trip (PBKDF2 check) with and without a password.
"""

from __future__ import annotations

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


def bench_audit(workdir: Path) -> dict:
    path = workdir / "bus.jsonl"
    log = RotatingLog(path, max_bytes=8 * 1024 * 1024, keep=10)
    for i in range(MESSAGES):
        topic, payload = _session_message(i)
        log.write(entry(topic, json.dumps(payload).encode(), retain=False, when=time.time()))
    log.close()
    started = time.perf_counter()
    result = audit_record(path, manager="zephyr")
    seconds = time.perf_counter() - started
    return {"messages": result.messages, "seconds": round(seconds, 2),
            "messages_per_s": round(result.messages / seconds),
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
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({"audit": bench_audit(Path(tmp)), "auth": bench_auth(Path(tmp))},
                         indent=2))


if __name__ == "__main__":
    main()
