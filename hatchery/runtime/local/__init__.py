"""The local runtime: the native mosquitto and agent handlers as background processes.

Pid files and logs live under the state directory. Each planner compares the
wanted config file with the one on disk and the pid file with the process
table, and returns the Change that would bring them in line. Split by job like
``runtime/docker``: broker, handlers (the process table), agents, kits
(provenance), logs, and ``runtime`` (the LocalRuntime class).
"""

from hatchery.runtime.local.runtime import LocalRuntime

__all__ = ["LocalRuntime"]
