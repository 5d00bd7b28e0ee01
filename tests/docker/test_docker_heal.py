"""Self-healing and rollback for a docker agent, against the real engine.

kill -9 of the container's handler with the supervisor (``heal.watch``) running:
the agent answers again within 5 s. Then a rollout whose new version fails its
gate puts the container back on its previous image and config.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import replace

import pytest
from conftest import wait_for
from dockerhelpers import client, one_sleeping_agent  # noqa: F401 (fixture)

from hatchery.bus.commands import run_command
from hatchery.bus.connection import bus_for
from hatchery.inventory.model import DOCKER, Inventory
from hatchery.operate import heal, rollout
from hatchery.runtime import for_runtime

pytestmark = pytest.mark.docker
rt = for_runtime(DOCKER)
# Inside the container: SIGKILL the handler only (the entrypoint and the agent's own process stay);
# "[.]" so that this shell's own command line does not match.
KILL_HANDLER = ["sh", "-c", "for p in /proc/[0-9]*; do grep -q 'agent_kit[.]handler' $p/cmdline 2>/dev/null "
                "&& kill -9 ${p#/proc/}; done; true"]


@pytest.fixture(scope="module")
def fleet(client, tmp_path_factory):  # noqa: F811 (fixture)
    yield from one_sleeping_agent(tmp_path_factory.mktemp("heal"), f"hty-{secrets.token_hex(3)}-")


def _answers(inv: Inventory, name: str) -> bool:
    return run_command(inv, "health-check", names=[name], timeout=1.0).ok


def test_killed_container_handler_answers_again_within_five_seconds(fleet):
    inv, agent = fleet
    assert wait_for(lambda: _answers(inv, agent.name), 60, step=0.1)
    stop = threading.Event()
    with bus_for(inv) as bus:
        supervisor = threading.Thread(target=heal.watch, args=(inv, bus, heal.Policy()),
                                      kwargs={"stop": stop}, daemon=True)
        supervisor.start()
        time.sleep(1.0)
        started = rt.agent_provenance(inv, agent).started
        try:
            code, _ = rt.exec_in_agent(inv, agent, KILL_HANDLER, 10)
            killed = time.monotonic()
            assert code == 0
            assert wait_for(lambda: _answers(inv, agent.name), 5.0, step=0.1)
            assert time.monotonic() - killed < 5.0
            assert rt.agent_provenance(inv, agent).started != started    # a new handler answered
        finally:
            stop.set()
            supervisor.join(10)


def test_failed_rollout_puts_the_container_back_on_its_previous_image_and_config(fleet):
    inv, agent = fleet
    before = rt.agent_provenance(inv, agent)
    broken = replace(agent, version_command="/nonexistent/agent-2.0 --version")
    new = replace(inv, agents={agent.name: broken})
    with bus_for(new) as bus:
        report = rollout.rollout(new, [broken], bus, size=1, expect_version="2.0", timeout=15.0)
    assert report.aborted and report.outcomes[agent.name].outcome == rollout.ROLLED_BACK
    after = rt.agent_provenance(inv, agent)
    assert (after.image, after.config) == (before.image, before.config)
    assert after.instance != before.instance        # a new container: a new instance
    assert wait_for(lambda: run_command(inv, "version-report", names=[agent.name], timeout=2.0)
                    .replies[0].result.get("version") == "1.0", 30, step=0.1)

