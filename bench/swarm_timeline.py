"""Where a failover's seconds go: a watcher beside swarm_bench.py's wait for answers.

While the bench waits for every agent to answer again after a node loss, a thread
asks the surviving engines (their local sockets, so no SSH in the way) every half
second, and notes the first moment (seconds after the loss) of each step:

- ``leader``: a surviving manager names a Raft leader that is not the lost node
  (a follower's loss: at once, the leader did not change);
- ``node down``: the managers have declared the lost node down;
- ``broker task running``: the broker's task runs on a surviving node;
- ``broker accepting``: its published port accepts a TCP connection there;
- ``agent tasks running``: every agent's service has a running task on a survivor;
- ``a survivor unknown`` / ``a survivor down``: a node that was not lost was seen in
  that state (after a leader change, until it reports to the new leader).

The bench adds ``every agent answering`` (a health-check answer from each, through
the broker). The differences between the steps are the breakdown in docs/swarm.md.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from pathlib import Path

import docker

from hatchery.core.ports import listening


class Timeline:
    def __init__(self, survivors: list, victim_node: str, broker_service: str, agent_services: set,
                 broker_port: int, lost: float):
        self.survivors, self.victim_node, self.lost = survivors, victim_node, lost
        self.broker_service, self.agent_services, self.broker_port = broker_service, agent_services, broker_port
        self.marks: dict = {}
        self._stop = threading.Event()
        self._clients = [docker.DockerClient(base_url=h.socket, timeout=5) for h in survivors]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Timeline":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for client in self._clients:
            client.close()

    def _mark(self, step: str) -> None:
        self.marks.setdefault(step, round(time.monotonic() - self.lost, 1))

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for client in self._clients:
                try:
                    self._look(client)
                    break           # one manager that answers is enough for this round
                except Exception:   # noqa: BLE001 - no leader yet, or a busy engine: the next one
                    continue
            if any(listening(h.address, self.broker_port) for h in self.survivors):
                self._mark("broker accepting")

    def _look(self, client) -> None:
        nodes = client.api.nodes()
        leader = next((n["ID"] for n in nodes if (n.get("ManagerStatus") or {}).get("Leader")), "")
        if leader and leader != self.victim_node:
            self._mark("leader")
        if any(n["ID"] == self.victim_node and n["Status"]["State"] == "down" for n in nodes):
            self._mark("node down")
        others = [n["Status"]["State"] for n in nodes if n["ID"] != self.victim_node]
        if "unknown" in others:
            self._mark("a survivor unknown")     # a new leader's dispatcher: every node, until it reports
        if "down" in others:
            self._mark("a survivor down")        # it did not report to the new leader in time
        names = {s["ID"]: s["Spec"]["Name"] for s in client.api.services()}
        running = {names.get(t["ServiceID"]) for t in client.api.tasks(filters={"desired-state": "running"})
                   if t["Status"]["State"] == "running" and t.get("NodeID") != self.victim_node}
        if self.broker_service in running:
            self._mark("broker task running")
        if self.agent_services <= running:
            self._mark("agent tasks running")


def node_id(host) -> str:
    """The swarm node id of ``host``'s engine (asked before it is lost)."""
    client = docker.DockerClient(base_url=host.socket, timeout=10)
    try:
        return client.info()["Swarm"]["NodeID"]
    finally:
        client.close()


# What the surviving engines wrote about the failover (swarmkit logs at info level).
LOG_STEPS = {"became leader": "raft: a new leader",
             "dispatcher starting": "dispatcher started on the new leader",
             "was successfully registered": "a node registered with the dispatcher",
             'in state "unknown"': "a node expired in state unknown",
             "heartbeat expiration": "a node's heartbeat expired"}
LOG_TIME = re.compile(r'time="([0-9T:.\-]+)Z?"')


def engine_log_steps(survivors: list, lost_wall: float) -> dict:
    """Seconds after the loss of the first line of each LOG_STEPS phrase in the survivors'
    dockerd logs (``lost_wall``: time.time() at the loss)."""
    found: dict = {}
    for host in survivors:
        path = Path(host.root) / "dockerd.log"
        text = path.read_text(errors="replace").replace("\\", "") if path.exists() else ""
        for line in text.splitlines():
            step = next((s for p, s in LOG_STEPS.items() if p in line), None)
            stamp = LOG_TIME.search(line) if step else None
            if not stamp:
                continue
            at = round(_epoch(stamp.group(1)) - lost_wall, 1)
            if at >= 0:
                found[step] = min(found.get(step, at), at)
    return found


def _epoch(text: str) -> float:
    whole, _, fraction = text.partition(".")
    seconds = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return seconds.timestamp() + float(f"0.{fraction.rstrip('Z') or 0}")


def births_since(inv, lost_wall: float) -> dict:
    """The agents' births (retained online states) stamped after the loss: how many, and the
    last one's seconds after the loss (each agent's own clock: the machine's here)."""
    from agent_kit.messages import State, read
    from hatchery.bus.connection import bus_for
    with bus_for(inv, connect_timeout=10.0) as bus:
        retained = bus.retained(["fleet/+/status"], timeout=10.0)
    stamps = []
    for topic, payload in retained.items():
        try:
            parsed = read(topic, payload)
        except Exception:   # noqa: BLE001 - a bad payload is not a birth
            continue
        if parsed and isinstance(parsed[2], State) and parsed[2].online and parsed[2].ts >= lost_wall:
            stamps.append(parsed[2].ts - lost_wall)
    return {"births": len(stamps), "last birth": round(max(stamps), 1) if stamps else None}
