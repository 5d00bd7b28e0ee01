"""The Swarm runtime: the broker and the agents as services of an existing Docker Swarm,
which places them, restarts them and moves them off a lost node.

This module is the package's public face for what only a swarm has:

- ``up_plan(inv)``: the Changes that form the inventory's swarm or bring it in
  line (invoke swarm.up): init, join, roles, node labels, dispatcher heartbeat.
- ``swarm_status(inv)``: (rows, problems, extras) per node (invoke swarm.status);
  ``STATUS_COLUMNS``.
- ``decide(inv, hosts, cluster)``: swarm.up's pure decisions, ``Step``s with an ``Act``,
  from ``HostFacts``, ``ClusterFacts`` and ``NodeFacts`` (tests give these as data).
- ``state_of(name, service, tasks, nodes)``: an agent's AgentState from a service and
  its tasks (pure); ``agent_service_spec`` and ``broker_service_spec``: the wanted specs.
- ``node_size(attrs)``, ``node_name(inv, attrs)``, ``node_resources(inv, attrs)``: a node's
  size, name and HostResources from ``docker node inspect`` (fleet.capacity).
- ``runs_spec(task, spec)`` and ``names_in(spec)``: whether a task was made from a service
  spec, and the secrets and configs a spec mounts (the last-known-good spec).
- ``published_port(inv)`` and ``service_name(inv, agent)``: the broker's port as the control
  side reaches it, and an agent's service name (the benches find them by these).
- ``SwarmRuntime``: the runtime itself (use ``hatchery.runtime.for_runtime("swarm")``).

The job modules behind it (facts, cluster, status) are internal. Each name is
imported on first use, so ``invoke --list`` does not load them.
"""

from importlib import import_module

_HOMES = {"up_plan": ("cluster", "up_plan"), "swarm_status": ("status", "swarm_status"),
          "STATUS_COLUMNS": ("status", "COLUMNS"), "decide": ("cluster", "decide"),
          "Act": ("cluster", "Act"), "Step": ("cluster", "Step"), "HostFacts": ("facts", "HostFacts"),
          "ClusterFacts": ("facts", "ClusterFacts"), "NodeFacts": ("facts", "NodeFacts"),
          "state_of": ("states", "state_of"),
          "agent_service_spec": ("agents", "agent_service_spec"),
          "broker_service_spec": ("broker", "broker_service_spec"), "SwarmRuntime": ("runtime", "SwarmRuntime"),
          "node_size": ("usage", "node_size"), "node_name": ("usage", "node_name"),
          "node_resources": ("usage", "node_resources"), "runs_spec": ("agents", "runs_spec"),
          "names_in": ("objects", "names_in"), "published_port": ("broker", "published_port"),
          "service_name": ("states", "service_name")}


def __getattr__(name: str):
    if name in _HOMES:
        module, attr = _HOMES[name]
        return getattr(import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["STATUS_COLUMNS", "Act", "ClusterFacts", "HostFacts", "NodeFacts", "Step", "SwarmRuntime",
           "agent_service_spec", "broker_service_spec", "decide", "names_in", "node_name",
           "node_resources", "node_size", "published_port", "runs_spec", "service_name", "state_of",
           "swarm_status", "up_plan"]
