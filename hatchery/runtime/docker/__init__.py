"""The Docker runtime: the broker and the agents as containers on a local or remote engine."""

from hatchery.runtime.docker.plans import (  # noqa: F401  (the runtime interface)
    agent_list,
    agent_plan,
    agent_stop_plan,
    auth_sync_plan,
    broker_plan,
    broker_status,
    broker_stop_plan,
    reload_broker,
)
