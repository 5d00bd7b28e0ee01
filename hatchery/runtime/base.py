"""The runtime interface: what every runtime offers, whatever runs the broker and the agents.

A runtime plans: each ``*_plan`` method reads what runs now and returns the
``Change`` objects that would bring it in line with the inventory, applying
nothing (``core.plan.apply_plan`` does that). The rest read, or act at once
where noted. ``hatchery.runtime.for_runtime(name)`` returns the instance for an
inventory's ``runtime:`` value; ``tests/test_runtime_interface.py`` checks that
each one implements every method below with the same signature.

A new runtime (swarm, ssh, systemd, ...) is a package ``hatchery/runtime/<name>/``
with a class that has these methods and capability flags, its inventory
declaration ``hatchery/inventory/runtimes/<name>.py`` (its keys, placement
traits and this class), and its name in ``inventory.runtimes.REGISTERED``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol, runtime_checkable

from hatchery.configs.layout import AgentLayout, BrokerLayout
from hatchery.inventory.model import AgentSpec, Inventory


# Each start of a handler gets a fresh token from its runtime, handed over in this
# environment variable (agent_kit.config reads it): never in argv (other users see
# that in ps), never in the config file (its hash would change every start), and
# never on the bus before the handler's own birth message carries it.
INSTANCE_ENV = "HATCHERY_AGENT_INSTANCE"


def new_instance() -> str:
    """A token for one start of a handler (16 hex digits: contract.INSTANCE_RE)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class AgentState:
    """What a runtime says about one agent now: its word, which the bus cannot forge.

    Every runtime fills the same fields; callers never ask which runtime answered.
    """

    agent: str
    runtime: str
    running: Optional[bool]                 # None: the runtime could not be asked (host unreachable)
    health: Optional[str] = None            # healthy | unhealthy | starting; None without a health check
    restarting: bool = False                # the runtime is restarting it by itself (its restart policy)
    started_at: Optional[float] = None      # epoch seconds of the current start
    instance: Optional[str] = None          # the token the runtime gave this start (contract.INSTANCE_RE)
    host: str = "local"                     # where it runs: a hosts: name, an engine address, or local
    node: Optional[str] = None              # on a cluster: the node its task runs on
    pid: object = None                      # an int, a list (duplicates), or None
    restarts: Optional[int] = None          # times the runtime restarted it by itself (None: it does not say)
    status: str = ""                        # the runtime's own word: running, exited, missing, ...
    problem: str = ""                       # what is off: duplicates, orphan, a pid file that lies
    in_inventory: bool = True
    detail: dict = field(default_factory=dict)   # runtime-specific extras for agent.list (container, image, log)

    @property
    def up(self) -> bool:
        """Running and not reported unhealthy."""
        return bool(self.running) and self.health != "unhealthy"

    def as_row(self) -> dict:
        row = {"agent": self.agent, "host": self.host, "runtime": self.runtime, "running": self.running,
               "pid": self.pid, "status": self.status, "health": self.health, "node": self.node,
               "instance": self.instance, "started_at": self.started_at, "restarts": self.restarts,
               "restarting": self.restarting, "problem": self.problem, "in_inventory": self.in_inventory}
        return {**row, **self.detail}


@dataclass(frozen=True)
class Provenance:
    """What an agent runs now, recorded when it started: the basis of upgrade and rollback."""

    config: Optional[str] = None            # the hash of the config it started with
    started: Optional[float] = None         # epoch seconds
    instance: Optional[str] = None
    kit: Optional[str] = None               # local: the agent_kit copy's hash
    image: Optional[str] = None             # image runtimes: the image tag
    image_id: Optional[str] = None

    def describe(self) -> str:
        """A short 'what it runs' for tables: agent_kit hash or image tag, and config hash."""
        what = self.kit or (self.image or "?").rsplit(":", 1)[-1]
        return f"{what}/{self.config or '?'}"

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class HostResources:
    """A host's (or a cluster node's) size and what is free on it, as its runtime reads them."""

    host: str                           # the name core.hosts gives it (a swarm node: its name)
    mem_total_kb: Optional[int]         # None: the runtime could not say (host unreachable)
    mem_available_kb: Optional[int]
    cpus: Optional[float]
    source: str = ""                    # where the figures come from, for the reader
    cpu_busy: Optional[float] = None    # cores busy on the whole host (its 1-minute load)
    kind: str = "host"                  # host | node (a cluster's node)
    problem: str = ""                   # why figures are missing


@dataclass(frozen=True)
class AgentUsage:
    """One agent's memory and CPU now."""

    agent: str
    host: str
    mem_kb: Optional[int]
    cpu: Optional[float]                # share of one core (0.25 = a quarter)
    source: str = ""                    # runtime (process RSS, container stats) | heartbeat


@runtime_checkable
class Runtime(Protocol):
    """Where the broker and the agents run: 'local' processes or 'docker' containers."""

    name: str
    # Capabilities: callers read these, never the runtime's name.
    restarts_crashed: bool      # it restarts a crashed agent by itself (a restart policy): heal waits for it
    builds_images: bool         # agents run from images it builds (agent.hatch --render-only writes them)
    inspectable: bool           # it reports health and start times worth checking the bus against
    reschedules: bool           # it also moves agents off a lost node (a cluster): heal reports, never restarts

    # --- where things are, as the broker and each handler see them ----------------

    def broker_layout(self, inv: Inventory) -> BrokerLayout:
        """The broker's config, data and log paths, listeners, TLS files, control socket
        and user, as the broker it runs sees them (configs.broker renders from it)."""

    def agent_layout(self, inv: Inventory, agent: AgentSpec) -> AgentLayout:
        """Where ``agent``'s handler connects and finds its credential files, as it sees
        them (configs.agent renders from it)."""

    # --- the broker ---------------------------------------------------------------

    def broker_plan(self, inv: Inventory, *, conf_text: str, auth_files: Optional[dict] = None) -> list:
        """Changes that start, reload (SIGHUP), restart or create the broker with
        ``conf_text`` as mosquitto.conf and ``auth_files`` ({file name: text}:
        passwd, acl) beside it; [Change(action='none')] when it runs as wanted."""

    def broker_stop_plan(self, inv: Inventory) -> list:
        """Changes that stop the broker (its data is kept)."""

    def broker_status(self, inv: Inventory) -> dict:
        """{'runtime', 'running', 'address', ...}: where the broker runs and whether it does."""

    def auth_sync_plan(self, inv: Inventory, auth_files: dict) -> list:
        """Changes that bring the broker's password and ACL files in line with
        ``auth_files`` and SIGHUP it, so credentials change without a restart."""

    def reload_broker(self, inv: Inventory) -> str:
        """Acts now: SIGHUP the running broker; what was done, or '' when it does not run."""

    # --- the agents ---------------------------------------------------------------

    def agent_plan(self, inv: Inventory, agent: AgentSpec, *, agent_config: dict,
                   context_dir: Optional[Path] = None, secret_files: Optional[dict] = None) -> list:
        """Changes that start, restart or (re)create ``agent`` with ``agent_config``
        (configs.agent) and its credentials ``secret_files`` ({name: text});
        ``context_dir`` is where an image build context goes (None: the state dir)."""

    def agent_stop_plan(self, inv: Inventory, agent: AgentSpec, *, remove: bool = False) -> list:
        """Changes that stop ``agent``; with ``remove`` (agent.retire) also delete its state."""

    def agent_list(self, inv: Inventory) -> list:
        """An ``AgentState`` per agent of this runtime, then one per orphan (running for a
        name the inventory no longer has: ``in_inventory`` False)."""

    def orphan_stop_plans(self, inv: Inventory) -> dict:
        """{host: () -> Changes} that stop running agents of this fleet whose names are
        not in the inventory (left over from a hand edit or an interrupted retire), one
        function per host it looks on (names as ``core.hosts`` gives them), so each host
        is scanned in its own thread and a host that cannot be reached fails alone."""

    def agent_logs(self, inv: Inventory, agent: AgentSpec, *, lines: int = 50, follow: bool = False):
        """A generator of ``agent``'s log lines: the last ``lines``, then (``follow``)
        new ones until the caller stops iterating. RuntimeFailure when it has none."""

    def agent_provenance(self, inv: Inventory, agent: AgentSpec) -> Optional[Provenance]:
        """What ``agent`` runs now, recorded when it started (agent_kit hash or image, config
        hash, start time, instance); None if it never started."""

    def agent_restart_plan(self, inv: Inventory, agent: AgentSpec) -> list:
        """Changes that restart ``agent`` on what it runs now (agent.restart, fleet.heal)."""

    def agent_restore_plan(self, inv: Inventory, agent: AgentSpec) -> list:
        """Changes that put ``agent`` back on what it ran before its last upgrade
        (fleet.rollout's rollback); a failing Change when nothing was recorded."""

    def agent_state(self, inv: Inventory, agent: AgentSpec) -> AgentState:
        """``agent``'s ``AgentState``, as ``agent_list`` gives it (running False when it never
        started, None when the place it runs cannot be asked)."""

    def agent_inspect(self, inv: Inventory, agent: AgentSpec) -> Optional[dict]:
        """The runtime's own record of ``agent`` (docker: the container's ``docker inspect``
        attributes; local: pid, config and log paths), or None when it has none."""

    def exec_in_agent(self, inv: Inventory, agent: AgentSpec, argv: list, timeout: float) -> tuple:
        """Acts now: run ``argv`` where ``agent`` runs, killed after ``timeout`` seconds;
        (exit code, output). Raises HatcheryError when the agent does not run."""

    def verify_in_agent(self, inv: Inventory, agent: AgentSpec, timeout: float = 5.0) -> list:
        """``core.checks.Check`` results of what fleet.verify checks from where the
        agent runs ([] when that place is this host, already checked from here)."""

    def write_build_files(self, inv: Inventory, agents: list) -> list:
        """Acts now: write what the agents' images are built from, for review
        (agent.hatch --render-only); the Dockerfiles' paths ([] with no images)."""

    # --- capacity (fleet.capacity, the exporter's host gauges) ---------------------

    def host_resources(self, inv: Inventory) -> list:
        """A ``HostResources`` per host (a cluster: per node) this runtime's agents of ``inv``
        run on: total and available memory, CPUs, busy CPUs, each host asked once and the
        hosts in parallel. A host that cannot be asked is listed with None figures and its
        ``problem``; [] when this runtime runs none of ``inv``'s agents."""

    def agent_usage(self, inv: Inventory) -> list:
        """An ``AgentUsage`` per running agent of this runtime in ``inv``, measured by the
        runtime (process RSS and CPU time, container stats; one sampling for all); agents
        it cannot measure are left out (the caller falls back on their heartbeats)."""

    # --- clean-up -----------------------------------------------------------------

    def remove_fleet(self, inv: Inventory) -> None:
        """Acts now: remove everything this runtime runs or built for ``inv``'s fleet
        (processes or containers, networks, volumes, agent images). Not a task: the
        tests and benchmarks clean up their throw-away fleets with it."""


RUNTIME_METHODS = tuple(name for name, value in vars(Runtime).items()
                        if callable(value) and not name.startswith("_"))
RUNTIME_CAPABILITIES = tuple(name for name in Runtime.__annotations__ if name != "name")
