"""The local runtime: the native mosquitto and agent handlers as background processes.

Pid files and logs live under the state directory. Each planner reads what
runs now into a small value of facts (the config on disk, the pid file, the
process table, provenance) and a pure decision (``decide``) names the Change.
Split by job like ``runtime/docker``: broker, handlers (the process table),
agents, kits (provenance), states (AgentState), layout, logs, decide, and
``runtime`` (the LocalRuntime class).

This module is the package's public face: ``LocalRuntime``, and ``DECISIONS``
(plan name -> facts type, wanted type, decide) for the fixture tests.
"""

from hatchery.runtime.local.decide import DECISIONS
from hatchery.runtime.local.runtime import LocalRuntime

__all__ = ["DECISIONS", "LocalRuntime"]
