"""BusClient.standing_status: a request inside it reads one message per agent, not two,
and still knows at once who is offline. Real Mosquitto, real paho responders."""

from __future__ import annotations

import time

import pytest
from responders import Responder, clear_retained, unique

from agent_kit import contract
from hatchery.bus.client import BusClient
from hatchery.bus.messages import Message
from hatchery.bus.standing import StatusBoard


@pytest.fixture
def fleet(module_broker):
    manager = unique("mgr")
    names = [unique() for _ in range(4)]
    agents = [Responder(module_broker, n, manager) for n in names]
    yield manager, names, agents
    for agent in agents:
        if agent.client.is_connected():
            agent.stop()
    clear_retained(module_broker, names)


def replies_and_reads(bus: BusClient, names: list, manager: str, timeout: float = 3.0) -> tuple:
    before = bus.received
    started = time.perf_counter()
    replies = bus.request(names, "health-check", timeout=timeout, broadcast_manager=manager)
    return replies, bus.received - before, time.perf_counter() - started


def test_a_request_inside_a_standing_subscription_reads_only_the_replies(module_broker, fleet):
    manager, names, _ = fleet
    with BusClient(module_broker.host, module_broker.port) as bus:
        replies, reads, _ = replies_and_reads(bus, names, manager)
        assert [r.state for r in replies] == ["answered"] * 4
        assert reads == 8, "without it: the retained state and the reply, per agent"
        with bus.standing_status(timeout=3) as board:
            assert set(board.states.items()) >= {(n, "online") for n in names}
            for _ in range(3):
                replies, reads, _ = replies_and_reads(bus, names, manager)
                assert [r.state for r in replies] == ["answered"] * 4
                assert reads == 4, "one message per agent: its reply"
        replies, reads, _ = replies_and_reads(bus, names, manager)
        assert reads == 8, "after the block, requests subscribe for themselves again"


def test_offline_agents_settle_at_once_from_the_board(module_broker, fleet):
    manager, names, agents = fleet
    with BusClient(module_broker.host, module_broker.port) as bus:
        agents[0].crash()                      # Will before the board is built
        time.sleep(0.3)
        with bus.standing_status(timeout=3) as board:
            assert board.states[names[0]] == "offline"
            agents[1].stop()                   # a goodbye while the board stands
            deadline = time.monotonic() + 3
            while board.states.get(names[1]) != "offline" and time.monotonic() < deadline:
                time.sleep(0.02)
            replies, reads, seconds = replies_and_reads(bus, names, manager, timeout=5.0)
    states = {r.agent: r.state for r in replies}
    assert states == {names[0]: "offline", names[1]: "offline",
                      names[2]: "answered", names[3]: "answered"}
    assert seconds < 2.0, "known offline: no waiting for the timeout"
    assert reads == 2


def test_a_standing_subscription_is_restored_after_a_broker_restart(broker):
    manager, name = unique("mgr"), unique()
    with BusClient(broker.host, broker.port, connect_timeout=3) as bus:
        with bus.standing_status(timeout=3) as board:
            agent = Responder(broker, name, manager)
            deadline = time.monotonic() + 3
            while board.states.get(name) != "online" and time.monotonic() < deadline:
                time.sleep(0.02)
            agent.client.disconnect()
            agent.client.loop_stop()
            broker.restart()
            deadline = time.monotonic() + 15
            while not bus._link.connected and time.monotonic() < deadline:
                time.sleep(0.1)
            back = Responder(broker, name, manager)
            try:
                replies = bus.request([name], "health-check", timeout=5.0)
            finally:
                back.stop()
    assert bus._link.reconnects >= 1
    assert replies[0].state == "answered"


def test_the_board_reads_states_and_skips_replies_and_strangers():
    board = StatusBoard()
    now = time.time()

    def message(topic, payload, retain=False):
        board.on_message(Message(topic, payload, retain, now))

    state = contract.encode(contract.make_state("client-a", "offline"))
    message(contract.topic("client-a", "status"), state, True)
    reply = contract.make_reply("client-b", contract.make_command("health-check", "abc"), True)
    message(contract.topic("client-b", "status"), contract.encode(reply))
    message(contract.topic("client-c", "status"), contract.encode(contract.make_state("client-a", "online")))
    message(contract.topic("client-d", "status"), b'{"state": "online", "kind": "state"}')
    assert board.states == {"client-a": "offline"}
    assert board.offline() == {"client-a"}
    assert board.invalid == 1, "a state breaking the contract is counted, not believed"
    message(contract.topic("client-a", "status"), b"", True)     # retained state cleared
    assert board.states == {}


def answers_and_reads(bus: BusClient, names: list, heard: list = ()) -> tuple:
    """(states, status messages read): ``heard`` is what a live listener took meanwhile,
    whose other topics (fleet/+/+ brings our own commands back) are not the request's."""
    def others() -> int:
        return sum(1 for m in heard if not m.topic.endswith("/status"))
    settled(bus, heard)         # a listener's retained burst still arriving is not the request's
    before, other = bus.received, others()
    replies = bus.request(names, "health-check", timeout=3.0, answers_only=True)
    settled(bus, heard)         # the listener's copies are counted by the link before it appends them
    return [r.state for r in replies], bus.received - before - (others() - other)


def settled(bus: BusClient, heard: list, quiet: float = 0.15, timeout: float = 5.0) -> None:
    """Wait until the link's count and the listener's list have both held still for ``quiet`` s."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = (bus.received, len(heard))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.02)


def test_a_request_taking_only_answers_reuses_a_held_status_subscription(module_broker, fleet):
    """fleet.heal --watch holds fleet/+/+ and the rollout's gate the agents' status topics:
    a health-check they send inside reads the replies only, never the retained states again."""
    manager, names, _ = fleet
    live, heard = f"{contract.FLEET_PREFIX}/+/+", []
    with BusClient(module_broker.host, module_broker.port) as bus:
        assert answers_and_reads(bus, names) == (["answered"] * 4, 8), "nothing held: state + reply"
        with bus.listen([live], heard.append, qos=1):
            for _ in range(3):
                assert answers_and_reads(bus, names, heard) == (["answered"] * 4, 4)
            # a request that settles on retained offline states still reads them
            bus.request(names, "health-check", timeout=3.0)
            assert sum(1 for m in heard[-16:] if m.retain and m.topic.endswith("/status")) == 4
        exact = [contract.topic(n, "status") for n in names]
        with bus.listen(exact, lambda message: None, qos=1):
            assert answers_and_reads(bus, names[:2]) == (["answered"] * 2, 2)
            assert answers_and_reads(bus, names) == (["answered"] * 4, 4)
        with bus.listen(exact[:2], lambda message: None, qos=1):
            # not every topic held: subscribed as before (one exact filter each, no overlap)
            assert answers_and_reads(bus, names) == (["answered"] * 4, 8)
