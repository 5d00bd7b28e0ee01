"""Round 3: heal's confirm-before-restart (hatchery/operate/confirm.py) when the bus is slow.

Heal restarts a running agent only when it did not answer a signed
health-check within ``hung_after`` (3 s). The health-check is a bus request:
it subscribes, waits for the SUBACK, publishes, waits for the reply. When the
request itself fails (no SUBACK in time, the broker gone for a moment), the
agent was never asked, yet ``confirm`` reports every running agent ``hung``
and heal restarts them all.

An agent can slow the manager's stream: before round 3's fix in bus.wire,
alpha's PUBLISHes full of user properties kept beta's heartbeat 8.9 s behind
(tests/security/test_hostile_wire.py); any other way left to delay the
broker's answers more than 3 s, or a broker restart at the wrong moment, does
the same. Here the broker is paused (SIGSTOP) for the length of one confirm,
a real handler runs and answers before and after. Fails while a running,
answering agent is called hung because the bus could not ask it (it was: a
failed request left ``found = []``, so every running agent was ``hung``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from hatchery.bus.commands import run_command
from hatchery.bus.connection import connection_for
from hatchery.core.paths import state_paths
from hatchery.operate.confirm import ALIVE, UNASKED, confirm
from tests.security.hostilefleet import deployed_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    yield from deployed_fleet(tmp_path_factory.mktemp("confirm"), agents=("alpha",), interval=600, hatch=True)


def _confirm_while_broker_paused(inv, holding: tuple = ()):
    """alpha's confirmation taken while the broker is stopped (SIGSTOP), on a manager
    connection holding ``holding`` subscribed; alpha must answer before and after."""
    broker_pid = int(Path(state_paths(inv).broker_pid).read_text().split()[0])
    with contextlib.ExitStack() as stack:
        bus = stack.enter_context(connection_for(inv).client())
        if holding:
            stack.enter_context(bus.listen(list(holding), lambda message: None, qos=1))
        assert confirm(inv, bus, ["alpha"], hung_after=2.0)["alpha"].finding == ALIVE
        os.kill(broker_pid, signal.SIGSTOP)
        try:
            found = confirm(inv, bus, ["alpha"], hung_after=1.0)["alpha"]
        finally:
            os.kill(broker_pid, signal.SIGCONT)
    assert run_command(inv, "health-check", names=["alpha"], timeout=3).replies[0].state == "answered", \
        "alpha stopped answering: the test proves nothing"
    return found


def test_an_agent_the_bus_could_not_ask_is_not_called_hung(fleet):
    found = _confirm_while_broker_paused(fleet)
    assert found.finding == UNASKED, f"a running, answering agent was called {found.finding}: {found.detail}"


def test_inside_heal_watchs_subscription_a_paused_broker_still_calls_nobody_hung(fleet):
    """fleet.heal --watch holds ``fleet/+/+``, so its health-check reuses that subscription
    and waits for no SUBACK: a paused broker is then only silence. The confirmation must
    still prove the bus carries messages before it calls a silent agent hung."""
    found = _confirm_while_broker_paused(fleet, holding=("fleet/+/+",))
    assert found.finding == UNASKED, f"a running, answering agent was called {found.finding}: {found.detail}"
