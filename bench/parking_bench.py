"""What one agent's login can make the broker hold: bytes in its RAM and in mosquitto.db.

    .venv/bin/python bench/parking_bench.py [--sessions 20] [--label now] [--out FILE]

Deploys a real broker with hatchery's own rendered config (local runtime, one
agent ``alpha``), then attacks it as ``alpha`` with hand-written MQTT packets
(tests/security/rawmqtt.py), one scenario per fresh broker:

- ``qos2``: --sessions client ids, each a persistent session (MQTT 5, session
  expiry "never") that publishes 30 QoS 2 messages of 60 KB on the agent's own
  status topic and never sends PUBREL, then vanishes;
- ``queue``: --sessions persistent sessions subscribed at QoS 1 to every topic
  the agent may read and to its selftest topic, parked offline; after each,
  --cap-mb of 60 KB messages on the selftest topic (which it may write, and
  before this work could read too);
- ``retained``: 60 KB retained on every topic the agent may write;
- ``sessions``: --sessions bare persistent sessions subscribed to every topic it may read.

For each: the broker's RSS and mosquitto.db size (saved with SIGUSR1) before
and after, and what the broker accepted. Prints JSON; appends it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent_kit import contract  # noqa: E402
from hatchery.core.paths import StatePaths  # noqa: E402
from hatchery.core.plan import apply_plan  # noqa: E402
from hatchery.core.ports import free_port  # noqa: E402
from hatchery.core.process import read_pid  # noqa: E402
from hatchery.inventory.load import load_inventory  # noqa: E402
from hatchery.provision import credentials as cr  # noqa: E402
from hatchery.provision.operations import deploy_plan, stop_broker_plan  # noqa: E402
from hatchery.security import acl  # noqa: E402
from tests.security import rawmqtt as raw  # noqa: E402

PAYLOAD = 60 * 1024
AGENT = "alpha"


def fleet(workdir: Path):
    path = workdir / "fleet_inventory.yaml"
    path.write_text("\n".join(["fleet:", "  manager: zephyr", "broker:", "  runtime: local",
                               "  host: 127.0.0.1", "  bind: 127.0.0.1", f"  port: {free_port()}",
                               "agents:", f"  {AGENT}: {{}}"]) + "\n")
    inv = load_inventory(path)
    if not apply_plan("deploy", deploy_plan(inv)).ok:
        raise SystemExit("deploy failed")
    return inv


def broker_pid(inv) -> int:
    return read_pid(StatePaths(inv.state_dir).broker_pid)


def measure(inv) -> dict:
    pid = broker_pid(inv)
    db = StatePaths(inv.state_dir).broker_data / "mosquitto.db"
    before = db.stat().st_mtime if db.exists() else 0
    os.kill(pid, signal.SIGUSR1)          # Mosquitto writes its database now
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not db.exists() or db.stat().st_mtime == before):
        time.sleep(0.05)
    time.sleep(0.2)
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return {"rss_kb": rss, "db_bytes": db.stat().st_size if db.exists() else 0}


def login(inv, client_id: str, **options):
    client = raw.RawClient("127.0.0.1", inv.broker.port)
    code = client.login(client_id, AGENT, cr.stored_secret(inv, AGENT), **options)
    return client, code


def qos2(inv, sessions: int, **_) -> dict:
    accepted = refused = hung_up = 0
    for index in range(sessions):
        client, code = login(inv, f"park-q2-{index}")
        if code != 0:
            refused += 1
            continue
        for mid in range(1, 31):
            try:
                client.send(raw.publish_packet(contract.topic(AGENT, "status"),
                                               os.urandom(PAYLOAD), qos=2, mid=mid))
            except OSError:
                break
        accepted_here, hung_up_here = _count_acks(client, raw.PUBREC)
        accepted += accepted_here
        hung_up += hung_up_here
        client.drop()
    return {"pubrec_success": accepted, "connects_refused": refused, "hung_up_on": hung_up}


def _count_acks(client, kind: int) -> tuple:
    """(acks with a success reason code, 1 if the broker hung up) until a quiet 0.3 s."""
    ok = 0
    try:
        while True:
            packet = client.read(timeout=0.3)
            if packet is None:
                return ok, 1
            if packet[0] == kind and (len(packet[2]) < 3 or packet[2][2] < 0x80):
                ok += 1
    except (TimeoutError, OSError):
        return ok, 0


def queue(inv, sessions: int, cap_mb: float = 8, **_) -> dict:
    readable = [g.topic for g in acl.agent_grants(AGENT, inv.manager) if "read" in g.access]
    writable = [g.topic for g in acl.agent_grants(AGENT, inv.manager) if "write" in g.access]
    both = [t for t in readable if t in writable]
    selftest = acl.selftest_topic(AGENT)        # written by the agent; read too, before
    published = subscribed = 0
    for index in range(sessions):
        client, code = login(inv, f"park-queue-{index}")
        for mid, topic in enumerate(dict.fromkeys([*readable, selftest]), start=1):
            client.send(raw.subscribe_packet(topic, qos=1, mid=mid))
        subscribed += sum(_count_acks(client, raw.SUBACK)[:1])
        client.drop()
        time.sleep(0.05)
        published += _fill(inv, selftest, int(cap_mb * 1024 * 1024 / PAYLOAD), index)
    return {"topics_it_may_write_and_read": both, "subacks": subscribed,
            "published_60kb_qos1": published}


def _fill(inv, topic: str, count: int, index: int) -> int:
    client, code = login(inv, f"park-filler-{index}", clean=True, session_expiry=0)
    sent = 0
    for mid in range(1, count + 1):
        client.send(raw.publish_packet(topic, os.urandom(PAYLOAD), qos=1, mid=mid % 65535 + 1))
        sent += 1
        if mid % 16 == 0:
            _count_acks(client, raw.PUBACK)
    _count_acks(client, raw.PUBACK)
    client.drop()
    return sent


def retained(inv, **_) -> dict:
    client, code = login(inv, "park-retained", clean=True, session_expiry=0)
    writable = [g.topic for g in acl.agent_grants(AGENT, inv.manager) if "write" in g.access]
    for mid, topic in enumerate(writable, start=1):
        client.send(raw.publish_packet(topic, os.urandom(PAYLOAD), qos=1, mid=mid, retain=True))
    acks = _count_acks(client, raw.PUBACK)[0]
    client.drop()
    return {"retained_topics": len(writable), "pubacks": acks}


def sessions_only(inv, sessions: int, **_) -> dict:
    """As fast as it goes: log in, subscribe at QoS 1 to every topic it may read, vanish;
    each a session parked until persistent_client_expiration."""
    readable = [g.topic for g in acl.agent_grants(AGENT, inv.manager) if "read" in g.access]
    started = time.monotonic()
    for index in range(sessions):
        client, code = login(inv, f"park-bare-{index}")
        for mid, topic in enumerate(readable, start=1):
            client.send(raw.subscribe_packet(topic, qos=1, mid=mid))
        for _ in readable:
            client.read(timeout=5)                  # the SUBACKs
        client.drop()
    return {"sessions_made": sessions,
            "sessions_per_second": round(sessions / (time.monotonic() - started))}


SCENARIOS = {"qos2": qos2, "queue": queue, "retained": retained, "sessions": sessions_only}


def run(name: str, args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="hty-park-"))
    inv = fleet(workdir)
    try:
        time.sleep(0.5)
        before = measure(inv)
        outcome = SCENARIOS[name](inv, sessions=args.sessions, cap_mb=args.cap_mb)
        time.sleep(0.5)
        after = measure(inv)
    finally:
        apply_plan("stop", stop_broker_plan(inv))
    return {"label": args.label, "scenario": name, "sessions": args.sessions, **outcome,
            "rss_kb": [before["rss_kb"], after["rss_kb"]],
            "db_bytes": [before["db_bytes"], after["db_bytes"]],
            "held_mb": round((after["rss_kb"] - before["rss_kb"]) / 1024, 2),
            "db_grew_mb": round((after["db_bytes"] - before["db_bytes"]) / 1024 / 1024, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--cap-mb", type=float, default=8.0)
    parser.add_argument("--label", default="now")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    for name in args.only or SCENARIOS:
        report = run(name, args)
        print(json.dumps(report))
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
